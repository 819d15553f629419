"""The anatomy of a synthetic volume: its random geometry (size, rotation, shift, elastic warp, shading, phase)
evolving through the slices, the knee phantom or the brain image it shows, and the coil sensitivities."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lossbench.data.fastmri_format import DEFAULT_MATRIX
from lossbench.data.fastmri_synthetic.knee import _band_noise, _Knee, _knee_image, _sample_knee, _sample_texture

EDGE_PIXELS = 2.0  # boundary blur of the knee phantom, in reconstruction pixels (half of a tanh step)


@functools.lru_cache(maxsize=None)
def brain_image() -> np.ndarray:
    """matplotlib's bundled 256 × 256 sagittal head slice, read-only float64 in [0, 1]."""
    # Deferred: matplotlib is imported only where its sample file is read.
    from matplotlib.cbook import get_sample_data

    with get_sample_data("s1045.ima.gz") as file:
        image = np.frombuffer(file.read(), ">u2").reshape(256, 256)
    # A slight blur removes the scan's own noise, which no reconstruction could recover.
    image = ndimage.gaussian_filter(image.astype(np.float64), 1.5)
    image /= image.max()
    image.setflags(write=False)
    return image


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], coarse: int = 6) -> np.ndarray:
    """Random field of unit variance per pixel, varying over about 1/``coarse`` of each image side.

    Args:
        shape: (..., H, W); leading axes get independent fields.
    """
    grid = rng.standard_normal(shape[:-2] + (coarse, coarse))
    # Separable Gaussian bumps on a coarse lattice: two small matrix products instead of a slow
    # n-D spline zoom. Rows have unit norm, so each pixel is a unit-variance mix of the lattice values.
    bases = []
    for n in shape[-2:]:
        centres = (np.arange(coarse) + 0.5) * n / coarse
        basis = np.exp(-0.5 * ((np.arange(n)[:, None] - centres) / (n / coarse)) ** 2)
        bases.append(basis / np.linalg.norm(basis, axis=1, keepdims=True))
    return bases[0] @ grid @ bases[1].T


@dataclass(frozen=True)
class _Anatomy:
    """Per-volume random geometry; slices interpolate it along t ∈ [-1, 1] through the volume."""

    scale: tuple[float, float]  # object half-size (rows, cols) in units of half the reconstruction crop
    theta: float  # in-plane rotation (radians) at the middle slice
    theta_drift: float  # change of rotation from the middle to the last slice
    shift: np.ndarray  # (2,) centre offset at the middle slice, crop half-widths
    shift_drift: np.ndarray  # (2,)
    extent: float  # the object shrinks to sqrt(1 - extent²) of its size at the end slices
    warp: float  # elastic displacement amplitude, crop half-widths
    warp_phase: float
    warp_rate: float  # radians the elastic mix turns from the middle to the last slice
    warp_fields: np.ndarray  # (2, 2, H, W): two smooth (row, col) displacement fields mixed per slice
    bias: np.ndarray  # (H, W) smooth positive intensity shading
    phase: np.ndarray  # (6,) coefficients of a quadratic image phase
    phase_drift: float
    amplitude: float  # overall intensity, of the order of real fastMRI knee data
    noise: float  # complex noise standard deviation relative to ``amplitude``
    knee: _Knee | None  # the knee phantom; None for the brain image
    grain: np.ndarray  # (2, T, T) fine texture lattices modulating the brain image


def _sample_anatomy(rng: np.random.Generator, shape: tuple[int, int], anatomy: str) -> _Anatomy:
    aspect = rng.uniform(0.9, 1.1)
    scale = rng.uniform(0.85, 1.0)
    return _Anatomy(
        scale=(scale * np.sqrt(aspect), scale / np.sqrt(aspect)),
        theta=np.deg2rad(rng.uniform(-15.0, 15.0)),
        theta_drift=np.deg2rad(rng.normal(0.0, 3.0)),
        shift=rng.uniform(-0.05, 0.05, size=2),
        shift_drift=rng.normal(0.0, 0.02, size=2),
        extent=rng.uniform(0.3, 0.7) if anatomy == "brain" else rng.uniform(0.2, 0.4),
        warp=rng.uniform(0.02, 0.05),
        warp_phase=rng.uniform(0.0, 2 * np.pi),
        warp_rate=rng.uniform(0.5, 1.5),
        warp_fields=_smooth_field(rng, (2, 2) + shape),
        bias=np.exp(0.15 * _smooth_field(rng, shape)),
        phase=np.concatenate([[rng.uniform(-np.pi, np.pi)], rng.normal(0.0, 0.4, size=5)]),
        phase_drift=rng.normal(0.0, 0.3),
        amplitude=1e-4 * rng.uniform(0.5, 2.0),
        noise=rng.uniform(0.005, 0.015),
        knee=_sample_knee(rng) if anatomy == "knee" else None,
        grain=_band_noise(rng, 2, (30.0, 30.0), 0.5),
    )


