"""Differentiable LDR-FLIP error map (float32, or float64 for float64 inputs; channels-last internals).

The images are filtered by :func:`lossbench.flip._passes.filter_channels`, then compared here. Layout: each
image set (reference, test) is (N, C, H, W) in the channels-last memory format, in which the colour maps are
1x1 convolutions and the filters depthwise convolutions.
Everything from the filtered channels to the map is :class:`_Compare`, whose backward pass is
written out; only the input's clamp, sRGB curve and the convolutions are left to autograd.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from lossbench.core.precision import ieee_float32_autograd
from lossbench.flip import _color
from lossbench.flip._passes import LINEAR_GRAY_MODES, filter_channels, filters_on, pointwise

MODES = ("rgb", "gray_thesis", "gray_lab", "gray_replicated")
#: How the FLIP loss treats values outside [0, 1]; "clamp" is the metric.
OUT_OF_RANGE = ("clamp", "inward", "extrapolate")

# The colour maps after filtering as 1x1 convolution weights; the first reads the 8 filter channels of "rgb" and
# "gray_replicated", (Y, Cx, Cz1, Cz2) and four feature channels.
_STACK_TO_RGB = np.pad(_color.YCXCZ_TO_RGB[:, [0, 1, 2, 2]], ((0, 0), (0, 4)))[:, :, None, None]
_RGB_TO_XYZN = _color.RGB_TO_XYZN[:, :, None, None]
_F_TO_LAB = _color.F_TO_LAB[:, :, None, None]
# Their transposes, which take the gradients back.
_STACK_TO_RGB_T = _STACK_TO_RGB.transpose(1, 0, 2, 3)
_RGB_TO_XYZN_T = _RGB_TO_XYZN.transpose(1, 0, 2, 3)
_F_TO_LAB_T = _F_TO_LAB.transpose(1, 0, 2, 3)


class _ClampUnit(torch.autograd.Function):
    """:func:`clamp_unit`: the clamp, and its gradient masked by one comparison of input and output."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        clamped = x.clamp(0.0, 1.0)
        ctx.save_for_backward(x, clamped)
        return clamped

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, clamped = ctx.saved_tensors
        return grad * _mask(torch.eq, x, clamped)


def clamp_unit(x: torch.Tensor) -> torch.Tensor:
    """x clamped to [0, 1]; gradient 1 on the closed interval, including its ends, 0 outside.

    ``torch.clamp`` passes no gradient at the bounds themselves, so a value exactly at 0 or 1
    (an 8-bit image's black and white) would get none; the one-sided derivative from inside the
    range is the useful one.
    """
    return _ClampUnit.apply(x)


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


#: out_of_range option → limit of the input images. The filtered linear colours are clamped as by
#: :func:`clamp_unit` except with "extrapolate" (:func:`_perceive_filtered`, :func:`_perception_gradient`).
_INPUT_LIMITS = {"clamp": clamp_unit, "inward": _ClampInward.apply, "extrapolate": _identity}


def _remap_color(c: torch.Tensor) -> torch.Tensor:
    """FLIP's colour-error remap of c = hyab^qc: compressed piecewise-linearly into [0, 1]."""
    pccmax = _color.PC * _color.CMAX
    above_knee = _color.PT + (c - pccmax) * _KNEE_SLOPES[1]
    return torch.where(c < pccmax, c * _KNEE_SLOPES[0], above_knee)


#: Slopes of the remap below and above its knee pc * cmax.
_KNEE_SLOPES = (
    _color.PT / (_color.PC * _color.CMAX),
    (1.0 - _color.PT) / (_color.CMAX - _color.PC * _color.CMAX),
)


