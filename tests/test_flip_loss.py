"""Tests of FLIP as a training loss: out-of-range handling, gradients at the range bounds, and
that a small denoiser trained on it improves both FLIP and PSNR over its input (docs/flip_loss.md)."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import data

from lossbench.flip import MODES, OUT_OF_RANGE, _core, flip
from lossbench.losses.flip import FLIPLoss
from lossbench.models import UNet

#: Training steps of the small denoiser.
STEPS = 300


def _smooth_pair(channels: int = 3, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth reference and a smooth distortion of it, both well inside [0.2, 0.8]."""
    rng = np.random.default_rng(0)
    fields = np.tanh(4 * ndimage.gaussian_filter(rng.standard_normal((2, channels, size, size)), (0, 0, 4, 4)))
    reference = torch.from_numpy(0.5 + 0.15 * fields[0]).float()[None]
    return reference, (reference + 0.1 * torch.from_numpy(fields[1]).float()).clamp(0.2, 0.8)


@pytest.mark.parametrize("mode", MODES)
def test_clamp_option_is_the_metric(mode: str) -> None:
    gen = torch.Generator().manual_seed(1)
    channels = 3 if mode == "rgb" else 1
    target = torch.rand(2, channels, 24, 24, generator=gen)
    output = target + 0.4 * torch.randn(target.shape, generator=gen)
    assert float(FLIPLoss(mode=mode, out_of_range="clamp")(output, target)) == pytest.approx(
        float(flip(output, target, mode=mode).mean()), abs=1e-7
    )


@pytest.mark.parametrize("mode", MODES)
def test_extrapolation_is_the_metric_inside_the_range(mode: str) -> None:
    reference, test = _smooth_pair(3 if mode == "rgb" else 1)
    metric = float(flip(test, reference, mode=mode).mean())
    assert metric > 0.01
    assert float(FLIPLoss(mode=mode)(test, reference)) == pytest.approx(metric, abs=1e-7)


@pytest.mark.parametrize("mode", MODES)
def test_extrapolation_pulls_out_of_range_values_back(mode: str) -> None:
    reference, test = _smooth_pair(3 if mode == "rgb" else 1)
    test = test.clone()
    test[..., 10:14, 10:14] = 1.4
    test[..., 20:24, 20:24] = -0.4
    for out_of_range, expect_gradient in (("clamp", False), ("inward", True), ("extrapolate", True)):
        output = test.clone().requires_grad_(True)
        FLIPLoss(mode=mode, out_of_range=out_of_range)(output, reference).backward()
        above, below = output.grad[..., 10:14, 10:14], output.grad[..., 20:24, 20:24]
        assert torch.isfinite(output.grad).all()
        if expect_gradient:
            # Gradient descent lowers the values above 1 and raises those below 0.
            assert float(above.sum()) > 0 and float(below.sum()) < 0, out_of_range
        else:
            assert float(above.abs().sum()) == 0 and float(below.abs().sum()) == 0, out_of_range


def test_inward_clamp_never_pushes_values_further_out() -> None:
    x = torch.tensor([1.5, 1.5, -0.5, -0.5, 0.5, 1.0, 0.0], requires_grad=True)
    upstream = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0])
    y = _core._ClampInward.apply(x)
    assert y.tolist() == [1.0, 1.0, 0.0, 0.0, 0.5, 1.0, 0.0]
    (y * upstream).sum().backward()
    # Descent moves x by -gradient: 1.5 may only go down, -0.5 only up; inside [0, 1] all pass.
    assert x.grad.tolist() == [1.0, 0.0, 0.0, -1.0, 1.0, -1.0, 1.0]


