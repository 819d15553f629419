"""Synthetic MRI volumes in the exact fastMRI HDF5 layout, for offline demos and tests.

``fastmri.data.SliceDataset`` reads these files unchanged:

* single-coil (knee-like): ``kspace`` (S, 2M, W) complex64, ``reconstruction_esc`` (S, M, M) float32 and,
  as in fastMRI's single-coil files, ``reconstruction_rss`` (here the same image: one coil's RSS is its magnitude);
* multi-coil (brain-like): ``kspace`` (S, C, 2M, W) complex64 and ``reconstruction_rss`` (S, M, M) float32;
* ``ismrmrd_header``: ISMRMRD XML bytes with the encoded and recon matrix sizes and the phase-encoding
  limits from which fastMRI derives the k-space padding;
* file attributes ``max`` and ``norm`` (of the reconstruction volume), ``acquisition`` and ``patient_id``.

M is the reconstruction matrix, 320 as in fastMRI (W = 368 knee, 320 brain); a smaller M (e.g. 160,
W = 184 / 160) keeps the same layout for a quick CPU demo. W may be smaller than M, as in fastMRI's
narrow brain scans: the stored M × M reconstruction then holds the W image columns between zero columns.

The ``realistic`` preset (:func:`realistic_settings`) draws per volume what real fastMRI data varies:
16–40 slices, knee k-space widths 368 or 372, brain coil counts from 2 to 24 and one brain volume in
four narrower than the 320 crop, every fastMRI acquisition, and magnitudes from 1e-5 to 1e-2. Its
files have real sizes (M = 320), for benchmarks and the paper-shape rehearsal; unit tests use tiny files.

Knee slices are a procedural coronal proton-density phantom: femur, tibia and fibula with fatty marrow
crossed by trabeculae inside a dark cortex, articular cartilage, menisci, a cruciate ligament, muscle
with fat septa and subcutaneous fat. Brain slices are matplotlib's bundled MRI head slice
(``s1045.ima.gz``) with a fine tissue grain. Each volume draws its own shapes, textures, rotation,
smooth elastic deformation, intensity shading and image phase, which evolve continuously through its
slices. Slices sit at the centre of a 2M × W field of view: the readout is oversampled 2× as in real
fastMRI data, so the M × M reconstruction is a centre crop. K-space uses fastMRI's convention, a
centred orthonormal 2-D FFT (ifftshift → fft2(norm="ortho") → fftshift over the last two axes), and the
stored reconstruction is the centre crop of |ifft2c(kspace)| (single-coil) or of the root-sum-of-squares
of the coil images (multi-coil), so target and k-space agree to float32 precision.

Everything is drawn from a caller-seeded ``numpy.random.Generator``: equal seeds give equal arrays and,
HDF5 writing being deterministic, byte-identical files.
"""

from __future__ import annotations

import argparse
import dataclasses
import filecmp
import functools
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage

DEFAULT_MATRIX = 320  # side of the stored reconstruction, as in fastMRI; the readout is 2× this
RECON_KEYS = {"singlecoil": "reconstruction_esc", "multicoil": "reconstruction_rss"}
#: Phase-encoding columns per reconstruction column: fastMRI knee k-space is 368 wide for 320 columns.
WIDTH_RATIO = {"singlecoil": 368 / 320, "multicoil": 1.0}
ACQUISITION = {"singlecoil": "CORPD_FBK", "multicoil": "AXT2"}
#: Every acquisition of fastMRI's knee and brain data sets.
ACQUISITIONS = {
    "singlecoil": ("CORPD_FBK", "CORPDFS_FBK"),
    "multicoil": ("AXT1", "AXT1PRE", "AXT1POST", "AXT2", "AXFLAIR"),
}
PRESETS = ("default", "realistic")
ANATOMY = {"singlecoil": "knee", "multicoil": "brain"}
ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
# Real knee scans leave a few phase-encoding columns at each edge unacquired (zero); brain scans do not.
UNACQUIRED_FRACTION = {"singlecoil": 0.045, "multicoil": 0.0}
TEXTURE_SIDE = 256  # texture lattices cover [-TEXTURE_EXTENT, TEXTURE_EXTENT]² of the normalised image plane
TEXTURE_EXTENT = 2.0
EDGE_PIXELS = 2.0  # boundary blur of the knee phantom, in reconstruction pixels (half of a tanh step)


