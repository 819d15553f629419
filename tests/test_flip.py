"""Tests of the differentiable LDR-FLIP against NVIDIA's flip-evaluator 1.7 and basic properties."""

from __future__ import annotations

import io
import math

import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage import data

from lossbench.flip import DEFAULT_PPD, MODES, _color, _filters, _passes, flip, flip_map, pixels_per_degree
from lossbench.losses.flip import FLIPLoss

MEAN_TOL = 1e-4
MAP_TOL = 1e-3


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (H, W) array -> (1, C, H, W) float32 tensor."""
    array = image if image.ndim == 3 else image[..., None]
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]


def _crop(image: np.ndarray, height: int = 192, width: int = 256) -> np.ndarray:
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[top : top + height, left : left + width].astype(np.float32) / 255.0


def _grace_hopper() -> np.ndarray:
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


def _jpeg(image: np.ndarray, quality: int = 15) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255.0).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer)).astype(np.float32) / 255.0


def _distortions(reference: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sigma = (1.5, 1.5, 0) if reference.ndim == 3 else 1.5
    return {
        "noise": np.clip(reference + rng.normal(0.0, 0.08, reference.shape), 0.0, 1.0).astype(np.float32),
        "blur": ndimage.gaussian_filter(reference, sigma).astype(np.float32),
        "jpeg": _jpeg(reference),
    }


PHOTOS = {
    "astronaut": lambda: _crop(data.astronaut()),
    "coffee": lambda: _crop(data.coffee()),
    "grace_hopper": lambda: _crop(_grace_hopper()),
}


# --- viewing conditions ---------------------------------------------------------------------


def test_pixels_per_degree_default() -> None:
    assert pixels_per_degree() == pytest.approx(67.02064514, abs=1e-7)
    assert pixels_per_degree(1.4, 0.7, 3840) == pytest.approx(2 * pixels_per_degree(), rel=1e-6)


def test_pixels_per_degree_rejects_nonpositive() -> None:
    with pytest.raises(ValueError, match="distance_m"):
        pixels_per_degree(distance_m=0.0)


# --- properties ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_identical_images_give_zero(mode: str) -> None:
    channels = 3 if mode == "rgb" else 1
    x = torch.rand(2, channels, 40, 56, generator=torch.Generator().manual_seed(0))
    error = flip_map(x, x.clone(), mode=mode)
    assert error.shape == (2, 1, 40, 56)
    assert torch.count_nonzero(error) == 0


@pytest.mark.parametrize("mode", MODES)
def test_values_in_unit_interval_and_shapes(mode: str) -> None:
    gen = torch.Generator().manual_seed(1)
    channels = 3 if mode == "rgb" else 1
    reference, test = torch.rand(3, channels, 33, 47, generator=gen), torch.rand(3, channels, 33, 47, generator=gen)
    error = flip_map(test, reference, mode=mode)
    assert error.shape == (3, 1, 33, 47) and error.dtype == torch.float32
    assert float(error.min()) >= 0.0 and float(error.max()) <= 1.0
    means = flip(test, reference, mode=mode)
    assert means.shape == (3,)
    torch.testing.assert_close(means, error.mean(dim=(1, 2, 3)))


def test_black_against_white_is_large() -> None:
    black, white = torch.zeros(1, 3, 24, 24), torch.ones(1, 3, 24, 24)
    assert float(flip(black, white)) > 0.9


def test_symmetric_in_reference_and_test() -> None:
    # HyAB and the feature-magnitude differences are symmetric, so LDR-FLIP is too (the official
    # evaluator gives bit-identical maps for swapped inputs); what FLIP does not have is a
    # symmetric gradient, since training only moves the test image.
    gen = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 3, 30, 40, generator=gen), torch.rand(2, 3, 30, 40, generator=gen)
    torch.testing.assert_close(flip_map(a, b), flip_map(b, a), rtol=0, atol=1e-6)


def test_batch_matches_single_images() -> None:
    gen = torch.Generator().manual_seed(3)
    reference, test = torch.rand(3, 3, 50, 301, generator=gen), torch.rand(3, 3, 50, 301, generator=gen)
    batched = flip_map(test, reference)
    singles = torch.cat([flip_map(test[i : i + 1], reference[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-6)


def test_inputs_are_clamped() -> None:
    gen = torch.Generator().manual_seed(4)
    reference, test = torch.rand(1, 3, 32, 32, generator=gen), torch.randn(1, 3, 32, 32, generator=gen)
    torch.testing.assert_close(flip_map(test, reference), flip_map(test.clamp(0, 1), reference))


def _lab_lightness(y: np.ndarray) -> np.ndarray:
    """CIE L* of linear luminance y (white Yn = 1)."""
    delta = 6.0 / 29.0
    return 116.0 * np.where(y > delta**3, np.cbrt(y), y / (3 * delta * delta) + 4.0 / 29.0) - 16.0


def _linear_gray_direct(reference: np.ndarray, test: np.ndarray, ppd: float, mode: str) -> np.ndarray:
    """gray_thesis or gray_lab written with plain 2-D correlations (edge replication) in float64."""
    csf = _filters.csf_kernels(ppd)["y"]
    feat = _filters.feature_kernels(ppd)
    cmax = _color.CMAX

    def perceive(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        filtered = ndimage.correlate(116.0 * y - 16.0, np.outer(csf, csf), mode="nearest")
        if mode == "gray_lab":
            filtered = _lab_lightness((filtered + 16.0) / 116.0)
        dx = ndimage.correlate(y, np.outer(feat["g"], feat["dg"]), mode="nearest")
        dy = ndimage.correlate(y, np.outer(feat["dg"], feat["g"]), mode="nearest")
        return filtered, np.hypot(dx, dy)

    (y_ref, e_ref), (y_test, e_test) = perceive(reference), perceive(test)
    c = np.abs(y_ref - y_test) ** _color.QC
    knee = _color.PC * cmax
    color = np.where(c < knee, c * _color.PT / knee, _color.PT + (c - knee) / (cmax - knee) * (1 - _color.PT))
    feature = (np.abs(e_ref - e_test) / math.sqrt(2.0)) ** 0.5
    return color ** (1.0 - feature)


@pytest.mark.parametrize("mode", ["gray_thesis", "gray_lab"])
def test_linear_gray_modes_match_direct_2d_formulation(mode: str) -> None:
    rng = np.random.default_rng(5)
    reference = _crop(data.camera(), 70, 90).astype(np.float64)
    test = np.clip(reference + rng.normal(0.0, 0.05, reference.shape), 0.0, 1.0)
    expected = _linear_gray_direct(reference, test, DEFAULT_PPD, mode)
    ours = flip_map(_to_tensor(test), _to_tensor(reference), mode=mode)[0, 0].numpy()
    assert np.abs(ours - expected).max() < MAP_TOL
    assert abs(float(ours.mean()) - float(expected.mean())) < MEAN_TOL


@pytest.mark.parametrize("mode", ["gray_thesis", "gray_lab"])
def test_linear_gray_modes_grow_with_noise(mode: str) -> None:
    reference = _crop(data.camera(), 64, 64)
    rng = np.random.default_rng(6)
    noise = rng.normal(0.0, 1.0, reference.shape)
    errors = [
        float(flip(_to_tensor(np.clip(reference + s * noise, 0, 1)), _to_tensor(reference), mode=mode))
        for s in (0.02, 0.05, 0.1)
    ]
    assert errors == sorted(errors) and errors[0] > 0


# --- against NVIDIA's flip-evaluator --------------------------------------------------------


def _official(reference: np.ndarray, test: np.ndarray, ppd: float = DEFAULT_PPD) -> tuple[np.ndarray, float]:
    """Official LDR-FLIP map (H, W) and mean; grey inputs are repeated into 3 channels."""
    fe = pytest.importorskip("flip_evaluator")
    if reference.ndim == 2:
        reference, test = np.repeat(reference[..., None], 3, axis=2), np.repeat(test[..., None], 3, axis=2)
    error, mean, parameters = fe.evaluate(
        np.ascontiguousarray(reference, dtype=np.float32),
        np.ascontiguousarray(test, dtype=np.float32),
        "LDR",
        applyMagma=False,
        parameters={"ppd": ppd},
    )
    assert parameters["ppd"] == pytest.approx(ppd)
    return np.asarray(error).reshape(reference.shape[:2]), float(mean)


def _assert_matches_official(
    reference: np.ndarray, tests: dict[str, np.ndarray], mode: str, ppd: float = DEFAULT_PPD
) -> None:
    names = list(tests)
    references = torch.cat([_to_tensor(reference)] * len(names))
    ours = flip_map(torch.cat([_to_tensor(tests[k]) for k in names]), references, ppd=ppd, mode=mode).numpy()
    for i, name in enumerate(names):
        expected_map, expected_mean = _official(reference, tests[name], ppd)
        map_error = np.abs(ours[i, 0] - expected_map).max()
        mean_error = abs(float(ours[i, 0].astype(np.float64).mean()) - expected_mean)
        assert map_error < MAP_TOL, f"{name}: map deviates by {map_error:.2e}"
        assert mean_error < MEAN_TOL, f"{name}: mean deviates by {mean_error:.2e}"


@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_rgb_matches_official_evaluator(photo: str) -> None:
    reference = PHOTOS[photo]()
    _assert_matches_official(reference, _distortions(reference, seed=len(photo)), "rgb")


def test_rgb_matches_official_on_odd_size_and_other_ppd() -> None:
    # 300 x 451 exercises the partial last filter block; ppd 30 other filter radii.
    reference = data.chelsea().astype(np.float32) / 255.0
    tests = {k: v for k, v in _distortions(reference, seed=7).items() if k != "blur"}
    _assert_matches_official(reference, tests, "rgb", ppd=30.0)


def test_unclipped_noise_matches_official() -> None:
    reference = PHOTOS["astronaut"]()
    noisy = (reference + np.random.default_rng(8).normal(0.0, 0.1, reference.shape)).astype(np.float32)
    _assert_matches_official(reference, {"unclipped noise": noisy}, "rgb")


def test_gray_replicated_matches_official_evaluator() -> None:
    reference = _crop(data.camera())
    _assert_matches_official(reference, _distortions(reference, seed=9), "gray_replicated")


def test_pixels_per_degree_matches_official_viewing_conditions() -> None:
    fe = pytest.importorskip("flip_evaluator")
    image = np.zeros((8, 8, 3), dtype=np.float32)
    _, _, parameters = fe.evaluate(image, image, "LDR", applyMagma=False, parameters={"vc": [0.7, 3840.0, 0.7]})
    assert pixels_per_degree(0.7, 0.7, 3840) == parameters["ppd"]


# --- gradients --------------------------------------------------------------------------------


def _pairs(channels: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(10)
    x = torch.rand(2, channels, 36, 44, generator=gen)
    return {
        "identical": (x, x.clone()),
        "black": (torch.zeros(2, channels, 36, 44), torch.zeros(2, channels, 36, 44)),
        "white": (torch.ones(2, channels, 36, 44), torch.ones(2, channels, 36, 44)),
        "black_vs_white": (torch.zeros(2, channels, 36, 44), torch.ones(2, channels, 36, 44)),
        "tiny_difference": (x, x + 1e-6),
        "random": (x, torch.rand(2, channels, 36, 44, generator=gen)),
    }


def _autocast_dtypes() -> list[torch.dtype | None]:
    dtypes: list[torch.dtype | None] = [None, torch.bfloat16]
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            torch.ones(2, 2) @ torch.ones(2, 2)
        dtypes.append(torch.float16)
    except RuntimeError:
        pass
    return dtypes


@pytest.mark.parametrize("dtype", _autocast_dtypes(), ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_gradients_are_finite(mode: str, dtype: torch.dtype | None) -> None:
    loss_fn = FLIPLoss(mode=mode)
    for name, (target, output) in _pairs(3 if mode == "rgb" else 1).items():
        output = output.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = loss_fn(output, target)
        loss.backward()
        assert loss.dtype == torch.float32 and torch.isfinite(loss), f"{name}: loss {loss}"
        assert torch.isfinite(output.grad).all(), f"{name}: non-finite gradient"


def test_loss_backward_matches_finite_differences() -> None:
    gen = torch.Generator().manual_seed(11)
    target = torch.rand(1, 3, 32, 32, generator=gen, dtype=torch.float64) * 0.8 + 0.1
    output = (target + 0.05 * torch.randn(target.shape, generator=gen, dtype=torch.float64)).requires_grad_(True)
    loss_fn = FLIPLoss()
    loss_fn(output, target).backward()
    assert output.grad.abs().sum() > 0 and target.grad is None
    direction = output.grad / output.grad.norm()
    step = 2e-3
    with torch.no_grad():
        slope = (loss_fn(output + step * direction, target) - loss_fn(output - step * direction, target)) / (2 * step)
    assert float(slope) == pytest.approx(float(output.grad.norm()), rel=0.02)


def test_reference_gradient_when_requested() -> None:
    gen = torch.Generator().manual_seed(12)
    reference = torch.rand(1, 3, 24, 24, generator=gen).requires_grad_(True)
    test = torch.rand(1, 3, 24, 24, generator=gen).requires_grad_(True)
    flip(test, reference).sum().backward()
    assert reference.grad is not None and torch.isfinite(reference.grad).all() and reference.grad.abs().sum() > 0


# --- input validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "test", "mode", "message"),
    [
        (torch.rand(3, 16, 16), torch.rand(3, 16, 16), "rgb", "shape"),
        (torch.rand(1, 2, 16, 16), torch.rand(1, 2, 16, 16), "rgb", "channels"),
        (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17), "rgb", "differs"),
        (torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), "rgb", "mode 'rgb' needs 3-channel"),
        (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), "gray_thesis", "needs 1-channel"),
        (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), "gray_replicated", "needs 1-channel"),
        (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), "gray_lab", "needs 1-channel"),
        (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), "hdr", "unknown mode 'hdr'"),
    ],
)
def test_invalid_inputs_raise(reference: torch.Tensor, test: torch.Tensor, mode: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        flip_map(test, reference, mode=mode)


def test_invalid_ppd_and_loss_mode_raise() -> None:
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="ppd must be a positive"):
        flip(x, x, ppd=-1.0)
    with pytest.raises(ValueError, match="unknown mode 'grey'"):
        FLIPLoss(mode="grey")


def test_argument_order_is_output_then_target_as_every_loss_and_metric() -> None:
    # FLIP(reference=target, test=output): the target (reference) builds no graph, the output gets the gradient.
    from lossbench import metrics

    gen = torch.Generator().manual_seed(13)
    target = torch.rand(2, 3, 24, 24, generator=gen)
    output = torch.rand(2, 3, 24, 24, generator=gen).requires_grad_(True)
    flip(output, target).sum().backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert metrics.spec("flip").compute is flip
    torch.testing.assert_close(FLIPLoss(reduction="none")(output, target), flip(output, target), rtol=0, atol=0)


@pytest.mark.parametrize("padding", [0, 20])
def test_vertical_pass_on_pixel_pairs_is_the_plain_one(padding: int) -> None:
    """The vertical pass read as pixel pairs of twice the channels gives the plain depthwise convolution's values,
    bit for bit, forward (no padding) and as the adjoint (zero-padded)."""
    filters = _passes.filters_on("rgb", DEFAULT_PPD, "cpu", torch.float32)
    x = torch.randn(2, 8, 40, 30, generator=torch.Generator().manual_seed(4)).contiguous(
        memory_format=torch.channels_last
    )
    plain = torch.nn.functional.conv2d(x, filters.y_weight[:8], padding=(padding, 0), groups=8)
    paired = _passes._vertical(x, filters.y_weight, padding)
    assert paired.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(paired, plain)
