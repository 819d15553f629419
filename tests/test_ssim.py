"""SSIM metric and loss: fastMRI's definition against ``fastmri.evaluate.ssim``, the Gaussian window against
``pytorch-msssim`` and scikit-image, identical images, the task defaults, and float64 gradient checks.

Tolerances (docs/calibration.md): 1e-6 against ``fastmri.evaluate.ssim`` (the issue's acceptance) and against
scikit-image's Gaussian SSIM, both in float64; 1e-5 against ``pytorch-msssim``, whose window is float32.
"""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_msssim
import torch
import torch.nn.functional as F
from fastmri import evaluate as fastmri_evaluate
from skimage.metrics import structural_similarity as skimage_ssim
from torch.autograd import gradcheck

from lossbench import losses, metrics
from lossbench.core.specs import Setting
from lossbench.data.fastmri_synthetic import generate_dataset
from lossbench.data.mri import MRISliceDataset
from lossbench.losses.ssim import SSIMLoss
from lossbench.metrics import ssim as ssim_module
from lossbench.metrics.ssim import WINDOWS, ssim, structural_similarity

from conftest import head, photo

torch.set_num_threads(1)

#: The issue's acceptance against fastmri.evaluate.ssim, and our tolerance against the Gaussian references.
TOLERANCE = 1e-6
#: pytorch-msssim filters with a float32 window (see the test).
PYTORCH_MSSSIM_TOLERANCE = 1e-5


def _degraded(target: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Three degradations of (1, C, H, W) ``target``, (3, C, H, W): light noise, heavy noise, a 5 × 5 box blur."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(target.shape, generator=generator, dtype=target.dtype)
    return torch.cat(
        [
            (target + 0.03 * noise).clamp(0, 1),
            (target + 0.3 * noise).clamp(0, 1),
            F.avg_pool2d(target, 5, stride=1, padding=2, count_include_pad=False),
        ]
    )


def _random(channels: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, channels, height, width, generator=generator, dtype=torch.float64)


def _volume(target: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction, ground truth) volumes of three slices, (3, 1, H, W): ``target`` degraded three ways, beside
    ``target`` scaled to three brightnesses, so that each slice has its own maximum."""
    truth = torch.cat([target, 0.8 * target, 0.6 * target])
    return torch.cat([_degraded(truth[i : i + 1], seed + i)[i : i + 1] for i in range(3)]), truth


FASTMRI_CASES = {
    "noise 176": lambda: _volume(_random(1, 176, 176)),
    "head 176": lambda: _volume(head(176, 176)),
    "head 64": lambda: _volume(head(64, 64)),
    "head 33x47": lambda: _volume(head(33, 47)),
    "camera 7x7": lambda: _volume(photo("camera", 7, 7)),
}


@pytest.mark.parametrize("case", FASTMRI_CASES)
@pytest.mark.parametrize("maxval", [None, 1.0], ids=["volume-max", "maxval-1"])
def test_fastmri_window_equals_fastmri_evaluate_ssim(case: str, maxval: float | None) -> None:
    prediction, truth = FASTMRI_CASES[case]()
    reference = float(fastmri_evaluate.ssim(truth[:, 0].numpy(), prediction[:, 0].numpy(), maxval)[0])
    # fastMRI's volume value is the mean of its slices' values at one data range: the volume's maximum by default.
    data_range = float(truth.max()) if maxval is None else maxval
    per_slice = ssim(prediction, truth, "fastmri", data_range)
    assert abs(float(per_slice.mean()) - reference) <= TOLERANCE
    for index in range(3):
        alone = fastmri_evaluate.ssim(
            truth[index : index + 1, 0].numpy(), prediction[index : index + 1, 0].numpy(), 1.0
        )
        assert (
            abs(float(ssim(prediction[index : index + 1], truth[index : index + 1], "fastmri")) - alone[0]) <= TOLERANCE
        )
    # float32 images, as evaluation holds them: the metric computes in float64, as lossbench's fastMRI tables do.
    single = ssim(prediction.float(), truth.float(), "fastmri", data_range)
    assert single.dtype == torch.float32
    reference32 = fastmri_evaluate.ssim(
        truth[:, 0].float().double().numpy(), prediction[:, 0].float().double().numpy(), data_range
    )
    assert abs(float(single.double().mean()) - float(reference32[0])) <= TOLERANCE


def test_a_per_slice_data_range_is_not_fastmris() -> None:
    # Each slice scaled to its own maximum: fastMRI's single volume range gives other values, well beyond the tolerance.
    prediction, truth = _volume(head(176, 176))
    reference = float(fastmri_evaluate.ssim(truth[:, 0].numpy(), prediction[:, 0].numpy())[0])
    own_range = torch.cat(
        [ssim(prediction[i : i + 1], truth[i : i + 1], "fastmri", float(truth[i].max())) for i in range(3)]
    )
    assert abs(float(own_range.mean()) - reference) > 100 * TOLERANCE


@pytest.fixture(scope="module")
def knee_volume(tmp_path_factory) -> str:
    """One synthetic single-coil knee volume of three 176 × 176 slices, the demo's data (config.yaml's knee)."""
    root = tmp_path_factory.mktemp("knee")
    generate_dataset(root, "singlecoil", 1, 3, seed=7, matrix=176)
    return str(root)


def _slices(root: str, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(zero-filled input clamped as a model output would be, target), (3, 1, crop, crop) float32, as evaluation
    reads them: divided by the volume's ``max`` attribute."""
    dataset = MRISliceDataset(root, "singlecoil", crop=crop)
    pairs = [dataset.validation_item(index)[1:] for index in range(len(dataset))]
    return torch.stack([pair[0] for pair in pairs]).clamp(0, 1), torch.stack([pair[1] for pair in pairs])