def default_width(challenge: str, matrix: int = DEFAULT_MATRIX) -> int:
    """Phase-encoding columns of a ``matrix``-sided volume: 368 (knee) or 320 (brain) at fastMRI's 320."""
    return 2 * round(WIDTH_RATIO[challenge] * matrix / 2)


def fft2c(image: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D FFT over the last two axes, as ``fastmri.fft2c``."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=axes), norm="ortho"), axes=axes)


def ifft2c(kspace: np.ndarray) -> np.ndarray:
    """Centred orthonormal inverse 2-D FFT over the last two axes, as ``fastmri.ifft2c``."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=axes), norm="ortho"), axes=axes)


def center_crop(array: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Central ``rows`` × ``cols`` window of the last two axes, offsets rounded down as in fastMRI."""
    top = (array.shape[-2] - rows) // 2
    left = (array.shape[-1] - cols) // 2
    return array[..., top : top + rows, left : left + cols]


def acquired_columns(challenge: str, width: int) -> tuple[int, int]:
    """Phase-encoding columns ``[left, right)`` that hold data; the rest of k-space is zero.

    These are the ``padding_left`` / ``padding_right`` that ``SliceDataset`` derives from the header.
    """
    unacquired = round(UNACQUIRED_FRACTION[challenge] * width)
    return unacquired, width - unacquired


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


def _band_noise(rng: np.random.Generator, count: int, cycles: tuple[float, float], bandwidth: float) -> np.ndarray:
    """``count`` periodic band-pass noise lattices (count, TEXTURE_SIDE, TEXTURE_SIDE) of unit variance.

    Args:
        cycles: Centre frequency along (rows, cols), in cycles per unit of the normalised image plane;
            unequal values give streaks (fat septa in muscle), equal ones an isotropic labyrinth.
        bandwidth: Relative width of the pass band.
    """
    frequency = np.fft.fftfreq(TEXTURE_SIDE, d=2 * TEXTURE_EXTENT / TEXTURE_SIDE)
    rows, cols = np.meshgrid(frequency / cycles[0], frequency / cycles[1], indexing="ij")
    radius = np.hypot(rows, cols)
    gain = np.exp(-0.5 * ((radius - 1.0) / bandwidth) ** 2)
    fields = np.fft.ifft2(np.fft.fft2(rng.standard_normal((count, TEXTURE_SIDE, TEXTURE_SIDE))) * gain).real
    return fields / fields.std(axis=(-2, -1), keepdims=True)


def _sample_texture(fields: np.ndarray, mix: float, v_row: np.ndarray, v_col: np.ndarray) -> np.ndarray:
    """Texture at normalised positions (H, W): the unit-variance mix cos·A + sin·B of two lattices.

    Turning ``mix`` slowly through the slices of a volume evolves the texture continuously.
    """
    lattice = np.cos(mix) * fields[0] + np.sin(mix) * fields[1]
    scale = TEXTURE_SIDE / (2 * TEXTURE_EXTENT)
    coords = np.stack([(v_row + TEXTURE_EXTENT) * scale, (v_col + TEXTURE_EXTENT) * scale])
    return ndimage.map_coordinates(lattice, coords, order=1, mode="grid-wrap")


@dataclass(frozen=True)
class _Knee:
    """Per-volume shape and tissue parameters of the knee phantom (a coronal proton-density slice)."""

    joint: float  # row of the joint line, normalised units
    side: float  # +1 or -1: the fibula lies on this side
    leg: float  # half-width of the leg
    fat: float  # thickness of the subcutaneous fat
    condyle: float  # size factor of the femoral condyles and the tibial plateau
    spacing: float  # half-distance between the condyle centres
    spacing_drift: float
    contrast: np.ndarray  # (4,) factors of fat, muscle, cartilage and marrow intensity
    trabecular: np.ndarray  # (2, T, T) labyrinth lattices: trabecular bone
    septa: np.ndarray  # (2, T, T) vertical streak lattices: fat septa between muscle fibres
    grain: np.ndarray  # (2, T, T) fine isotropic lattices: tissue grain


def _sample_knee(rng: np.random.Generator) -> _Knee:
    return _Knee(
        joint=rng.uniform(-0.12, 0.12),
        side=float(rng.choice([-1.0, 1.0])),
        leg=rng.uniform(0.8, 0.92),
        fat=rng.uniform(0.06, 0.12),
        condyle=rng.uniform(0.9, 1.1),
        spacing=rng.uniform(0.26, 0.32),
        spacing_drift=rng.normal(0.0, 0.03),
        contrast=rng.uniform(0.85, 1.15, size=4),
        trabecular=_band_noise(rng, 2, (9.0, 9.0), 0.35),
        septa=_band_noise(rng, 2, (1.0, 7.0), 0.5),
        grain=_band_noise(rng, 2, (25.0, 25.0), 0.5),
    )


def _ellipse(
    row: np.ndarray, col: np.ndarray, centre: tuple[float, float], radii: tuple[float, float], power: float = 2.0
) -> np.ndarray:
    """Approximate signed distance to a super-ellipse (negative inside)."""
    norm = (np.abs((row - centre[0]) / radii[0]) ** power + np.abs((col - centre[1]) / radii[1]) ** power) ** (
        1 / power
    )
    return (norm - 1.0) * min(radii)


def _union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth minimum of two signed distances (a blend of radius ``k`` where the shapes meet)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _knee_image(knee: _Knee, row: np.ndarray, col: np.ndarray, t: float, edge: float) -> np.ndarray:
    """Magnitude (H, W) of a coronal knee slice at normalised positions ``row``, ``col``.

    Femur (two condyles, intercondylar notch, shaft), tibia (plateau, spines, shaft) and fibula hold
    fatty marrow crossed by dark trabeculae inside a dark cortex; articular cartilage lines the joint,
    dark menisci sit at its margins and a cruciate ligament in the notch; muscle with bright fat
    septa is wrapped in subcutaneous fat. ``edge`` is the width of the boundary blur (about a pixel).
    """

    def inside(distance: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 - np.tanh(distance / edge))

    j, size, spacing = knee.joint, knee.condyle, knee.spacing + knee.spacing_drift * t
    radius = 0.24 * size
    mix = 0.8 * t  # textures turn slowly through the volume
    femur = _union(
        _ellipse(row, col, (j - 0.04 - radius, -spacing), (radius, radius * 1.1)),
        _ellipse(row, col, (j - 0.04 - radius, spacing), (radius, radius * 1.1)),
        0.05,
    )
    femur = _union(femur, _ellipse(row, col, (j - 0.5, 0.0), (0.35, 0.45 * size)), 0.12)
    femur = _union(femur, np.maximum(np.abs(col) - 0.24, row - (j - 0.6)), 0.1)
    notch = _ellipse(row, col, (j - 0.04, 0.0), (0.2 * size, 0.07 + 0.02 * t))
    femur = np.maximum(femur, -notch)
    tibia = _ellipse(row, col, (j + 0.04 + 0.17 * size, 0.0), (0.17 * size, 0.62 * size), power=4.0)
    tibia = _union(tibia, _ellipse(row, col, (j + 0.05, 0.0), (0.06, 0.11)), 0.03)  # the spines
    tibia = _union(tibia, np.maximum(np.abs(col) - 0.22 - 0.05 * (row - j), j + 0.3 - row), 0.12)
    fibula = _ellipse(row, col, (j + 0.5, knee.side * 0.57 * size), (0.22, 0.085))
    bone = np.minimum(np.minimum(femur, tibia), fibula)

    contrast = knee.contrast
    grain = _sample_texture(knee.grain, mix, row, col)
    leg = np.abs(col) - knee.leg - 0.04 * np.cos(2.5 * row)
    image = inside(leg) * 0.9 * contrast[0] * (1.0 + 0.05 * grain)
    septa = np.exp(-((_sample_texture(knee.septa, mix, row, col) / 0.3) ** 2))
    muscle = 0.45 * contrast[1] * (1.0 + 0.05 * grain) + 0.15 * septa
    image += inside(leg + knee.fat) * (muscle - image)
    near_joint = np.exp(-(((row - j) / 0.18) ** 2))
    cartilage = inside(np.minimum(femur, tibia) - 0.035) * near_joint
    image += cartilage * (0.6 * contrast[2] * (1.0 + 0.05 * grain) - image)
    image += inside(bone) * (0.15 - image)  # cortex
    trabeculae = np.exp(-((_sample_texture(knee.trabecular, mix, row, col) / 0.3) ** 2))
    marrow = 0.7 * contrast[3] * (1.0 - 0.15 * trabeculae) * (1.0 + 0.03 * grain)
    image += inside(bone + 0.025) * (marrow - image)
    meniscus = np.minimum(
        _ellipse(row, col, (j, -0.52 * size), (0.04, 0.13 * size)),
        _ellipse(row, col, (j, 0.52 * size), (0.04, 0.13 * size)),
    )
    ligament = _ellipse(
        row * 0.8 + col * 0.6, -row * 0.6 + col * 0.8, (0.8 * (j - 0.1), -0.6 * (j - 0.1)), (0.14, 0.03)
    )
    image += inside(np.minimum(meniscus, ligament)) * (0.15 - image)
    return image


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


def ismrmrd_header(width: int, acquired: tuple[int, int], matrix: int = DEFAULT_MATRIX, fov_mm: float = 200.0) -> bytes:
    """Minimal ISMRMRD XML header with the fields ``SliceDataset._retrieve_metadata`` reads.

    The encoded matrix is 2·``matrix`` × ``width``, the reconstruction ``matrix`` × ``matrix``.
    fastMRI computes padding_left = width // 2 - center and padding_right = padding_left + maximum + 1,
    so ``center`` and ``maximum`` are given in the frame of the acquired columns ``acquired``.
    """
    left, right = acquired
    center = width // 2 - left
    maximum = right - left - 1
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="{ISMRMRD_NAMESPACE}">
  <experimentalConditions><H1resonanceFrequency_Hz>127766773</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>{2 * matrix}</x><y>{width}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{2 * fov_mm}</x><y>{fov_mm * width / matrix}</y><z>3.0</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{matrix}</x><y>{matrix}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fov_mm}</x><y>{fov_mm}</y><z>3.0</z></fieldOfView_mm>
    </reconSpace>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{maximum}</maximum><center>{center}</center></kspace_encoding_step_1>
    </encodingLimits>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>
