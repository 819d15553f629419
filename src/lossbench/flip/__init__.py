"""Differentiable LDR-FLIP (Andersson et al. 2020) in PyTorch, matching flip-evaluator 1.7.

Pipeline (mode ``"rgb"``): sRGB -> linear RGB -> XYZ -> YCxCz; contrast-sensitivity filtering
of each YCxCz channel with the paper's Gaussian (sum) filters, radius set by the pixels per
degree; back to linear RGB, clamp to [0, 1]; Hunt-adjusted L*a*b*; HyAB distance, raised to
qc = 0.7 and remapped into [0, 1] with cmax, pc = 0.4, pt = 0.95 (the colour error dEc). In
parallel, edges (1st derivative of Gaussian) and points (2nd derivative) are detected on the
unfiltered luminance (Y + 16) / 116 with sigma = 0.5 * 0.082 * ppd and radius ceil(3 sigma);
dEf = (max(|edge_ref - edge_test|, |point_ref - point_test|) / sqrt 2) ** 0.5. The error is
dEc ** (1 - dEf). Borders are clamped to the edge (replicated), as in the official code.

Grayscale modes (inputs with C = 1):

* ``"gray_replicated"``: the grey image repeated into three sRGB channels, i.e. exactly what
  the official evaluator computes for such an image.
* ``"gray_thesis"``: our reading of the thesis (Engman & Nilsson 2020, section 3.2), which
  adapted an older FLIP to linear grayscale MR images:

  - the input is linear luminance y in [0, 1]: no sRGB -> linear step;
  - "no colour transforms": the image is taken straight to the achromatic YCxCz channel
    Y = 116 y - 16 (D65 white, Yn = 1) and only that channel is CSF-filtered, with the
    achromatic filter; there is no chroma, hence no RGB clamp (a positive, normalised filter
    keeps Y in [-16, 100]), no L*a*b* and no Hunt adjustment, which the thesis drops as
    leaving luminance untouched;
  - the colour error is HyAB with zero chroma, |Y_ref - Y_test| on the filtered channel, then
    the same qc exponent and remap (same cmax, pc, pt) as the RGB metric, so the two scales
    stay comparable;
  - features are edges only (the thesis's FLIP predates point detection), on the normalised
    luminance (Y + 16) / 116 = y: dEf = (|edge_ref - edge_test| / sqrt 2) ** 0.5.
* ``"gray_lab"``: the third reading of section 3.2. As ``"gray_thesis"`` (linear input, only
  the achromatic channel filtered, no Hunt adjustment, edges but no points), except that the
  L*a*b* step is kept, read as leaving only the colour transforms out: the filtered value
  y = (Y + 16) / 116 becomes L* = 116 f(y) - 16 (a* = b* = 0 for a grey) and the colour error
  is |L*_ref - L*_test|. The cube root of f makes dark differences count more than in
  ``"gray_thesis"``, as in the RGB metric.

All computation happens in float32, or float64 for float64 inputs (for gradient checks), with
autocast disabled; gradients are finite everywhere, including identical, all-black and
all-white images (square roots and powers at 0 use formulations whose forward values equal the
plain ones).

Example:
    >>> import torch
    >>> from lossbench.flip import flip
    >>> x = torch.rand(2, 3, 32, 32)
    >>> flip(x, x).tolist()
    [0.0, 0.0]

Argument order: ``(output, target)``, as every loss and metric of lossbench. In the official
implementation's terms (flip-evaluator's ``reference`` and ``test``), ``target`` is the reference
and ``output`` the test image: ``flip(output, target)`` is FLIP(reference=target, test=output).
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from lossbench.core.checks import check_image_pair
from lossbench.core.specs import Setting
from lossbench.flip._core import MODES, OUT_OF_RANGE, error_map

__all__ = [
    "DEFAULT_PPD",
    "MAX_PPD",
    "MODES",
    "OUT_OF_RANGE",
    "VIEWING",
    "check_inputs",
    "flip",
    "flip_map",
    "flip_ppd",
    "gray_mode",
    "pixels_per_degree",
    "setting_ppd",
]

#: Pixels per degree for 0.7 m viewing distance, 0.7 m wide 3840-pixel monitor (the default).
DEFAULT_PPD = 67.02064514

#: Most pixels per degree of a configured viewing geometry: FLIP's filters widen with the ppd (radius 10 pixels at the
#: thesis's 67, 136 at 1000), and 1000 ppd is far beyond the eye's acuity (also the schema's bound of a ``ppd`` given).
MAX_PPD = 1000.0

#: The viewing geometry of :data:`DEFAULT_PPD` (thesis §3.1: 70 cm from its monitors), also ``evaluation.flip``'s
#: defaults in the configuration schema (a test keeps the two equal).
VIEWING = MappingProxyType({"distance_m": 0.7, "monitor_width_m": 0.7, "monitor_pixels": 3840})


def pixels_per_degree(distance_m: float = 0.7, monitor_width_m: float = 0.7, resolution_px: float = 3840) -> float:
    """Pixels per degree of visual angle for a viewer ``distance_m`` from a monitor.

    Computed in float32 like the official ``calculatePPD`` (small-angle approximation), so the
    value equals the one the evaluator derives from the same viewing conditions.

    Args:
        distance_m: Viewing distance in metres.
        monitor_width_m: Physical monitor width in metres.
        resolution_px: Horizontal monitor resolution in pixels.

    Returns:
        Pixels per degree; 67.02064514... for the defaults.
    """
    arguments = {"distance_m": distance_m, "monitor_width_m": monitor_width_m, "resolution_px": resolution_px}
    for label, value in arguments.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"pixels_per_degree: {label} must be a positive finite number, got {value!r}")
    f32 = np.float32
    return float(f32(distance_m) * (f32(resolution_px) / f32(monitor_width_m)) * (f32(3.14159265358979) / f32(180.0)))


def check_inputs(output: torch.Tensor, target: torch.Tensor, ppd: float, mode: str, name: str) -> None:
    check_image_pair(output, target, name)
    if mode not in MODES:
        raise ValueError(f"{name}: unknown mode {mode!r}, expected one of {', '.join(map(repr, MODES))}")
    channels = target.shape[1]
    if mode == "rgb" and channels != 3:
        raise ValueError(
            f"{name}: mode 'rgb' needs 3-channel sRGB images, got {channels} channel(s); "
            "use 'gray_thesis', 'gray_lab' or 'gray_replicated' for grayscale"
        )
    if mode != "rgb" and channels != 1:
        raise ValueError(f"{name}: mode {mode!r} needs 1-channel images, got {channels} channels; use 'rgb' for colour")
    if not (isinstance(ppd, (int, float, np.floating)) and math.isfinite(ppd) and ppd > 0):
        raise ValueError(f"{name}: ppd must be a positive finite number, got {ppd!r}")


def flip_map(output: torch.Tensor, target: torch.Tensor, ppd: float = DEFAULT_PPD, mode: str = "rgb") -> torch.Tensor:
    """Per-pixel LDR-FLIP error of ``output`` against ``target``: FLIP(reference=target, test=output).

    FLIP is not symmetric (the reference's edges and points weigh the feature error): ``target``
    is the official implementation's ``reference`` image, ``output`` its ``test`` image.

    Args:
        output: (N, C, H, W) test images (a network's restorations), values in [0, 1] (clamped),
            sRGB-encoded for ``"rgb"`` and ``"gray_replicated"``, linear for ``"gray_thesis"``
            and ``"gray_lab"``.
        target: (N, C, H, W) reference images, same conventions.
        ppd: Pixels per degree of visual angle (see :func:`pixels_per_degree`).
        mode: One of :data:`MODES`; ``"rgb"`` needs C = 3, the gray modes C = 1.

    Returns:
        (N, 1, H, W) error map in [0, 1], float32, or float64 if either input is float64 (for
        gradient checks); 0 where the images agree.

    Raises:
        ValueError: On malformed shapes, a channel count that does not fit ``mode``, an unknown
            mode or a non-positive ``ppd``.
    """
    check_inputs(output, target, ppd, mode, "FLIP")
    return error_map(output, target, float(ppd), mode)


def flip(output: torch.Tensor, target: torch.Tensor, ppd: float = DEFAULT_PPD, mode: str = "rgb") -> torch.Tensor:
    """Mean LDR-FLIP error per image of ``output`` against ``target``: (N,) in [0, 1].

    Arguments and dtype as :func:`flip_map`; FLIP(reference=target, test=output) in the official terms.
    """
    return flip_map(output, target, ppd, mode).mean(dim=(1, 2, 3))


def flip_ppd(evaluation: dict[str, Any]) -> float:
    """Pixels per degree of FLIP's viewing conditions ``evaluation.flip`` (the metric's and the loss's)."""
    viewing = evaluation.get("flip") or {}
    if viewing.get("ppd") is not None:
        return float(viewing["ppd"])
    arguments = {"distance_m": "distance_m", "monitor_width_m": "monitor_width_m", "monitor_pixels": "resolution_px"}
    return pixels_per_degree(**{argument: viewing[key] for key, argument in arguments.items() if key in viewing})


def setting_ppd(setting: Setting) -> float:
    """Pixels per degree of a setting's ``evaluation.flip``: the metric's and the loss's default."""
    return flip_ppd(setting.evaluation)


def gray_mode(setting: Setting) -> str:
    """The grayscale reading of thesis §3.2 that ``evaluation.flip_gray_mode`` configures (MRI tasks)."""
    return setting.evaluation.get("flip_gray_mode", "gray_thesis")
