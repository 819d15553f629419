"""Single-scale structural similarity (Wang et al., 2004) per image, in two definitions; its loss is
:mod:`lossbench.losses.ssim`.

``window="gaussian"`` (the default on RGB tasks) is Wang et al.'s: an 11-tap Gaussian window
(σ = 1.5), population variances and covariance, K1 = 0.01, K2 = 0.03, the SSIM map averaged over
the pixels where the window fits (no padding) and over channels. It equals ``pytorch-msssim``'s
``ssim`` and scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``. Unlike Wang et al.'s MATLAB ``ssim_index`` it does not first
downsample images whose smaller side exceeds 256 pixels.

``window="fastmri"`` (the default on the 1-channel MRI tasks) is fastMRI's, ``fastmri.evaluate.ssim``:
scikit-image's ``structural_similarity`` with its defaults, a 7 × 7 uniform window with sample
variances and covariance (× 49/48), K1 = 0.01, K2 = 0.03, the map averaged where the window fits.
``fastmri.evaluate.ssim(gt, pred, maxval)`` is the mean of that per-slice value over a volume's
slices with ``data_range = maxval``, by default the maximum of the whole ground-truth volume. This
metric sees one slice at a time, so it takes the data range as a number: the default 1 is the
volume's ``max`` attribute, by which lossbench divides every slice (:mod:`lossbench.data.mri`). The
mean of its values over a volume is therefore ``fastmri.evaluate.ssim`` with ``maxval`` the
volume's ``max`` attribute, which is fastMRI's default ``maxval`` wherever the evaluated crop holds
the volume's brightest pixel (the leaderboard's 320 × 320 crop of the stored reconstruction does);
on smaller crops fastMRI's default takes the crop's own maximum, ≤ 1 here, and the values differ
(docs/calibration.md measures by how much).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from lossbench.core.checks import check_image_pair
from lossbench.core.precision import ieee_float32_autograd
from lossbench.core.specs import MetricInfo, MetricSpec, Setting

WindowName = Literal["gaussian", "fastmri"]
K1 = 0.01
K2 = 0.03


@dataclass(frozen=True)
class Window:
    """A separable averaging window of SSIM's local statistics.

    Attributes:
        size: Taps per axis; the SSIM map covers the pixels where the whole window fits.
        sigma: Standard deviation of a Gaussian window, in pixels; None: uniform.
        sample_covariance: Whether variances and covariance are the unbiased sample ones
            (× n/(n − 1) over the window's n pixels), as scikit-image's default.
        description: How a table footnote names it.
    """

    size: int
    sigma: float | None
    sample_covariance: bool
    description: str


WINDOWS: dict[str, Window] = {
    "gaussian": Window(11, 1.5, False, "Wang et al.'s 11 × 11 Gaussian window (σ 1.5)"),
    "fastmri": Window(7, None, True, "fastMRI's 7 × 7 uniform window and sample covariance, per slice"),
}


@functools.cache
def _taps(name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The window's 1-D taps, summing to one; made once per (window, dtype, device) and outside inference mode, so
    that autograd may save them."""
    window = WINDOWS[name]
    with torch.inference_mode(False):
        if window.sigma is None:
            return torch.full((window.size,), 1.0 / window.size, dtype=dtype, device=device)
        coords = torch.arange(window.size, dtype=dtype, device=device) - window.size // 2
        taps = torch.exp(-coords.square() / (2 * window.sigma**2))
        return taps / taps.sum()


def _ssim(x: torch.Tensor, y: torch.Tensor, name: str, data_range: float) -> torch.Tensor:
    """Mean SSIM per image of validated (N, C, H, W) images of the compute dtype, (N,)."""
    window = WINDOWS[name]
    taps = _taps(name, x.dtype, x.device)
    channels = 5 * x.shape[1]
    # The five moment maps of every channel in one depthwise pass: rows, then columns, both unpadded.
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    rows = F.conv2d(stacked, taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    moments = F.conv2d(rows, taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    mu_x, mu_y, xx, yy, xy = moments.chunk(5, dim=1)
    pixels = window.size**2
    factor = pixels / (pixels - 1) if window.sample_covariance else 1.0
    var_x = factor * (xx - mu_x.square())
    var_y = factor * (yy - mu_y.square())
    cov = factor * (xy - mu_x * mu_y)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    ssim_map = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    # Every channel's map has as many pixels, so the mean over all is the mean of the channels' means.
    return ssim_map.flatten(1).mean(1)


def check_window(window: str, side: int | None, name: str) -> Window:
    """The window called ``window``, checked against an image's smaller ``side`` (None: not yet known).

    Raises:
        ValueError: an unknown window, or a side smaller than it (one line naming ``name``).
    """
    if window not in WINDOWS:
        raise ValueError(f"{name}: unknown window {window!r}, expected one of {', '.join(map(repr, WINDOWS))}")
    found = WINDOWS[window]
    if side is not None and side < found.size:
        raise ValueError(
            f"{name}: image side {side} is smaller than the {found.size}-pixel {window} window (the SSIM map is taken"
            " where the window fits)"
        )
    return found


def structural_similarity(
    output: torch.Tensor, target: torch.Tensor, window: WindowName = "gaussian", data_range: float = 1.0
) -> torch.Tensor:
    """SSIM per image in float32 (float64 inputs stay float64), the loss's core; the metric is :func:`ssim`.

    Autocast is disabled, and on GPUs TF32 too, forward and backward: TF32 convolutions round the
    moments, whose differences are the variances, to 10 bits. Differentiable, with finite gradients
    everywhere (the constants keep every denominator positive). In float32 the variances E[x²] − E[x]²
    cancel where the image is bright and flat, and turn the rounding of the window's taps (a sum of
    1 ± 1e-7) into a bias of the same sign everywhere: on the demo's synthetic MRI slices the mean moved
    by up to 6e-6 (docs/calibration.md), which is why the metric computes in float64.

    Args:
        output: Images of shape (N, C, H, W), C in {1, 3}, values in [0, ``data_range``].
        target: Reference images of the same shape.
        window: ``"gaussian"`` (Wang et al.'s) or ``"fastmri"`` (``fastmri.evaluate.ssim``'s); see the
            module's notes. The smaller image side must hold the window (11 and 7 pixels).
        data_range: Dynamic range L of the pixel values: C1 = (K1·L)², C2 = (K2·L)². For fastMRI's
            definition, the volume's maximum in the images' units (1 for lossbench's MRI slices,
            divided by it).

    Returns:
        Tensor of shape (N,) in the compute dtype.
    """
    check_image_pair(output, target, "ssim")
    check_window(window, min(output.shape[-2:]), "ssim")
    dtype = torch.promote_types(output.dtype, torch.float32)
    function = functools.partial(_ssim, name=window, data_range=float(data_range))
    with torch.autocast(device_type=output.device.type, enabled=False):
        x, y = output.to(dtype), target.to(dtype)
        if dtype == torch.float64:
            # TF32 rounds only float32 products, and gradcheck differentiates the graph more than once, which the
            # replayed graph of ieee_float32_autograd does not allow.
            return function(x, y)
        return ieee_float32_autograd(function, x, y)


def ssim(
    output: torch.Tensor, target: torch.Tensor, window: WindowName = "gaussian", data_range: float = 1.0
) -> torch.Tensor:
    """SSIM per image, (N, C, H, W) -> (N,), 1 for identical images: :func:`structural_similarity` computed in
    float64, so that fastMRI's definition equals ``fastmri.evaluate.ssim`` (float64 in lossbench's evaluation) to
    1e-6 whatever the images; returned in float32 (float64 for float64 inputs). Differentiable.

    Args:
        output, target, window, data_range: As for :func:`structural_similarity`.
    """
    check_image_pair(output, target, "ssim")
    dtype = torch.promote_types(output.dtype, torch.float32)
    return structural_similarity(output.double(), target.double(), window, data_range).to(dtype)


def task_window(setting: Setting) -> WindowName:
    """fastMRI's definition on the 1-channel (MRI) tasks, Wang et al.'s Gaussian window on the RGB ones."""
    return "fastmri" if setting.channels == 1 else "gaussian"


def _metric_defaults(setting: Setting) -> dict[str, Any]:
    return {"window": task_window(setting)}


def _too_small(side: int) -> str | None:
    # The size hook does not know the task's channels: the larger of the two default windows.
    largest = max(window.size for window in WINDOWS.values())
    if side < largest:
        return f"the ssim metric's {largest}-pixel window (the side must be at least {largest})"
    return None


def window_conditions(params: Mapping[str, Any]) -> str:
    """Which SSIM a table shows: the definition differs between the RGB and the MRI tasks."""
    window = params.get("window", "gaussian")
    return f"SSIM with {WINDOWS[window].description}, data range {params.get('data_range', 1.0):g}."


METRIC = MetricSpec(
    "ssim",
    ssim,
    MetricInfo("SSIM", higher_is_better=True),
    defaults=_metric_defaults,
    too_small=_too_small,
    thesis=False,
    conditions=window_conditions,
    best=1.0,
    differentiable=True,
    reference=(
        "Wang, Bovik, Sheikh & Simoncelli 2004, Image quality assessment: from error visibility to structural"
        " similarity (IEEE TIP); on MRI tasks as fastmri.evaluate.ssim computes it (docs/calibration.md)"
    ),
)
