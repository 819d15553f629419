"""Multi-scale structural similarity (thesis §2.4.3; Wang et al., 2003) as a metric; its loss is
:mod:`lossbench.losses.msssim`.

The computation follows the TensorFlow / ``pytorch-msssim`` convention so that values agree with
that reference to float precision: a separable 11-tap Gaussian window (σ = 1.5) applied without
padding, K1 = 0.01, K2 = 0.03, five scales weighted (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
2×2 average pooling between scales, contrast-structure and the final-scale SSIM clamped at zero
before the power, and the per-channel values averaged over channels.

Odd image sides are pooled as ``pytorch-msssim`` does: one pixel of zero padding on both sides
of that axis, counted in the average, so sizes such as 300×451 match the reference as well.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.nn.grad import conv2d_input

from lossbench.core import specs
from lossbench.core.checks import check_image_pair
from lossbench.core.precision import ieee_float32

SmallImages = Literal["error", "reduce_scales"]

#: Per-scale exponents of Wang et al. (2003), finest scale first.
SCALE_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1 = 0.01
K2 = 0.03

# Below this value a clamped term is treated as flat: d/dx x**w = w·x**(w-1) diverges at 0 for
# w < 1, which turns into inf or NaN gradients once it meets the zero gradient of the clamp.
_POW_FLOOR = 1e-6


def usable_scales(height: int, width: int) -> int:
    """Number of MS-SSIM scales an image of the given size supports, at most five.

    With valid (unpadded) filtering the coarsest of ``m`` scales is about ``side / 2**(m-1)``
    pixels wide and must still hold the 11-pixel window, hence ``side > 10 · 2**(m-1)``.
    Returns 0 when even single-scale SSIM does not fit (smallest side under 11 pixels).
    """
    side = min(height, width)
    scales = 0
    while scales < len(SCALE_WEIGHTS) and side > (WINDOW_SIZE - 1) * 2**scales:
        scales += 1
    return scales


@functools.cache
def _constants(dtype: torch.dtype, device: torch.device, scales: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian window (WINDOW_SIZE,) and the exponents of ``scales`` scales (scales, 1, 1).

    Made once per (dtype, device, scales), so that a training step copies nothing from the host.
    Outside inference mode, so that a first call under ``torch.inference_mode`` does not cache
    tensors that autograd may not save later.
    """
    kept = SCALE_WEIGHTS[:scales]
    if scales < len(SCALE_WEIGHTS):
        # Sum to one, so a single scale is exactly SSIM. The full published set sums to 1.0001 and
        # stays as published, as in the reference.
        kept = tuple(w / sum(kept) for w in kept)
    with torch.inference_mode(False):
        coords = torch.arange(WINDOW_SIZE, dtype=dtype, device=device) - WINDOW_SIZE // 2
        window = torch.exp(-coords.square() / (2 * WINDOW_SIGMA**2))
        return window / window.sum(), torch.tensor(kept, dtype=dtype, device=device).view(-1, 1, 1)


