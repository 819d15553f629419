"""Differentiable LDR-FLIP error map (float32, or float64 for float64 inputs; channel-first internals).

Layout: each image set (reference, test) is carried channel-first, (C, N, H, W), so that
colour transforms are single GEMMs and each filtering direction is one batched GEMM over all
channels and images. The vertical pass runs on the transposed images, so everything after
filtering lives in (…, W, H) and only the final map is transposed back.

Both filtering directions are applied to one stack of 8 channels (3 for the linear gray modes: Y and two
copies of y) built by one affine map from linear RGB: the CSF inputs Y, Cx, Cz, Cz (the blue-yellow filter is a sum
of two separable Gaussians, hence two copies) and four copies of the normalised luminance
(Y + 16) / 116 for the feature detectors, which the two passes turn into dy, ddy, dx and ddx.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import torch

from lossbench.core.precision import ieee_float32_autograd
from lossbench.flip import _color, _filters

MODES = ("rgb", "gray_thesis", "gray_lab", "gray_replicated")
#: How the FLIP loss treats values outside [0, 1]; "clamp" is the metric.
OUT_OF_RANGE = ("clamp", "inward", "extrapolate")
#: Modes whose input is linear grayscale, taken straight to the achromatic channel Y = 116 y - 16.
LINEAR_GRAY_MODES = ("gray_thesis", "gray_lab")

_YCXCZ_SPLIT_TO_RGB = _color.YCXCZ_TO_RGB[:, [0, 1, 2, 2]]


@functools.lru_cache(maxsize=16)
def _plan(mode: str, ppd: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Affine input map and per-channel kernels of both filtering passes for ``mode``.

    Returns:
        ``(matrix, offset, x_kernels, y_kernels)``: ``matrix`` (C, C_in) and ``offset`` (C,)
        map the linear input channels to the C filter channels; the kernels are (C, 2r+1).
    """
    csf = _filters.csf_kernels(ppd)
    feat = _filters.feature_kernels(ppd)
    radius = max(_filters.csf_radius(ppd), _filters.feature_radius(ppd))
    k = {name: _filters.pad_kernel(v, radius) for name, v in {**csf, **feat}.items()}
    if mode in LINEAR_GRAY_MODES:
        # Input is linear luminance y: Y = 116 y - 16 for the CSF, y itself for the edges.
        matrix = np.array([[116.0], [1.0], [1.0]])
        offset = np.array([-16.0, 0.0, 0.0])
        x_kernels = np.stack([k["y"], k["g"], k["dg"]])
        y_kernels = np.stack([k["y"], k["dg"], k["g"]])
        return matrix, offset, x_kernels, y_kernels
    ycxcz = _color.RGB_TO_YCXCZ
    luminance = ycxcz[0] / 116.0
    matrix = np.stack([ycxcz[0], ycxcz[1], ycxcz[2], ycxcz[2]] + [luminance] * 4)
    offset = np.array([-16.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    if mode == "gray_replicated":
        # A grey pixel v is (v, v, v) in linear RGB, so the 3-column map collapses to row sums.
        matrix = matrix.sum(axis=1, keepdims=True)
    x_kernels = np.stack([k["y"], k["cx"], k["cz1"], k["cz2"], k["g"], k["g"], k["dg"], k["ddg"]])
    y_kernels = np.stack([k["y"], k["cx"], k["cz1"], k["cz2"], k["dg"], k["ddg"], k["g"], k["g"]])
    return matrix, offset, x_kernels, y_kernels


@functools.lru_cache(maxsize=32)
def _passes(
    mode: str, ppd: float, height: int, width: int, device: str, dtype: torch.dtype
) -> tuple[_filters.SeparablePass, _filters.SeparablePass]:
    """Horizontal and vertical filtering passes for (height, width) images of ``dtype``, cached."""
    _, _, x_kernels, y_kernels = _plan(mode, ppd)
    dev = torch.device(device)
    # Outside inference mode: an evaluation's first call must not cache tensors training cannot save for backward.
    with torch.inference_mode(False):
        return _filters.SeparablePass(x_kernels, width, dev, dtype), _filters.SeparablePass(
            y_kernels, height, dev, dtype
        )


def clamp_unit(x: torch.Tensor) -> torch.Tensor:
    """x clamped to [0, 1]; gradient 1 on the closed interval, including its ends, 0 outside.

    ``torch.clamp`` passes no gradient at the bounds themselves, so a value exactly at 0 or 1
    (an 8-bit image's black and white) would get none; the one-sided derivative from inside the
    range is the useful one.
    """
    return torch.where((x >= 0.0) & (x <= 1.0), x, x.clamp(0.0, 1.0))


class _ClampInward(torch.autograd.Function):
    """Clamp to [0, 1] whose gradient outside the range is the one at the clamped value, passed
    on only where a descent step moves the value back towards the range."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # A descent step changes x by -grad: above 1 it must be negative, below 0 positive.
        keep = ((x >= 0.0) & (x <= 1.0)) | ((x > 1.0) & (grad > 0)) | ((x < 0.0) & (grad < 0))
        return torch.where(keep, grad, 0.0)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


#: out_of_range option → (limit of the input images, limit of the filtered linear colours).
_LIMITS = {
    "clamp": (clamp_unit, clamp_unit),
    "inward": (_ClampInward.apply, clamp_unit),
    "extrapolate": (_identity, _identity),
}


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt for x >= 0 with gradient 0 (not inf * 0 = NaN) at x = 0; forward unchanged."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, 1.0)), 0.0)


def _safe_pow(x: torch.Tensor, exponent: float) -> torch.Tensor:
    """x ** exponent for x >= 0, exponent > 0, with gradient 0 at x = 0; forward unchanged."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1.0) ** exponent, 0.0)


def _remap_color(hyab: torch.Tensor) -> torch.Tensor:
    """FLIP's colour-error remap: hyab^qc compressed piecewise-linearly into [0, 1]."""
    pccmax = _color.PC * _color.CMAX
    c = _safe_pow(hyab, _color.QC)
    above_knee = _color.PT + (c - pccmax) * ((1.0 - _color.PT) / (_color.CMAX - pccmax))
    return torch.where(c < pccmax, c * (_color.PT / pccmax), above_knee)


def _feature_error(difference: torch.Tensor) -> torch.Tensor:
    """dEf = (feature-magnitude difference / sqrt 2) ** qf, qf = 0.5, in [0, 1]."""
    return _safe_pow(difference * (1.0 / math.sqrt(2.0)), 0.5)


def _magnitude(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Length of the (a, b) response vector, e.g. (dx, dy) for edges."""
    return _safe_sqrt(a * a + b * b)


class _Perception(NamedTuple):
    """What FLIP compares, per image, in the transposed (…, W, H) layout.

    ``lightness`` is L* (rgb, gray_replicated and gray_lab) or the filtered Y (gray_thesis);
    ``chroma`` holds the Hunt-adjusted (a, b) and ``points`` the point magnitudes, both None for
    the linear gray modes.
    """

    lightness: torch.Tensor
    chroma: torch.Tensor | None
    edges: torch.Tensor
    points: torch.Tensor | None


def _perceive(images: torch.Tensor, ppd: float, mode: str, out_of_range: str, dtype: torch.dtype) -> _Perception:
    """Filter and transform (N, C, H, W) images into the quantities FLIP compares, computing in ``dtype``.

    ``out_of_range`` (see :class:`lossbench.losses.flip.FLIPLoss`) chooses FLIP's clamps to [0, 1] of the
    input and of the filtered linear colour: the metric's ("clamp"), the input's with an inward
    gradient ("inward"), or none, FLIP's formulas continued outside [0, 1] ("extrapolate"; every
    step stays finite there).
    """
    _, _, height, width = images.shape
    limit_input, limit_colour = _LIMITS[out_of_range]
    channels = limit_input(images.to(dtype)).transpose(0, 1)
    if mode not in LINEAR_GRAY_MODES:
        channels = _color.srgb_to_linear(channels)
    matrix, offset, _, _ = _plan(mode, ppd)
    x_pass, y_pass = _passes(mode, ppd, height, width, str(images.device), dtype)
    filtered = y_pass(x_pass(_color.apply_matrix(matrix, channels, offset)).transpose(-1, -2))
    if mode in LINEAR_GRAY_MODES:
        edges = _magnitude(filtered[2], filtered[1])
        if mode == "gray_thesis":
            return _Perception(filtered[0], None, edges, None)
        # gray_lab: back to the linear value y = (Y + 16) / 116, in [0, 1] since the filter is
        # positive and normalised; a grey has a* = b* = 0, so L* = 116 f(y) - 16 is all of its L*a*b*.
        return _Perception(116.0 * _color.lab_f((filtered[0] + 16.0) * (1.0 / 116.0)) - 16.0, None, edges, None)
    # Columns (Y, Cx, Cz1, Cz2): the two Cz partial filters are summed by the matrix.
    linear = limit_colour(_color.apply_matrix(_YCXCZ_SPLIT_TO_RGB, filtered[:4], _color.YCXCZ_TO_RGB_OFFSET))
    companded = _color.lab_f(_color.apply_matrix(_color.RGB_TO_XYZN, linear))
    lab = _color.apply_matrix(_color.F_TO_LAB, companded, _color.LAB_OFFSET)
    hunt_ab = lab[1:] * (0.01 * lab[0])
    return _Perception(lab[0], hunt_ab, _magnitude(filtered[6], filtered[4]), _magnitude(filtered[7], filtered[5]))


def error_map(
    output: torch.Tensor, target: torch.Tensor, ppd: float, mode: str, out_of_range: str = "clamp"
) -> torch.Tensor:
    """FLIP error map of validated (N, C, H, W) ``output`` against ``target``; see :func:`lossbench.flip.flip_map`.

    ``out_of_range`` other than "clamp" (the metric) is one of the FLIP loss's deviations, see
    :class:`lossbench.losses.flip.FLIPLoss`. Below, the official names: ``reference`` is ``target``,
    ``test`` is ``output``.

    Computed in float32, or in float64 when either image is float64 (for gradient checks).
    """
    dtype = torch.float64 if torch.float64 in (output.dtype, target.dtype) else torch.float32
    function = functools.partial(_error_map, ppd=ppd, mode=mode, out_of_range=out_of_range, dtype=dtype)
    if dtype == torch.float64:
        # TF32 only ever rounds float32 products, and gradcheck differentiates the graph more than
        # once, which ieee_float32_autograd's replayed graph does not allow.
        return function(target, output)
    # cuBLAS TF32 would shift FLIP by up to 2 % (CPU imitation, tests/test_flip_loss.py), so its products run in full
    # float32.
    return ieee_float32_autograd(function, target, output)


def _error_map(
    reference: torch.Tensor, test: torch.Tensor, ppd: float, mode: str, out_of_range: str, dtype: torch.dtype
) -> torch.Tensor:
    with torch.autocast(device_type=reference.device.type, enabled=False):
        # A reference that needs no gradient (the usual training target) builds no graph,
        # which halves the backward pass.
        with torch.set_grad_enabled(torch.is_grad_enabled() and reference.requires_grad):
            ref = _perceive(reference, ppd, mode, out_of_range, dtype)
        tst = _perceive(test, ppd, mode, out_of_range, dtype)

        hyab = torch.abs(ref.lightness - tst.lightness)
        feature = torch.abs(ref.edges - tst.edges)
        if ref.chroma is not None:
            delta_ab = ref.chroma - tst.chroma
            hyab = hyab + _safe_sqrt(delta_ab[0] * delta_ab[0] + delta_ab[1] * delta_ab[1])
            feature = torch.maximum(feature, torch.abs(ref.points - tst.points))
        color = _remap_color(hyab)
        exponent = 1.0 - _feature_error(feature)
        positive = color > 0
        # pow(0, e) is 0 for e > 0 and 1 for e = 0 (feature error exactly 1); keep both values
        # while routing no gradient through the log of 0.
        flip = torch.where(positive, torch.where(positive, color, 1.0) ** exponent, (exponent == 0).to(color.dtype))
    return flip.transpose(-1, -2).unsqueeze(1)