def test_on_the_demos_mri_slices_the_volume_mean_is_fastmris_ssim(knee_volume: str) -> None:
    params = metrics.spec("ssim").params(Setting(1))
    assert params == {"window": "fastmri"}
    # The crop is the whole reconstruction (the demo's 176, the paper's 320): its maximum is the `max` attribute, 1.
    prediction, truth = _slices(knee_volume, 176)
    assert float(truth.max()) == 1.0
    values = metrics.compute("ssim", prediction, truth, **params).double()
    reference = fastmri_evaluate.ssim(truth[:, 0].double().numpy(), prediction[:, 0].double().numpy())
    assert abs(float(values.mean()) - float(reference[0])) <= TOLERANCE
    # A smaller crop misses the volume's brightest pixel: fastMRI's default range is then the crop's maximum, under 1,
    # and the metric's mean is fastMRI's SSIM at maxval = 1 (the `max` attribute), not at its default.
    prediction, truth = _slices(knee_volume, 128)
    assert float(truth.max()) < 0.96
    values = metrics.compute("ssim", prediction, truth, **params).double()
    target, restored = truth[:, 0].double().numpy(), prediction[:, 0].double().numpy()
    assert abs(float(values.mean()) - float(fastmri_evaluate.ssim(target, restored, 1.0)[0])) <= TOLERANCE
    assert abs(float(values.mean()) - float(fastmri_evaluate.ssim(target, restored)[0])) > 1e-3


GAUSSIAN_CASES = {
    "astronaut 3ch 176": lambda: photo("astronaut", 176, 176),
    "coffee 3ch 64": lambda: photo("coffee", 64, 64),
    "chelsea 3ch 65x97": lambda: photo("chelsea", 65, 97),
    "camera 1ch 64": lambda: photo("camera", 64, 64),
    "head 1ch 176": lambda: head(176, 176),
    "astronaut 1ch 11x11": lambda: photo("astronaut", 11, 11, gray=True),
    "noise 3ch 64": lambda: _random(3, 64, 64),
    "noise 1ch 176": lambda: _random(1, 176, 176),
}