def _mask(compare, a: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """``compare(a, b)`` as 1.0 / 0.0 in a's dtype: multiplying by it is far cheaper on the CPU than ``torch.where``
    on a bool tensor, and ``compare`` writes it in one pass."""
    return compare(a, b, out=torch.empty_like(a))


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator for denominator >= 0, and 0 where the denominator is 0 (a square root's or a power's
    derivative at 0, where FLIP's forward formulas pass no gradient)."""
    # The reciprocal first: a large numerator over the clamped 0 would overflow to inf, and inf * 0 is NaN.
    return numerator * (denominator.sign() / denominator.clamp_min(torch.finfo(denominator.dtype).tiny))


class _Perception(NamedTuple):
    """What FLIP compares, per image, with the intermediates that its gradient reads.

    ``lightness`` is L* (rgb, gray_replicated and gray_lab) or the filtered Y (gray_thesis), (N, H, W);
    ``chroma`` the Hunt-adjusted (a, b), (N, 2, H, W), None for the linear gray modes; ``features`` the
    magnitudes of the edges and points, (N, 2, H, W), or of the edges alone for the linear gray modes
    (N, 1, H, W).
    """

    lightness: torch.Tensor
    chroma: torch.Tensor | None
    features: torch.Tensor
    #: The (N, C, H, W) filter channels.
    filtered: torch.Tensor
    #: rgb modes: the linear colour before and after its limit, (N, 3, H, W).
    unlimited: torch.Tensor | None = None
    rgb: torch.Tensor | None = None
    #: The input and output of the L*a*b* companding (rgb modes and gray_lab).
    xyzn: torch.Tensor | None = None
    companded: torch.Tensor | None = None
    #: rgb modes: L*a*b* before the Hunt adjustment, (N, 3, H, W).
    lab: torch.Tensor | None = None


def _feature_channels(mode: str) -> slice:
    """The filter channels of the features of ``mode``: d/dy of the edges (and of the points), then d/dx."""
    return slice(1, 3) if mode in LINEAR_GRAY_MODES else slice(4, 8)


def _perceive_filtered(filtered: torch.Tensor, mode: str, out_of_range: str) -> _Perception:
    """The quantities FLIP compares, from :func:`_filter`'s channels; without autograd (see :class:`_Compare`).

    The forward values of the clamps and of the square roots and powers at 0 are the plain ones: only their
    gradients, which :meth:`_Compare.backward` writes out, differ from ``torch.clamp``'s and ``torch.sqrt``'s.
    """
    squares = filtered[:, _feature_channels(mode)].square()
    half = squares.shape[1] // 2
    # Each magnitude in one pass over the (y, x) pairs: sqrt(dx^2 + dy^2).
    features = torch.sqrt(squares[:, half:] + squares[:, :half])
    if mode in LINEAR_GRAY_MODES:
        if mode == "gray_thesis":
            return _Perception(filtered[:, 0], None, features, filtered)
        # gray_lab: back to the linear value y = (Y + 16) / 116, in [0, 1] since the filter is
        # positive and normalised; a grey has a* = b* = 0, so L* = 116 f(y) - 16 is all of its L*a*b*.
        y = (filtered[:, 0] + 16.0) * (1.0 / 116.0)
        companded = _color.lab_f(y)
        return _Perception(116.0 * companded - 16.0, None, features, filtered, None, None, y, companded)
    # Channels (Y, Cx, Cz1, Cz2): the two Cz partial filters are summed by the matrix, the feature channels get 0.
    unlimited = pointwise(_STACK_TO_RGB, filtered, _color.YCXCZ_TO_RGB_OFFSET)
    rgb = unlimited if out_of_range == "extrapolate" else unlimited.clamp(0.0, 1.0)
    xyzn = pointwise(_RGB_TO_XYZN, rgb)
    companded = _color.lab_f(xyzn)
    lab = pointwise(_F_TO_LAB, companded, _color.LAB_OFFSET)
    chroma = lab[:, 1:] * (0.01 * lab[:, :1])
    return _Perception(lab[:, 0], chroma, features, filtered, unlimited, rgb, xyzn, companded, lab)


class _Differences(NamedTuple):
    """Per-pixel steps of FLIP's error from two perceptions, (N, H, W) each, ``chroma`` and ``features`` as in
    :class:`_Perception`."""

    lightness: torch.Tensor
    chroma: torch.Tensor | None
    chroma_distance: torch.Tensor | None
    features: torch.Tensor
    hyab: torch.Tensor
    compressed: torch.Tensor
    color: torch.Tensor
    exponent: torch.Tensor
    flip: torch.Tensor


def _compare(ref: _Perception, test: _Perception) -> _Differences:
    """FLIP's error map (N, H, W) of two perceptions and the steps to it (official names: reference, test)."""
    lightness = ref.lightness - test.lightness
    features = ref.features - test.features
    hyab = torch.abs(lightness)
    magnitude = torch.abs(features)
    feature = magnitude[:, 0]
    chroma = distance = None
    if ref.chroma is not None:
        chroma = ref.chroma - test.chroma
        distance = torch.sqrt(chroma[:, 0] * chroma[:, 0] + chroma[:, 1] * chroma[:, 1])
        hyab = hyab + distance
        feature = torch.maximum(feature, magnitude[:, 1])
    compressed = hyab**_color.QC
    color = _remap_color(compressed)
    # dEf = (feature-magnitude difference / sqrt 2) ** qf, qf = 0.5, in [0, 1].
    exponent = 1.0 - (feature * (1.0 / math.sqrt(2.0))) ** 0.5
    positive = color > 0
    # pow(0, e) is 0 for e > 0 and 1 for e = 0 (feature error exactly 1); the backward pass routes no gradient
    # through the log of 0.
    flip = torch.where(positive, torch.where(positive, color, 1.0) ** exponent, (exponent == 0).to(color.dtype))
    return _Differences(lightness, chroma, distance, features, hyab, compressed, color, exponent, flip)


def _difference_gradients(d: _Differences, grad: torch.Tensor, sign: float) -> tuple[torch.Tensor, ...]:
    """``sign`` times the gradients of the map with respect to the differences reference - test of (lightness, chroma,
    features) (chroma None for the linear gray modes), for the map's gradient ``grad`` (N, H, W): the reference's
    for sign 1, the test image's for sign -1."""
    tiny = torch.finfo(d.color.dtype).tiny
    # d flip / d color = e color^(e - 1) = e flip / color and d flip / d e = flip log(color), both 0 where the
    # colour error is 0 (flip is then the constant (e == 0), so e flip is 0 there too).
    grad_color = grad * d.exponent * d.flip / d.color.clamp_min(tiny)
    grad_exponent = grad * d.flip * torch.log(d.color.clamp_min(tiny)) * d.color.sign()
    # exponent = 1 - q, q = (feature / sqrt 2)^0.5: d q / d feature = 0.5 / (q sqrt 2), 0 at q = 0.
    grad_feature = _ratio(grad_exponent * (-0.5 * sign / math.sqrt(2.0)), 1.0 - d.exponent).unsqueeze(1)
    knee = _mask(torch.lt, d.compressed, _color.PC * _color.CMAX)
    slope = _KNEE_SLOPES[1] + knee * (_KNEE_SLOPES[0] - _KNEE_SLOPES[1])
    # compressed = hyab^qc: d / d hyab = qc compressed / hyab, 0 at hyab = 0 (where compressed is 0 too).
    grad_hyab = grad_color * slope * (_color.QC * sign) * d.compressed / d.hyab.clamp_min(tiny)
    grad_lightness = grad_hyab * d.lightness.sign()
    if d.chroma is None:
        return grad_lightness, None, grad_feature * d.features.sign()
    grad_chroma = _ratio(grad_hyab.unsqueeze(1) * d.chroma, d.chroma_distance.unsqueeze(1))
    # torch.maximum's rule: the larger of the edge and point differences takes the gradient, ties share it.
    magnitude = d.features.abs()
    edge_share = 0.5 + 0.5 * (magnitude[:, :1] - magnitude[:, 1:]).sign()
    shares = torch.cat([edge_share, 1.0 - edge_share], dim=1)
    return grad_lightness, grad_chroma, grad_feature * shares * d.features.sign()


def _perception_gradient(
    p: _Perception, mode: str, out_of_range: str, grads: tuple[torch.Tensor | None, ...]
) -> torch.Tensor:
    """Gradient with respect to the filter channels of ``p`` from the gradients of its compared quantities."""
    grad_lightness, grad_chroma, grad_features = grads
    f = p.filtered
    if mode in LINEAR_GRAY_MODES:
        grad = torch.zeros_like(f)
        if mode == "gray_thesis":
            grad[:, 0] = grad_lightness
        else:
            grad[:, 0] = grad_lightness * _lab_f_derivative(p.xyzn, p.companded)
    else:
        lightness = p.lab[:, :1]
        grad_lab = torch.empty_like(p.lab)
        grad_lab[:, 1:] = grad_chroma * (0.01 * lightness)
        grad_lab[:, 0] = grad_lightness + 0.01 * (grad_chroma * p.lab[:, 1:]).sum(dim=1)
        grad_xyzn = pointwise(_F_TO_LAB_T, grad_lab) * _lab_f_derivative(p.xyzn, p.companded)
        grad_rgb = pointwise(_RGB_TO_XYZN_T, grad_xyzn)
        if out_of_range != "extrapolate":
            # clamp_unit's gradient: 1 on the closed interval [0, 1], 0 outside.
            grad_rgb = grad_rgb * _mask(torch.eq, p.unlimited, p.rgb)
        # Gives the feature channels 0, which the line after the branch overwrites.
        grad = pointwise(_STACK_TO_RGB_T, grad_rgb)
    # magnitude = sqrt(dx^2 + dy^2): d / d dx = dx / magnitude, 0 where the magnitude is 0.
    scaled = _ratio(grad_features, p.features)
    first, count = _feature_channels(mode).start, scaled.shape[1]
    for start in (first, first + count):  # the d/dy channels, then the d/dx ones
        torch.mul(scaled, f[:, start : start + count], out=grad[:, start : start + count])
    return grad


def _lab_f_derivative(t: torch.Tensor, companded: torch.Tensor) -> torch.Tensor:
    """Derivative of :func:`lossbench.flip._color.lab_f` at ``t``, given its value ``companded``."""
    cube_root = _mask(torch.gt, t, _color._DELTA_CUBE)
    # Above delta^3, f = t^(1/3) and f' = f / (3 t).
    power = companded / (3.0 * t.clamp_min(_color._DELTA_CUBE))
    return _color._LINEAR_SLOPE + cube_root * (power - _color._LINEAR_SLOPE)


class _Compare(torch.autograd.Function):
    """FLIP's error map (N, H, W) from the filter channels of the reference and the test images.

    Its backward pass is written out: autograd's, through some 40 elementwise steps with their masks and
    ``torch.where``s, cost more than the rest of FLIP's forward and backward together on the CPU.
    """

    @staticmethod
    def forward(ctx, ref_filtered: torch.Tensor, test_filtered: torch.Tensor, mode: str, out_of_range: str):
        ref = _perceive_filtered(ref_filtered, mode, out_of_range)
        test = _perceive_filtered(test_filtered, mode, out_of_range)
        differences = _compare(ref, test)
        # Intermediates, neither inputs nor outputs, are kept on ctx (only the sides that need a gradient), and kept
        # after a backward pass: gradcheck runs several on one graph. The output itself is saved for backward, not kept
        # on ctx: it holds this node as its grad_fn, and that reference cycle would keep every intermediate alive
        # until Python's cycle collector runs, so each call would take fresh memory from the OS (page faults, about a
        # third of FLIP's CPU time).
        ctx.save_for_backward(differences.flip)
        ctx.mode, ctx.out_of_range, ctx.differences = mode, out_of_range, differences._replace(flip=None)
        ctx.ref = ref if ctx.needs_input_grad[0] else None
        ctx.test = test if ctx.needs_input_grad[1] else None
        return differences.flip

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        ref_grad = test_grad = None
        (flip,) = ctx.saved_tensors
        differences = ctx.differences._replace(flip=flip)
        # The differences are reference - test.
        if ctx.ref is not None:
            grads = _difference_gradients(differences, grad, 1.0)
            ref_grad = _perception_gradient(ctx.ref, ctx.mode, ctx.out_of_range, grads)
        if ctx.test is not None:
            grads = _difference_gradients(differences, grad, -1.0)
            test_grad = _perception_gradient(ctx.test, ctx.mode, ctx.out_of_range, grads)
        return ref_grad, test_grad, None, None


def _filtered(images: torch.Tensor, ppd: float, mode: str, out_of_range: str, dtype: torch.dtype) -> torch.Tensor:
    """The filter channels of (N, C, H, W) images, computed in ``dtype``; see :func:`_filter`.

    ``out_of_range`` (see :class:`lossbench.losses.flip.FLIPLoss`) chooses FLIP's clamps to [0, 1] of the
    input and of the filtered linear colour: the metric's ("clamp"), the input's with an inward
    gradient ("inward"), or none, FLIP's formulas continued outside [0, 1] ("extrapolate"; every
    step stays finite there).
    """
    linear = _INPUT_LIMITS[out_of_range](images.to(dtype))
    if mode not in LINEAR_GRAY_MODES:
        linear = _color.srgb_to_linear(linear)
    return filter_channels(linear, filters_on(mode, ppd, str(images.device), dtype))


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
    # TF32 convolutions would shift FLIP by up to 2 % (CPU imitation, tests/test_flip_loss.py), so its products run in
    # full float32.
    return ieee_float32_autograd(function, target, output)


def _error_map(
    reference: torch.Tensor, test: torch.Tensor, ppd: float, mode: str, out_of_range: str, dtype: torch.dtype
) -> torch.Tensor:
    with torch.autocast(device_type=reference.device.type, enabled=False):
        # A reference that needs no gradient (the usual training target) builds no graph,
        # which halves the backward pass.
        with torch.set_grad_enabled(torch.is_grad_enabled() and reference.requires_grad):
            ref = _filtered(reference, ppd, mode, out_of_range, dtype)
        tst = _filtered(test, ppd, mode, out_of_range, dtype)
        if torch.is_grad_enabled() and (ref.requires_grad or tst.requires_grad):
            flip = _Compare.apply(ref, tst, mode, out_of_range)
        else:
            perceived = (_perceive_filtered(filtered, mode, out_of_range) for filtered in (ref, tst))
            flip = _compare(*perceived).flip
    return flip.unsqueeze(1)
