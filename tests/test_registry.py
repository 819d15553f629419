"""Every loss and metric of the study through the registries, as the trainer and evaluator use them."""

import pytest
import torch

from lossbench import losses, metrics
from lossbench.losses import STUDY_LOSSES
from lossbench.metrics import STUDY_METRICS


def _build(name, channels):
    params = {"num_channels": channels} if name == "adaptive" else {}
    if name == "flip" and channels == 1:
        params["mode"] = "gray_thesis"
    if name == "msssim":
        params["small_images"] = "reduce_scales"
    if name == "lpips_l2":
        params["trunk"] = "untrained"
    return losses.build(name, **params)


def test_every_study_loss_and_metric_is_registered():
    assert losses.names() == list(STUDY_LOSSES)
    assert metrics.names() == list(STUDY_METRICS)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", STUDY_LOSSES)
def test_loss_is_scalar_with_finite_gradients(name, channels):
    torch.manual_seed(0)
    target = torch.rand(2, channels, 48, 48)
    output = (target + 0.05 * torch.randn_like(target)).clamp(0, 1).requires_grad_()
    loss_fn = _build(name, channels)
    value = loss_fn(output, target)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0


@pytest.mark.parametrize("name", STUDY_LOSSES)
def test_loss_of_identical_images_has_finite_gradients(name):
    image = torch.rand(1, 3, 48, 48)
    output = image.clone().requires_grad_()
    _build(name, 3)(output, image).backward()
    assert torch.isfinite(output.grad).all()


def test_adaptive_parameters_are_exposed_to_the_optimiser():
    assert len(list(_build("adaptive", 3).parameters())) == 2
    assert list(_build("lpips_l2", 3).parameters()) == []


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(STUDY_METRICS))
def test_metric_of_identical_images_is_perfect(name, channels):
    image = torch.rand(2, channels, 192, 192)
    params = {"mode": "gray_thesis"} if name == "flip" and channels == 1 else {}
    if name == "lpips":
        params = {"trunk": "untrained"}
    value = metrics.compute(name, image, image, **params)
    assert value.shape == (2,)
    perfect = {"psnr": float("inf"), "msssim": 1.0}.get(name, 0.0)
    assert torch.allclose(value, torch.full((2,), perfect), atol=1e-5)


@pytest.mark.parametrize("name", list(STUDY_METRICS))
def test_metric_worsens_with_noise(name):
    torch.manual_seed(0)
    target = torch.rand(1, 3, 192, 192)
    params = {"trunk": "untrained"} if name == "lpips" else {}
    slight = metrics.compute(name, (target + 0.02 * torch.randn_like(target)).clamp(0, 1), target, **params)
    strong = metrics.compute(name, (target + 0.2 * torch.randn_like(target)).clamp(0, 1), target, **params)
    assert (strong > slight) != STUDY_METRICS[name].higher_is_better


@pytest.mark.parametrize("name", list(STUDY_METRICS))
def test_metric_rejects_wrong_channel_counts(name):
    with pytest.raises(ValueError, match="channels"):
        metrics.compute(name, torch.rand(1, 2, 192, 192), torch.rand(1, 2, 192, 192))


def test_metrics_cli_compares_two_image_files(tmp_path):
    import json
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    Image.fromarray(reference).save(tmp_path / "ref.png")
    Image.fromarray(reference).save(tmp_path / "same.png")
    Image.fromarray(255 - reference).save(tmp_path / "inverted.png")
    Image.fromarray(reference[:32]).save(tmp_path / "small.png")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "lossbench.metrics", *args], capture_output=True, text=True)

    assert run("--metric", "flip", str(tmp_path / "ref.png"), str(tmp_path / "same.png")).stdout == "flip = 0\n"
    assert float(run("--metric", "flip", str(tmp_path / "ref.png"), str(tmp_path / "inverted.png")).stdout.removeprefix("flip = ")) > 0.3
    assert float(run("--metric", "l1", "--gray", str(tmp_path / "ref.png"), str(tmp_path / "inverted.png")).stdout.removeprefix("l1 = ")) > 0.3
    record = json.loads(run("--metric", "psnr", "--json", str(tmp_path / "ref.png"), str(tmp_path / "inverted.png")).stdout)
    assert record["metric"] == "psnr" and record["better"] == "higher" and 0 < record["value"] < 20
    assert record["reference"] == str(tmp_path / "ref.png") and record["test"] == str(tmp_path / "inverted.png")
    mismatch = run("--metric", "l2", str(tmp_path / "ref.png"), str(tmp_path / "small.png"))
    assert mismatch.returncode != 0 and "differs" in mismatch.stderr