class _GaussianBlur(torch.autograd.Function):
    """Valid separable Gaussian filtering of every channel of (N, C, H, W) images, in full float32
    on GPUs, forward and backward.

    cuDNN would round float32 convolutions to TF32 on Ampere and later, shifting MS-SSIM by up to
    1e-2; the flag is global and backward runs after the loss has returned, so the scope is set
    here, around each convolution. Backward uses convolution's own input-gradient kernel (as fast
    as autograd's); it is once differentiable, so that no second derivative runs unscoped.
    """

    @staticmethod
    def forward(ctx, images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(window)
        ctx.shape = images.shape
        rows, cols = _separable_kernels(window, images.shape[1])
        with ieee_float32():
            return F.conv2d(F.conv2d(images, rows, groups=images.shape[1]), cols, groups=images.shape[1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (window,) = ctx.saved_tensors
        batch, channels, height, width = ctx.shape
        rows, cols = _separable_kernels(window, channels)
        with ieee_float32():
            after_rows = conv2d_input((batch, channels, height - WINDOW_SIZE + 1, width), cols, grad, groups=channels)
            return conv2d_input(ctx.shape, rows, after_rows, groups=channels), None


def _separable_kernels(window: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise (C, 1, K, 1) and (C, 1, 1, K) kernels of the 1-D ``window`` for grouped convolution."""
    return window.view(1, 1, -1, 1).expand(channels, 1, -1, 1), window.view(1, 1, 1, -1).expand(channels, 1, 1, -1)


def _ssim_terms(
    x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure per image and channel, both (N, C)."""
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    channels = x.shape[1]
    # One grouped convolution over all five moment maps instead of five separate passes.
    moments = _GaussianBlur.apply(torch.cat([x, y, x * x, y * y, x * y], dim=1), window)
    mu_x, mu_y, xx, yy, xy = moments.split(channels, dim=1)
    var_x = xx - mu_x.square()
    var_y = yy - mu_y.square()
    cov = xy - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x.square() + mu_y.square() + c1) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def _downsample(images: torch.Tensor) -> torch.Tensor:
    padding = [side % 2 for side in images.shape[2:]]
    return F.avg_pool2d(images, kernel_size=2, padding=padding)


def _clamped_pow(values: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """``relu(values) ** exponents`` with a finite gradient everywhere.

    The value equals the reference exactly; the gradient is zero where ``values <= 1e-6``
    (negative contrast-structure, which the reference clamps to zero anyway) and bounded by
    ``w · 1e-6**(w-1)`` elsewhere, instead of the inf/NaN of a fractional power at zero.
    """
    smooth = values.clamp_min(_POW_FLOOR) ** exponents
    flat = values.detach().clamp_min(0) ** exponents
    return torch.where(values > _POW_FLOOR, smooth, flat)


def ms_ssim(
    output: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    small_images: SmallImages = "error",
) -> torch.Tensor:
    """MS-SSIM per image, (N, C, H, W) -> (N,), in [0, 1] (1 for identical images).

    Computed in float32 (float64 inputs stay float64) with autocast disabled, so it is safe to
    call under bfloat16/float16 autocast, and with TF32 off in its convolutions, forward and
    backward (see :class:`_GaussianBlur`). Differentiable; the gradient is finite everywhere
    (see :func:`_clamped_pow`). Neither direction copies from or waits for the host after the
    first call per (dtype, device, scales).

    Args:
        output: Images of shape (N, C, H, W), C in {1, 3}, values in [0, ``data_range``].
        target: Reference images of the same shape.
        data_range: Dynamic range L of the pixel values (thesis: C1 = (K1·L)², C2 = (K2·L)²).
        small_images: What to do when the smallest side is 160 pixels or less, too small for
            five scales with valid filtering. ``"error"`` raises ``ValueError``.
            ``"reduce_scales"`` drops the coarsest scales, keeping as many as fit
            (:func:`usable_scales`: 3 scales for 64×64, 1 scale, i.e. plain SSIM, under 21
            pixels), and renormalises the remaining weights to sum to one; values are then not
            comparable with five-scale MS-SSIM. Sides under 11 pixels always raise.

    Returns:
        Tensor of shape (N,) in the compute dtype.
    """
    check_image_pair(output, target, "ms_ssim")
    if small_images not in ("error", "reduce_scales"):
        raise ValueError(f"ms_ssim: small_images must be 'error' or 'reduce_scales', got {small_images!r}")
    height, width = output.shape[-2:]
    scales = usable_scales(height, width)
    full = len(SCALE_WEIGHTS)
    minimum = (WINDOW_SIZE - 1) * 2 ** (full - 1)
    if scales < full and small_images == "error":
        raise ValueError(
            f"ms_ssim: image size {height}x{width} is too small for {full} scales, the smallest side "
            f"must exceed {minimum} pixels (or pass small_images='reduce_scales')"
        )
    if scales == 0:
        raise ValueError(
            f"ms_ssim: image size {height}x{width} is too small even for one scale, the smallest side "
            f"must be at least {WINDOW_SIZE} pixels"
        )

    dtype = torch.promote_types(output.dtype, torch.float32)
    with torch.autocast(device_type=output.device.type, enabled=False):
        x, y = output.to(dtype), target.to(dtype)
        window, weights = _constants(dtype, x.device, scales)
        terms = []
        for scale in range(scales):
            ssim_val, cs = _ssim_terms(x, y, window, data_range)
            if scale < scales - 1:
                terms.append(cs)
                x, y = _downsample(x), _downsample(y)
        terms.append(ssim_val)
        # (scales, N, C) -> product over scales -> mean over channels.
        per_channel = _clamped_pow(torch.stack(terms), weights).prod(dim=0)
        return per_channel.mean(dim=1)


def _too_small(side: int) -> str | None:
    # The metric keeps its default small_images="error": every scale must fit.
    if usable_scales(side, side) < len(SCALE_WEIGHTS):
        return (
            f"the msssim metric's {len(SCALE_WEIGHTS)} scales (the side must exceed"
            f" {(WINDOW_SIZE - 1) * 2 ** (len(SCALE_WEIGHTS) - 1)})"
        )
    return None


METRIC = specs.MetricSpec(
    "msssim",
    ms_ssim,
    specs.MetricInfo("MS-SSIM", higher_is_better=True),
    portable_params={"small_images": "reduce_scales"},
    too_small=_too_small,
    best=1.0,
    differentiable=True,
    reference=(
        "Wang, Simoncelli & Bovik 2003, Multi-scale structural similarity for image quality assessment (Asilomar);"
        " as pytorch-msssim computes it (thesis §2.4.3)"
    ),
)