@pytest.mark.parametrize("case", GAUSSIAN_CASES)
def test_gaussian_window_equals_pytorch_msssim_and_skimage(case: str) -> None:
    target = GAUSSIAN_CASES[case]()
    outputs = _degraded(target)
    targets = target.expand_as(outputs)
    ours = ssim(outputs, targets)
    assert ours.shape == (3,) and ours.dtype == torch.float64
    # pytorch-msssim rounds its Gaussian window to float32 whatever the images: its taps' sum, 1 ± 1e-7, moves
    # SSIM by a few 1e-6 (the bias the float32 loss has too).
    reference = pytorch_msssim.ssim(outputs, targets, data_range=1, size_average=False)
    torch.testing.assert_close(ours, reference.double(), rtol=0, atol=PYTORCH_MSSSIM_TOLERANCE)
    scikit = [
        skimage_ssim(
            targets[i].numpy(),
            outputs[i].numpy(),
            data_range=1,
            channel_axis=0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for i in range(3)
    ]
    torch.testing.assert_close(ours, torch.tensor(scikit, dtype=torch.float64), rtol=0, atol=TOLERANCE)
    # The metric computes float32 images in float64: only the images' own rounding moves it.
    torch.testing.assert_close(ssim(outputs.float(), targets.float()).double(), ours, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize(
    "image",
    [
        lambda: photo("astronaut", 64, 64),
        lambda: head(64, 64),
        lambda: torch.zeros(1, 3, 64, 64),
        lambda: torch.full((1, 1, 64, 64), 0.5),
    ],
    ids=["photo", "head", "black", "gray"],
)
def test_identical_images_score_one(window: str, image) -> None:
    image = image()
    for dtype in (torch.float32, torch.float64):
        assert float(ssim(image.to(dtype), image.to(dtype), window)) == 1.0
        assert float(structural_similarity(image.to(dtype), image.to(dtype), window)) == 1.0


def test_the_task_picks_the_definition() -> None:
    for registry in (metrics, losses):
        spec = registry.spec("ssim")
        assert not spec.thesis
        assert spec.params(Setting(1)) == {"window": "fastmri"}
        assert spec.params(Setting(3)) == {"window": "gaussian"}
    conditions = metrics.spec("ssim").conditions
    assert "fastMRI" in conditions({"window": "fastmri"}) and "Gaussian" in conditions({"window": "gaussian"})
    assert losses.spec("ssim").check_config({"window": "box"}) == (
        "losses.ssim.params.window: 'box' is not one of 'gaussian', 'fastmri'"
    )
    assert losses.spec("ssim").check_config({"window": "fastmri"}) is None


def test_refusals_are_one_line() -> None:
    with pytest.raises(ValueError, match=r"^ssim: image side 10 is smaller than the 11-pixel gaussian window"):
        ssim(torch.rand(1, 3, 10, 40), torch.rand(1, 3, 10, 40))
    with pytest.raises(ValueError, match=r"^ssim: image side 6 is smaller than the 7-pixel fastmri window"):
        ssim(torch.rand(1, 1, 40, 6), torch.rand(1, 1, 40, 6), "fastmri")
    with pytest.raises(ValueError, match=r"^SSIMLoss: unknown window 'box', expected one of 'gaussian', 'fastmri'$"):
        SSIMLoss("box")
    spec = metrics.spec("ssim")
    assert spec.too_small(10) == "the ssim metric's 11-pixel window (the side must be at least 11)"
    assert spec.too_small(11) is None and spec.too_small(64) is None


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("channels", [1, 3])
def test_loss_is_one_minus_ssim(window: str, channels: int) -> None:
    target = photo("coffee", 64, 64, gray=channels == 1)
    outputs = _degraded(target)
    targets = target.expand_as(outputs)
    per_image = SSIMLoss(window, reduction="none")(outputs, targets)
    torch.testing.assert_close(per_image, 1 - ssim(outputs, targets, window), rtol=0, atol=1e-12)
    torch.testing.assert_close(SSIMLoss(window)(outputs, targets), per_image.mean(), rtol=0, atol=1e-12)
    # The loss computes float32 images in float32: the window's rounded taps move it by a few 1e-6 at most.
    single = SSIMLoss(window, reduction="none")(outputs.float(), targets.float())
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), per_image, rtol=0, atol=2e-5)


def _gradcheck_pair(channels: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent float64 images inside (0.1, 0.9), both needing gradients."""
    generator = torch.Generator().manual_seed(channels + height)
    return tuple(
        (0.1 + 0.8 * torch.rand(1, channels, height, width, generator=generator, dtype=torch.float64)).requires_grad_()
        for _ in range(2)
    )


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("channels", [1, 3])
def test_gradients_match_finite_differences(window: str, channels: int) -> None:
    # The full Jacobian (no fast mode) of both images, 13 × 15 pixels: the window fits in 3 × 5 (Gaussian) or
    # 7 × 9 (fastMRI) places, so every pixel reaches the value through one or more windows.
    output, target = _gradcheck_pair(channels, 13, 15)
    assert gradcheck(lambda o, t: ssim(o, t, window), (output, target))
    assert gradcheck(SSIMLoss(window, reduction="none"), (output, target))
    assert gradcheck(SSIMLoss(window), (output, target))


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize(
    "make_pair",
    [
        lambda: (photo("astronaut", 64, 64), photo("astronaut", 64, 64)),
        lambda: (torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)),
        lambda: (torch.zeros(1, 1, 64, 64), head(64, 64)),
        lambda: (torch.full((1, 3, 64, 64), 0.3), torch.full((1, 3, 64, 64), 0.7)),
    ],
    ids=["identical", "black", "black-vs-head", "constants"],
)
def test_loss_gradient_finite_in_float32(window: str, make_pair) -> None:
    output, target = (image.float() for image in make_pair())
    output.requires_grad_()
    loss = SSIMLoss(window)(output, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(output.grad).all()


def test_under_bfloat16_autocast_the_loss_stays_float32() -> None:
    target = photo("chelsea", 64, 64).float()
    output = _degraded(target)[:1].requires_grad_()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = SSIMLoss()(output, target)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), 1 - ssim(output.detach().double(), target.double())[0], rtol=0, atol=2e-5)
    loss.backward()
    assert torch.isfinite(output.grad).all()


def test_ssim_is_symmetric() -> None:
    target = photo("coffee", 64, 64)
    output = _degraded(target)[2:]
    for window in WINDOWS:
        assert np.isclose(float(ssim(output, target, window)), float(ssim(target, output, window)), rtol=0, atol=1e-15)


def test_constants_cached_under_inference_mode_serve_training() -> None:
    # Evaluation computes the metric under inference mode first; the loss then trains with the cached window.
    ssim_module._taps.cache_clear()
    images = torch.rand(2, 1, 32, 32)
    for window in WINDOWS:
        with torch.inference_mode():
            SSIMLoss(window)(images, images.flip(-1))
        output = images.clone().requires_grad_()
        SSIMLoss(window)(output, images.flip(-1)).backward()
        assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0
