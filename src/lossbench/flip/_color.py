"""Colour transforms and colour-difference constants of LDR-FLIP (D65, as in flip-evaluator 1.7).

Tensors here are float32, or float64 for float64 inputs (for gradient checks). Matrices are kept
in float64 NumPy and composed before being cast, so that chained linear steps cost one product
(a 1x1 convolution in :mod:`lossbench.flip._core`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Linear sRGB -> CIE XYZ (D65), the exact rational entries of the official code.
RGB_TO_XYZ = np.array(
    [
        [10135552.0 / 24577794.0, 8788810.0 / 24577794.0, 4435075.0 / 24577794.0],
        [2613072.0 / 12288897.0, 8788810.0 / 12288897.0, 887015.0 / 12288897.0],
        [1425312.0 / 73733382.0, 8788810.0 / 73733382.0, 70074185.0 / 73733382.0],
    ]
)
# CIE XYZ -> linear sRGB as tabulated by the official code (not the exact inverse of the above).
XYZ_TO_RGB = np.array(
    [
        [3.241003275, -1.537398934, -0.498615861],
        [-0.969224334, 1.875930071, 0.041554224],
        [0.055639423, -0.204011202, 1.057148933],
    ]
)
WHITE = np.array([0.950428545, 1.0, 1.088900371])
INV_WHITE = np.array([1.052156925, 1.0, 0.918357670])

# Normalised XYZ (x/Xn, y/Yn, z/Zn) -> YCxCz, without the -16 offset on Y.
_XYZN_TO_YCXCZ = np.array([[0.0, 116.0, 0.0], [500.0, -500.0, 0.0], [0.0, 200.0, -200.0]])

# Linear sRGB -> YCxCz (add YCXCZ_OFFSET afterwards).
RGB_TO_YCXCZ = _XYZN_TO_YCXCZ @ (INV_WHITE[:, None] * RGB_TO_XYZ)
YCXCZ_OFFSET = np.array([-16.0, 0.0, 0.0])
# YCxCz -> linear sRGB: y = (Y + 16) / 116, x = y + Cx / 500, z = y - Cz / 200, times the white.
_YCXCZ_TO_XYZN = np.array([[1 / 116, 1 / 500, 0.0], [1 / 116, 0.0, 0.0], [1 / 116, 0.0, -1 / 200]])
YCXCZ_TO_RGB = XYZ_TO_RGB @ (WHITE[:, None] * _YCXCZ_TO_XYZN)
YCXCZ_TO_RGB_OFFSET = YCXCZ_TO_RGB @ np.array([16.0, 0.0, 0.0])
# Linear sRGB -> white-normalised XYZ, the input of the L*a*b* nonlinearity.
RGB_TO_XYZN = INV_WHITE[:, None] * RGB_TO_XYZ
# Companded (f(x), f(y), f(z)) -> L*a*b* (add LAB_OFFSET afterwards).
F_TO_LAB = _XYZN_TO_YCXCZ
LAB_OFFSET = YCXCZ_OFFSET

_DELTA = 6.0 / 29.0
_DELTA_CUBE = _DELTA**3
_LINEAR_SLOPE = 1.0 / (3.0 * _DELTA * _DELTA)
_LINEAR_TERM = 4.0 / 29.0

# Colour-difference remap constants of the paper: exponent qc, and the knee (pc, pt).
QC = 0.7
PC = 0.4
PT = 0.95


_SRGB_KNEE = 0.04045


class _SRGBToLinear(torch.autograd.Function):
    """:func:`srgb_to_linear` with its derivative written out from the saved power: autograd's goes through a
    second power and the selects of ``torch.where`` and the clamp, about ten passes over the images."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        base = (torch.clamp(x, min=_SRGB_KNEE) + 0.055) / 1.055
        power = base**2.4
        ctx.save_for_backward(x, base, power)
        return torch.where(x <= _SRGB_KNEE, x / 12.92, power)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, base, power = ctx.saved_tensors
        # d/dx base^2.4 = 2.4 base^1.4 / 1.055 = (2.4 / 1.055) power / base; base >= 0.09 above the knee.
        above = (2.4 / 1.055) * power / base
        linear = torch.le(x, _SRGB_KNEE, out=torch.empty_like(x))
        return grad * (above + linear * (1.0 / 12.92 - above))


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB transfer function inverse, continued linearly below 0 and by its power above 1.

    The power only sees x > 0.04045 (its base then exceeds 0.09), so that values below -0.055,
    which the FLIP loss's extrapolation can pass, give neither a NaN nor a NaN gradient.
    """
    return _SRGBToLinear.apply(x)


#: (id of a constant array, dtype, device) → (the array, kept so that its id is never reused; the tensor).
_DEVICE_CONSTANTS: dict[tuple[int, torch.dtype, torch.device], tuple[np.ndarray, torch.Tensor]] = {}


def device_constant(array: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor of ``dtype`` on ``device``, copied from the host once and cached.

    For the module's constants and the colour maps of :mod:`lossbench.flip._core`: a copy per
    call would be a pageable host-to-device transfer per training step. Made outside inference
    mode, so that a first call under ``torch.inference_mode`` caches a tensor autograd may save later.
    """
    key = (id(array), dtype, device)
    if key not in _DEVICE_CONSTANTS:
        with torch.inference_mode(False):
            _DEVICE_CONSTANTS[key] = (array, torch.as_tensor(array, dtype=dtype, device=device))
    return _DEVICE_CONSTANTS[key][1]


def lab_f(t: torch.Tensor) -> torch.Tensor:
    """CIE L*a*b* companding; the cube root only sees t > delta^3, keeping its gradient finite."""
    cube_root = torch.clamp(t, min=_DELTA_CUBE) ** (1.0 / 3.0)
    return torch.where(t > _DELTA_CUBE, cube_root, t * _LINEAR_SLOPE + _LINEAR_TERM)


def _lab_hunt_numpy(rgb: np.ndarray) -> np.ndarray:
    xyzn = RGB_TO_XYZN @ rgb
    f = np.where(xyzn > _DELTA_CUBE, np.cbrt(xyzn), xyzn * _LINEAR_SLOPE + _LINEAR_TERM)
    lightness = 116.0 * f[1] - 16.0
    a, b = 500.0 * (f[0] - f[1]), 200.0 * (f[1] - f[2])
    return np.array([lightness, 0.01 * lightness * a, 0.01 * lightness * b])


def max_color_distance() -> float:
    """cmax: HyAB^qc between pure green and pure blue, the largest distance within sRGB."""
    green = _lab_hunt_numpy(np.array([0.0, 1.0, 0.0]))
    blue = _lab_hunt_numpy(np.array([0.0, 0.0, 1.0]))
    hyab = abs(green[0] - blue[0]) + math.hypot(green[1] - blue[1], green[2] - blue[2])
    return hyab**QC


CMAX = max_color_distance()
