"""Every loss and metric of the study through the registries, as the trainer and evaluator use them."""

import pytest
import torch

from lossbench import losses, metrics
from lossbench.losses import STUDY_LOSSES
from lossbench.metrics import STUDY_METRICS
from lossbench.specs import Setting


def _build(name, channels):
    # The spec's defaults for a task of this many channels, made portable (tiny images, no weights fetched).
    spec = losses.spec(name)
    return spec.build(spec.params(Setting(channels), spec.portable_params), channels)


def _metric_params(name, channels):
    spec = metrics.spec(name)
    return {**spec.params(Setting(channels)), **spec.portable_params}


def test_every_study_loss_and_metric_is_registered():
    assert losses.names()[: len(STUDY_LOSSES)] == list(STUDY_LOSSES)
    assert all(not losses.spec(name).thesis for name in losses.names()[len(STUDY_LOSSES):])
    assert metrics.names() == list(STUDY_METRICS)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", losses.names())
def test_loss_is_scalar_with_finite_gradients(name, channels):
    torch.manual_seed(0)
    target = torch.rand(2, channels, 48, 48)
    output = (target + 0.05 * torch.randn_like(target)).clamp(0, 1).requires_grad_()
    loss_fn = _build(name, channels)
    value = loss_fn(output, target)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0


@pytest.mark.parametrize("name", losses.names())
def test_loss_of_identical_images_has_finite_gradients(name):
    image = torch.rand(1, 3, 48, 48)
    output = image.clone().requires_grad_()
    _build(name, 3)(output, image).backward()
    assert torch.isfinite(output.grad).all()


@pytest.mark.parametrize("name", losses.names())
def test_learnable_losses_expose_their_parameters_to_the_optimiser(name):
    assert bool(list(_build(name, 3).parameters())) == losses.spec(name).learnable


def test_adaptive_learns_one_alpha_and_scale_per_channel():
    assert [p.numel() for p in _build("adaptive", 3).parameters()] == [3, 3]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(STUDY_METRICS))
def test_metric_of_identical_images_is_perfect(name, channels):
    image = torch.rand(2, channels, 192, 192)
    value = metrics.compute(name, image, image, **_metric_params(name, channels))
    assert value.shape == (2,)
    perfect = {"psnr": float("inf"), "msssim": 1.0}.get(name, 0.0)
    assert torch.allclose(value, torch.full((2,), perfect), atol=1e-5)


@pytest.mark.parametrize("name", list(STUDY_METRICS))
def test_metric_worsens_with_noise(name):
    torch.manual_seed(0)
    target = torch.rand(1, 3, 192, 192)
    params = _metric_params(name, 3)
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
    assert record["metric"] == "psnr" and record["unit"] == "dB" and record["better"] == "higher" and 0 < record["value"] < 20
    assert run("--metric", "psnr", str(tmp_path / "ref.png"), str(tmp_path / "inverted.png")).stdout == f"psnr = {record['value']:.6g} dB\n"
    assert json.loads(run("--metric", "flip", "--json", str(tmp_path / "ref.png"), str(tmp_path / "same.png")).stdout)["unit"] is None
    assert record["reference"] == str(tmp_path / "ref.png") and record["test"] == str(tmp_path / "inverted.png")
    mismatch = run("--metric", "l2", str(tmp_path / "ref.png"), str(tmp_path / "small.png"))
    assert mismatch.returncode != 0 and "differs" in mismatch.stderr