def _normalised_grid(shape: tuple[int, int], matrix: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates (H, W), 0 at the k-space centre pixel, ±1 at the edges of the crop."""
    rows = (np.arange(shape[0]) - shape[0] // 2) / (matrix / 2)
    cols = (np.arange(shape[1]) - shape[1] // 2) / (matrix / 2)
    return np.meshgrid(rows, cols, indexing="ij")


def _slice_image(anatomy: _Anatomy, t: float, shape: tuple[int, int], matrix: int) -> np.ndarray:
    """Noise-free complex image (H, W) of the slice at position ``t`` ∈ [-1, 1] through the volume."""
    u_row, u_col = _normalised_grid(shape, matrix)
    size = np.sqrt(1.0 - (anatomy.extent * t) ** 2)
    theta = anatomy.theta + anatomy.theta_drift * t
    d_row = u_row - (anatomy.shift[0] + anatomy.shift_drift[0] * t)
    d_col = u_col - (anatomy.shift[1] + anatomy.shift_drift[1] * t)
    # Pull-back: each output pixel looks up where it came from in the undeformed anatomy.
    cos, sin = np.cos(theta), np.sin(theta)
    mix = anatomy.warp_phase + anatomy.warp_rate * t
    warp = anatomy.warp * (np.cos(mix) * anatomy.warp_fields[0] + np.sin(mix) * anatomy.warp_fields[1])
    v_row = (cos * d_row - sin * d_col) / (anatomy.scale[0] * size) + warp[0]
    v_col = (sin * d_row + cos * d_col) / (anatomy.scale[1] * size) + warp[1]
    if anatomy.knee is not None:
        magnitude = _knee_image(anatomy.knee, v_row, v_col, t, edge=EDGE_PIXELS / matrix)
    else:
        base = brain_image()
        half = (base.shape[0] - 1) / 2
        magnitude = ndimage.map_coordinates(
            base, np.stack([(v_row + 1) * half, (v_col + 1) * half]), order=1, mode="constant", cval=0.0
        )
        magnitude *= 1.0 + 0.04 * _sample_texture(anatomy.grain, 0.8 * t, v_row, v_col)
    c = anatomy.phase
    phase = (
        c[0]
        + anatomy.phase_drift * t
        + c[1] * u_row
        + c[2] * u_col
        + c[3] * u_row**2
        + c[4] * u_col**2
        + c[5] * u_row * u_col
    )
    return anatomy.amplitude * anatomy.bias * np.maximum(magnitude, 0.0) * np.exp(1j * phase)


def coil_sensitivities(
    rng: np.random.Generator, n_coils: int, shape: tuple[int, int], matrix: int = DEFAULT_MATRIX
) -> np.ndarray:
    """Smooth, distinct complex coil maps (C, H, W) whose root-sum-of-squares is 1 everywhere.

    Coils sit on a ring just outside the object with Gaussian magnitude profiles and a smooth phase.
    """
    u_row, u_col = _normalised_grid(shape, matrix)
    angles = 2 * np.pi * np.arange(n_coils) / n_coils + rng.uniform(0.0, 2 * np.pi)
    width = rng.uniform(0.9, 1.3, size=n_coils)
    offset = rng.uniform(-np.pi, np.pi, size=n_coils)
    gradient = rng.normal(0.0, 0.3, size=(n_coils, 2))
    maps = np.empty((n_coils,) + shape, dtype=np.complex128)
    for coil in range(n_coils):
        distance2 = (u_row - 1.4 * np.sin(angles[coil])) ** 2 + (u_col - 1.4 * np.cos(angles[coil])) ** 2
        phase = offset[coil] + gradient[coil, 0] * u_row + gradient[coil, 1] * u_col
        maps[coil] = np.exp(-distance2 / (2 * width[coil] ** 2) + 1j * phase)
    return maps / np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