""".encode()


def realistic_settings(challenge: str, seed: int, index: int) -> dict:
    """The ``realistic`` preset's layout of volume ``index``: ``n_slices``, ``width``, ``n_coils``,
    ``acquisition`` and ``amplitude`` (keyword arguments of :func:`write_volume`), drawn from
    (seed, challenge, index) apart from the volume's own images."""
    rng = np.random.default_rng([seed, zlib.crc32(challenge.encode()), index, zlib.crc32(b"realistic")])
    settings = {
        "n_slices": int(rng.integers(16, 41)),
        "acquisition": str(rng.choice(ACQUISITIONS[challenge])),
        # Real volume maxima span three decades; log-uniform draws cover them evenly.
        "amplitude": float(10 ** rng.uniform(-5.0, -2.0)),
        "n_coils": 1,
        "width": int(rng.choice([368, 372])),
    }
    if challenge == "multicoil":
        narrow = rng.uniform() < 0.25
        settings["n_coils"] = int(rng.integers(2, 25))
        settings["width"] = int(rng.choice([213, 260, 288])) if narrow else DEFAULT_MATRIX
    return settings


def write_volume(
    path: str | Path,
    challenge: str,
    n_slices: int,
    rng: np.random.Generator,
    width: int | None = None,
    n_coils: int = 4,
    patient_id: str | None = None,
    matrix: int = DEFAULT_MATRIX,
    acquisition: str | None = None,
    amplitude: float | None = None,
) -> None:
    """Write one synthetic fastMRI volume to ``path`` (replacing any file there).

    Args:
        path: Destination ``.h5`` file.
        challenge: "singlecoil" (knee phantom, ``reconstruction_esc``) or "multicoil" (brain image,
            ``reconstruction_rss``).
        n_slices: Number of slices S.
        rng: Source of all randomness; the same generator state gives identical arrays.
        width: Phase-encoding columns W ≥ 16; None gives :func:`default_width`. Below ``matrix``
            the reconstruction holds the W image columns centred between zero columns.
        n_coils: Coils C of a multi-coil volume; ignored for single-coil.
        patient_id: ``patient_id`` attribute; None draws a random hex id.
        matrix: Side of the reconstruction (fastMRI: 320); k-space has 2·``matrix`` readout rows.
        acquisition: ``acquisition`` attribute; None gives the challenge's usual one (CORPD_FBK, AXT2).
        amplitude: Image intensity scale (the volume maximum is of this order); None draws it
            around 1e-4, the order of fastMRI knee data.
    """
    if challenge not in RECON_KEYS:
        raise ValueError(f"unknown challenge {challenge!r}, expected 'singlecoil' or 'multicoil'")
    if matrix < 16 or matrix % 2:
        raise ValueError(f"matrix {matrix} must be an even number of at least 16 pixels")
    width = default_width(challenge, matrix) if width is None else width
    if width < 16:
        raise ValueError(f"width {width} must be at least 16 phase-encoding columns")
    if n_slices < 1:
        raise ValueError(f"n_slices must be at least 1, got {n_slices}")
    if challenge == "multicoil" and n_coils < 1:
        raise ValueError(f"n_coils must be at least 1, got {n_coils}")
    # Drawn whether used or not, so that the images do not depend on the id passed in.
    drawn_id = rng.bytes(8).hex()
    shape = (2 * matrix, width)
    anatomy = _sample_anatomy(rng, shape, ANATOMY[challenge])
    if amplitude is not None:
        anatomy = dataclasses.replace(anatomy, amplitude=amplitude)
    maps = coil_sensitivities(rng, n_coils, shape, matrix) if challenge == "multicoil" else None
    left, right = acquired_columns(challenge, width)
    kspace_shape = (n_slices,) + shape if maps is None else (n_slices, n_coils) + shape
    positions = np.linspace(-1.0, 1.0, n_slices) if n_slices > 1 else np.zeros(1)
    recon = np.empty((n_slices, matrix, matrix), dtype=np.float32)
    path = Path(path)
    with h5py.File(path, "w") as file:
        kspace_out = file.create_dataset("kspace", shape=kspace_shape, dtype=np.complex64)
        for index, t in enumerate(positions):
            image = _slice_image(anatomy, float(t), shape, matrix)
            coils = image if maps is None else maps * image
            sigma = anatomy.noise * anatomy.amplitude / np.sqrt(2)  # per real/imaginary part
            coils = coils + sigma * (rng.standard_normal(coils.shape) + 1j * rng.standard_normal(coils.shape))
            kspace = fft2c(coils)
            kspace[..., :left] = 0
            kspace[..., right:] = 0
            kspace = kspace.astype(np.complex64)
            kspace_out[index] = kspace
            # Reconstruct from the stored complex64 k-space so that the target matches it exactly.
            magnitude = np.abs(ifft2c(kspace.astype(np.complex128)))
            if maps is not None:
                magnitude = np.sqrt(np.sum(magnitude**2, axis=0))
            if width < matrix:
                # A narrow scan: its columns sit in the middle of the matrix, with the offset of a centre crop.
                left_pad = (matrix - width) // 2
                magnitude = np.pad(magnitude, [(0, 0)] * (magnitude.ndim - 1) + [(left_pad, matrix - width - left_pad)])
            recon[index] = center_crop(magnitude, matrix, matrix)
        file.create_dataset(RECON_KEYS[challenge], data=recon)
        if challenge == "singlecoil":
            file.create_dataset(RECON_KEYS["multicoil"], data=recon)
        file.create_dataset("ismrmrd_header", data=ismrmrd_header(width, (left, right), matrix))
        file.attrs["max"] = float(recon.max())
        file.attrs["norm"] = float(np.linalg.norm(recon.astype(np.float64)))
        file.attrs["acquisition"] = ACQUISITION[challenge] if acquisition is None else acquisition
        file.attrs["patient_id"] = drawn_id if patient_id is None else patient_id


