"""FLIP's spatial filters.

The contrast-sensitivity (CSF) filters and the edge/point detectors are built exactly as in
NVIDIA's flip-evaluator 1.7 (``setSpatialFilters`` / ``setFeatureFilter``): same constants,
radii, sampling and normalisation. :mod:`lossbench.flip._passes` applies them as separable
depthwise convolutions on replicated borders, the official clamp-to-edge boundary handling.
"""

from __future__ import annotations

import math

import numpy as np

# Gaussian-sum CSF constants of the FLIP paper, per YCxCz channel (Y, Cx, Cz).
_A1 = (1.0, 1.0, 34.1)
_B1 = (0.0047, 0.0053, 0.04)
_A2 = (0.0, 0.0, 13.5)
_B2 = (1.0e-5, 1.0e-5, 0.025)

# Feature-detector width in degrees of visual angle (the paper's w).
_FEATURE_WIDTH = 0.082

_PI32 = np.float32(3.14159265358979)


def csf_radius(ppd: float) -> int:
    """Radius in pixels of the CSF filters, computed in float32 as the official code does."""
    max_b = np.float32(max(_B1 + _B2))
    pi_sq = np.float32(_PI32 * _PI32)
    return int(math.ceil(np.float32(3.0) * np.sqrt(max_b / (np.float32(2.0) * pi_sq)) * np.float32(ppd)))


def feature_radius(ppd: float) -> int:
    """Radius in pixels of the edge/point detectors: ceil(3 sigma), sigma = 0.5 * 0.082 * ppd."""
    sigma = np.float32(0.5) * np.float32(_FEATURE_WIDTH) * np.float32(ppd)
    return int(math.ceil(np.float32(3.0) * sigma))


def csf_kernels(ppd: float) -> dict[str, np.ndarray]:
    """1-D CSF kernels of radius :func:`csf_radius`.

    Returns:
        Dict with float64 arrays of length 2r+1: ``"y"`` and ``"cx"`` (each sums to 1) and
        ``"cz1"``, ``"cz2"``: the two separable factors of the blue-yellow sum of Gaussians,
        normalised so that the 2-D kernel ``cz1 cz1^T + cz2 cz2^T`` sums to 1.
    """
    radius = csf_radius(ppd)
    x2 = (np.arange(-radius, radius + 1, dtype=np.float64) / ppd) ** 2
    pi = math.pi

    def gaussian(a: float, b: float) -> np.ndarray:
        return a * math.sqrt(pi / b) * np.exp(-pi * pi * x2 / b)

    def gaussian_sqrt(a: float, b: float) -> np.ndarray:
        # Square root of the amplitude, so that the outer product of the 1-D factor with
        # itself reproduces one term of the 2-D Gaussian sum.
        return math.sqrt(a * math.sqrt(pi / b)) * np.exp(-pi * pi * x2 / b)

    g_y = gaussian(_A1[0], _B1[0])
    g_cx = gaussian(_A1[1], _B1[1])
    g_cz1 = gaussian_sqrt(_A1[2], _B1[2])
    g_cz2 = gaussian_sqrt(_A2[2], _B2[2])
    cz_norm = math.sqrt(g_cz1.sum() ** 2 + g_cz2.sum() ** 2)
    return {"y": g_y / g_y.sum(), "cx": g_cx / g_cx.sum(), "cz1": g_cz1 / cz_norm, "cz2": g_cz2 / cz_norm}


def feature_kernels(ppd: float) -> dict[str, np.ndarray]:
    """1-D Gaussian and its first and second derivatives for edge and point detection.

    Returns:
        Dict with float64 arrays of length 2r+1 (r from :func:`feature_radius`): ``"g"`` sums
        to 1; the positive and negative taps of ``"dg"`` and ``"ddg"`` each sum to +1 and -1.
    """
    radius = feature_radius(ppd)
    sigma = 0.5 * _FEATURE_WIDTH * ppd
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    dg = -x * g
    ddg = (x * x / (sigma * sigma) - 1.0) * g

    def split_normalise(k: np.ndarray) -> np.ndarray:
        return np.where(k > 0, k / k[k > 0].sum(), k / -k[k < 0].sum())

    return {"g": g / g.sum(), "dg": split_normalise(dg), "ddg": split_normalise(ddg)}


def pad_kernel(kernel: np.ndarray, radius: int) -> np.ndarray:
    """Zero-pad a centred odd-length 1-D kernel to radius ``radius``.

    With clamp-to-edge boundaries, zero taps read clamped samples with weight 0, so a padded
    kernel gives exactly the same result as the original one.
    """
    extra = radius - kernel.shape[0] // 2
    return np.pad(kernel, (extra, extra))