@pytest.mark.parametrize("out_of_range", OUT_OF_RANGE)
def test_extreme_outputs_give_finite_loss_and_gradient(out_of_range: str) -> None:
    gen = torch.Generator().manual_seed(2)
    target = torch.rand(1, 3, 24, 24, generator=gen)
    output = (3.0 * torch.randn(target.shape, generator=gen)).requires_grad_(True)
    loss = FLIPLoss(out_of_range=out_of_range)(output, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(output.grad).all()


def test_metric_gradient_reaches_values_at_the_range_bounds() -> None:
    # 8-bit black and white: torch.clamp would pass no gradient at exactly 0 and 1.
    reference, _ = _smooth_pair()
    test = reference.clone()
    test[..., :8, :8] = 0.0
    test[..., -8:, -8:] = 1.0
    test.requires_grad_(True)
    flip(test, reference).sum().backward()
    assert float(test.grad[..., 2:6, 2:6].sum()) < 0 and float(test.grad[..., -6:-2, -6:-2].sum()) > 0


def test_invalid_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown out_of_range 'wrap'"):
        FLIPLoss(out_of_range="wrap")


def _psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    return float((10 * torch.log10(1 / ((output - target) ** 2).mean((1, 2, 3)))).mean())


def test_small_denoiser_trained_on_flip_improves_flip_and_psnr() -> None:
    # docs/flip_loss.md: a FLIP-trained network's raw outputs leave [0, 1] (here 25 %) and their
    # raw PSNR falls below the input's; scored as displayed, clamped to [0, 1] as lossbench.evaluate
    # does, it improves on the input in both FLIP and PSNR. FLIP leaves much of the noise (high
    # frequencies, chroma) unseen, so the PSNR gain of a FLIP-trained model is small.
    torch.manual_seed(0)
    image = torch.from_numpy(data.astronaut()[::2, ::2].astype(np.float32) / 255).permute(2, 0, 1)
    gen = torch.Generator().manual_seed(0)

    def batch(n: int, crop: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        top = torch.randint(0, image.shape[1] - crop, (n,), generator=gen)
        left = torch.randint(0, image.shape[2] - crop, (n,), generator=gen)
        clean = torch.stack([image[:, y : y + crop, x : x + crop] for y, x in zip(top.tolist(), left.tolist())])
        return clean + 25 / 255 * torch.randn(clean.shape, generator=gen), clean

    model = UNet(3, 3, width=8, depth=2, kernel_size=3, residual=True)
    loss_fn = FLIPLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(STEPS):
        noisy, clean = batch(8)
        loss = loss_fn(model(noisy), clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    noisy, clean = batch(32)
    with torch.no_grad():
        restored = model(noisy)
    flip_in, flip_out = float(flip(noisy, clean).mean()), float(flip(restored, clean).mean())
    psnr_in, psnr_out = _psnr(noisy.clamp(0, 1), clean), _psnr(restored.clamp(0, 1), clean)
    # Measured: FLIP 0.190 -> 0.154, PSNR 21.03 -> 21.85 dB.
    assert flip_out < flip_in - 0.02, f"FLIP {flip_in:.4f} -> {flip_out:.4f}"
    assert psnr_out > psnr_in + 0.4, f"PSNR {psnr_in:.2f} -> {psnr_out:.2f} dB (both clamped to [0, 1])"


def _tf32_round(tensor: torch.Tensor) -> torch.Tensor:
    """float32 rounded to nearest with TF32's 10 mantissa bits, as tensor cores read float32 inputs."""
    bits = tensor.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def test_tf32_products_would_shift_flip_by_more_than_a_tenth_of_a_percent(monkeypatch):
    # Why FLIP's products run in full float32 (lossbench.core.precision.ieee_float32_autograd): imitating
    # TF32 inputs of its filtering and colour convolutions shifts FLIP at small errors by 1.6 % (RGB, noise 0.01,
    # 128²).
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(2, 3, 64, 64, generator=generator)
    test = (reference + 0.01 * torch.randn(reference.shape, generator=generator)).clamp(0, 1)
    exact = flip(test, reference)
    conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(
        torch.nn.functional,
        "conv2d",
        lambda x, w, *args, **kwargs: conv2d(_tf32_round(x), _tf32_round(w), *args, **kwargs),
    )
    shift = ((flip(test, reference) - exact).abs() / exact).max()
    assert shift > 1e-3, shift


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_flip_loss_matches_the_cpu_with_tf32_enabled():
    generator = torch.Generator().manual_seed(1)
    reference = torch.rand(2, 3, 64, 64, generator=generator)
    test = (reference + 0.02 * torch.randn(reference.shape, generator=generator)).clamp(0, 1)
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = (matmul.fp32_precision, conv.fp32_precision)
    try:
        matmul.fp32_precision = conv.fp32_precision = "tf32"
        values = {}
        for device in ("cpu", "cuda"):
            output = test.to(device).requires_grad_()
            loss = FLIPLoss()(output, reference.to(device))
            loss.backward()
            values[device] = (loss.item(), output.grad.cpu())
    finally:
        matmul.fp32_precision, conv.fp32_precision = before
    # float32 on both, different summation orders: agreement to 1e-5 relative (TF32 would give ~1e-3).
    assert values["cuda"][0] == pytest.approx(values["cpu"][0], rel=1e-5)
    torch.testing.assert_close(values["cuda"][1], values["cpu"][1], rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize("reference_grad", [False, True])
def test_a_step_leaves_no_reference_cycle(reference_grad: bool) -> None:
    """A forward and backward pass frees its intermediates by reference counting alone: kept in a cycle, they would
    wait for Python's cycle collector, and each call would take fresh memory from the OS."""
    gen = torch.Generator().manual_seed(3)
    target = torch.rand(2, 3, 24, 24, generator=gen).requires_grad_(reference_grad)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        output = torch.rand(2, 3, 24, 24, generator=gen).requires_grad_(True)
        FLIPLoss()(output, target).backward()
        del output
        gc.collect()
        leaked = [obj for obj in gc.garbage if isinstance(obj, torch.Tensor)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not leaked, f"{len(leaked)} tensors freed only by the cycle collector, shapes {[t.shape for t in leaked]}"