def generate_dataset(
    out_dir: str | Path,
    challenge: str,
    n_volumes: int,
    n_slices: int | None,
    seed: int,
    prefix: str = "file",
    width: int | None = None,
    n_coils: int | None = None,
    overwrite: bool = False,
    matrix: int = DEFAULT_MATRIX,
    preset: str = "default",
) -> list[Path]:
    """Write ``n_volumes`` synthetic volumes ``{prefix}_{i:03d}.h5`` to ``out_dir`` (created if needed).

    With ``preset="default"`` every volume has ``n_slices`` slices, ``width`` columns and
    ``n_coils`` coils (None: 4). ``preset="realistic"`` draws each volume's layout with
    :func:`realistic_settings` at fastMRI's matrix of 320; ``n_slices``, when given, then caps the
    drawn slice count (a shorter benchmark), and ``width`` and ``n_coils`` must be None.

    Volume i is seeded from (seed, challenge, i) alone, so adding volumes leaves the others unchanged.
    Each file is written to a temporary name and renamed, so an interrupted run leaves no partial
    ``.h5`` file. An existing file with identical content is left untouched; one with different
    content raises ``FileExistsError`` unless ``overwrite`` is set.

    Returns:
        The paths of the volumes, in order.
    """
    if n_volumes < 1:
        raise ValueError(f"n_volumes must be at least 1, got {n_volumes}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}, expected one of {', '.join(PRESETS)}")
    if preset == "realistic" and (width is not None or n_coils is not None or matrix != DEFAULT_MATRIX):
        raise ValueError(
            f"the realistic preset draws width and coils at matrix {DEFAULT_MATRIX}; do not give width, n_coils or"
            " matrix"
        )
    if preset == "default" and n_slices is None:
        raise ValueError("n_slices is required without the realistic preset")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n_volumes):
        path = out_dir / f"{prefix}_{index:03d}.h5"
        temporary = path.with_name(path.name + ".tmp")
        # Plain numpy seeding keeps this module free of torch, so the CLI starts fast.
        rng = np.random.default_rng([seed, zlib.crc32(challenge.encode()), index])
        try:
            if preset == "realistic":
                settings = realistic_settings(challenge, seed, index)
                if n_slices is not None:
                    settings["n_slices"] = min(n_slices, settings["n_slices"])
            else:
                settings = {"n_slices": n_slices, "width": width, "n_coils": 4 if n_coils is None else n_coils}
            write_volume(temporary, challenge, rng=rng, matrix=matrix, **settings)
            unchanged = path.exists() and filecmp.cmp(temporary, path, shallow=False)
            if path.exists() and not unchanged and not overwrite:
                raise FileExistsError(
                    f"{path}: exists with different content; pass overwrite=True (--overwrite) to replace it"
                )
            if not unchanged:
                os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="python -m lossbench.data.fastmri_synthetic",
        description="Write synthetic MRI volumes in the fastMRI HDF5 format (readable by fastmri.data.SliceDataset).",
    )
    parser.add_argument(
        "--challenge",
        required=True,
        choices=sorted(RECON_KEYS),
        help="knee-like single-coil or brain-like multi-coil data",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--volumes", required=True, type=int, help="number of volumes (files)")
    parser.add_argument(
        "--slices",
        type=int,
        default=None,
        help="slices per volume (required without --preset realistic, where it caps the drawn 16-40)",
    )
    parser.add_argument("--seed", required=True, type=int, help="random seed; equal seeds give identical files")
    parser.add_argument(
        "--matrix",
        type=int,
        default=DEFAULT_MATRIX,
        help=f"side of the reconstruction; k-space has twice as many readout rows (default {DEFAULT_MATRIX})",
    )
    parser.add_argument(
        "--width",
        type=int,
        default=None,
        help="phase-encoding columns (default 1.15·matrix single-coil, matrix multi-coil: 368 and 320)",
    )
    parser.add_argument("--coils", type=int, default=None, help="coils per multi-coil volume (default 4)")
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="default",
        help="realistic: fastMRI's sizes and variety per volume (see realistic_settings)",
    )
    parser.add_argument(
        "--prefix", default="file", help="file names are PREFIX_000.h5, PREFIX_001.h5, ... (default 'file')"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing files whose content differs")
    args = parser.parse_args(argv)
    try:
        paths = generate_dataset(
            args.out,
            args.challenge,
            args.volumes,
            args.slices,
            args.seed,
            args.prefix,
            args.width,
            args.coils,
            args.overwrite,
            args.matrix,
            args.preset,
        )
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} {args.challenge} volumes to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
