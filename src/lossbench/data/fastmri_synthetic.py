"""Synthetic MRI volumes in the exact fastMRI HDF5 layout, for offline demos and tests.

``fastmri.data.SliceDataset`` reads these files unchanged:

* single-coil (knee-like): ``kspace`` (S, 640, W) complex64 and ``reconstruction_esc`` (S, 320, 320) float32;
* multi-coil (brain-like): ``kspace`` (S, C, 640, W) complex64 and ``reconstruction_rss`` (S, 320, 320) float32;
* ``ismrmrd_header``: ISMRMRD XML bytes with the encoded and recon matrix sizes and the phase-encoding
  limits from which fastMRI derives the k-space padding;
* file attributes ``max`` and ``norm`` (of the reconstruction volume), ``acquisition`` and ``patient_id``.

Each slice is a deformed phantom (scikit-image's Shepp-Logan or matplotlib's bundled MRI slice) with a
smooth phase, placed at the centre of a 640 × W field of view: the readout is oversampled 2× as in real
fastMRI data, so the 320 × 320 reconstruction is a centre crop. K-space uses fastMRI's convention, a
centred orthonormal 2-D FFT (ifftshift → fft2(norm="ortho") → fftshift over the last two axes), and the
stored reconstruction is the centre crop of |ifft2c(kspace)| (single-coil) or of the root-sum-of-squares
of the coil images (multi-coil), so target and k-space agree to float32 precision.

Everything is drawn from a caller-seeded ``numpy.random.Generator``: equal seeds give equal arrays and,
HDF5 writing being deterministic, byte-identical files.
"""

from __future__ import annotations

import argparse
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

READOUT = 640  # k-space rows: the readout is oversampled 2× relative to the 320-row image
RECON = 320  # side of the stored reconstruction
PHANTOMS = ("shepp_logan", "mri")
RECON_KEYS = {"singlecoil": "reconstruction_esc", "multicoil": "reconstruction_rss"}
DEFAULT_WIDTH = {"singlecoil": 368, "multicoil": 320}
ACQUISITION = {"singlecoil": "CORPD_FBK", "multicoil": "AXT2"}
ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
# Real knee scans leave a few phase-encoding columns at each edge unacquired (zero); brain scans do not.
UNACQUIRED_FRACTION = {"singlecoil": 0.045, "multicoil": 0.0}


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
def phantom_image(name: str) -> np.ndarray:
    """Base phantom ``name`` (one of ``PHANTOMS``) as a read-only square float64 array in [0, 1]."""
    if name == "shepp_logan":
        from skimage.data import shepp_logan_phantom

        image = shepp_logan_phantom()
    elif name == "mri":
        from matplotlib.cbook import get_sample_data

        # A 256 × 256 big-endian uint16 sagittal head slice shipped with matplotlib.
        with get_sample_data("s1045.ima.gz") as file:
            image = np.frombuffer(file.read(), ">u2").reshape(256, 256)
    else:
        raise ValueError(f"unknown phantom {name!r}, expected one of {PHANTOMS}")
    image = image.astype(np.float64) / image.max()
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

    scale: tuple[float, float]  # object half-size (rows, cols) in units of half the 320 crop
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


def _sample_anatomy(rng: np.random.Generator, shape: tuple[int, int]) -> _Anatomy:
    aspect = rng.uniform(0.9, 1.1)
    scale = rng.uniform(0.85, 1.0)
    return _Anatomy(
        scale=(scale * np.sqrt(aspect), scale / np.sqrt(aspect)),
        theta=np.deg2rad(rng.uniform(-15.0, 15.0)),
        theta_drift=np.deg2rad(rng.normal(0.0, 3.0)),
        shift=rng.uniform(-0.05, 0.05, size=2),
        shift_drift=rng.normal(0.0, 0.02, size=2),
        extent=rng.uniform(0.3, 0.7),
        warp=rng.uniform(0.02, 0.05),
        warp_phase=rng.uniform(0.0, 2 * np.pi),
        warp_rate=rng.uniform(0.5, 1.5),
        warp_fields=_smooth_field(rng, (2, 2) + shape),
        bias=np.exp(0.15 * _smooth_field(rng, shape)),
        phase=np.concatenate([[rng.uniform(-np.pi, np.pi)], rng.normal(0.0, 0.4, size=5)]),
        phase_drift=rng.normal(0.0, 0.3),
        amplitude=1e-4 * rng.uniform(0.5, 2.0),
        noise=rng.uniform(0.005, 0.015),
    )


def _normalised_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates (H, W), 0 at the k-space centre pixel, ±1 at the edges of the crop."""
    rows = (np.arange(shape[0]) - shape[0] // 2) / (RECON / 2)
    cols = (np.arange(shape[1]) - shape[1] // 2) / (RECON / 2)
    return np.meshgrid(rows, cols, indexing="ij")


def _slice_image(base: np.ndarray, anatomy: _Anatomy, t: float, shape: tuple[int, int]) -> np.ndarray:
    """Noise-free complex image (H, W) of the slice at position ``t`` ∈ [-1, 1] through the volume."""
    u_row, u_col = _normalised_grid(shape)
    size = np.sqrt(1.0 - (anatomy.extent * t) ** 2)
    theta = anatomy.theta + anatomy.theta_drift * t
    d_row = u_row - (anatomy.shift[0] + anatomy.shift_drift[0] * t)
    d_col = u_col - (anatomy.shift[1] + anatomy.shift_drift[1] * t)
    # Pull-back: each output pixel looks up where it came from in the base phantom.
    cos, sin = np.cos(theta), np.sin(theta)
    v_row = (cos * d_row - sin * d_col) / (anatomy.scale[0] * size)
    v_col = (sin * d_row + cos * d_col) / (anatomy.scale[1] * size)
    mix = anatomy.warp_phase + anatomy.warp_rate * t
    warp = anatomy.warp * (np.cos(mix) * anatomy.warp_fields[0] + np.sin(mix) * anatomy.warp_fields[1])
    half = (base.shape[0] - 1) / 2
    coords = np.stack([(v_row + warp[0] + 1) * half, (v_col + warp[1] + 1) * half])
    magnitude = ndimage.map_coordinates(base, coords, order=1, mode="constant", cval=0.0)
    c = anatomy.phase
    phase = c[0] + anatomy.phase_drift * t + c[1] * u_row + c[2] * u_col + c[3] * u_row**2 + c[4] * u_col**2 + c[5] * u_row * u_col
    return anatomy.amplitude * anatomy.bias * magnitude * np.exp(1j * phase)


def coil_sensitivities(rng: np.random.Generator, n_coils: int, shape: tuple[int, int]) -> np.ndarray:
    """Smooth, distinct complex coil maps (C, H, W) whose root-sum-of-squares is 1 everywhere.

    Coils sit on a ring just outside the object with Gaussian magnitude profiles and a smooth phase.
    """
    u_row, u_col = _normalised_grid(shape)
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


def ismrmrd_header(width: int, acquired: tuple[int, int], fov_mm: float = 200.0) -> bytes:
    """Minimal ISMRMRD XML header with the fields ``SliceDataset._retrieve_metadata`` reads.

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
      <matrixSize><x>{READOUT}</x><y>{width}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{2 * fov_mm}</x><y>{fov_mm * width / RECON}</y><z>3.0</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{RECON}</x><y>{RECON}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fov_mm}</x><y>{fov_mm}</y><z>3.0</z></fieldOfView_mm>
    </reconSpace>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{maximum}</maximum><center>{center}</center></kspace_encoding_step_1>
    </encodingLimits>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>
""".encode()


def write_volume(
    path: str | Path,
    challenge: str,
    n_slices: int,
    rng: np.random.Generator,
    width: int | None = None,
    n_coils: int = 4,
    patient_id: str | None = None,
    phantom: str | None = None,
) -> None:
    """Write one synthetic fastMRI volume to ``path`` (replacing any file there).

    Args:
        path: Destination ``.h5`` file.
        challenge: "singlecoil" (knee-like, ``reconstruction_esc``) or "multicoil" (brain-like,
            ``reconstruction_rss``).
        n_slices: Number of slices S.
        rng: Source of all randomness; the same generator state gives identical arrays.
        width: Phase-encoding columns W ≥ 320; None gives 368 (single-coil) or 320 (multi-coil).
        n_coils: Coils C of a multi-coil volume; ignored for single-coil.
        patient_id: ``patient_id`` attribute; None draws a random hex id.
        phantom: Base image, one of ``PHANTOMS``; None draws one.
    """
    if challenge not in RECON_KEYS:
        raise ValueError(f"unknown challenge {challenge!r}, expected 'singlecoil' or 'multicoil'")
    width = DEFAULT_WIDTH[challenge] if width is None else width
    if width < RECON:
        raise ValueError(f"width {width} is smaller than the {RECON}-column reconstruction")
    if n_slices < 1:
        raise ValueError(f"n_slices must be at least 1, got {n_slices}")
    if challenge == "multicoil" and n_coils < 1:
        raise ValueError(f"n_coils must be at least 1, got {n_coils}")
    # Drawn whether used or not, so that the images do not depend on the id or phantom passed in.
    drawn_id = rng.bytes(8).hex()
    drawn_phantom = PHANTOMS[int(rng.integers(len(PHANTOMS)))]
    base = phantom_image(phantom or drawn_phantom)
    shape = (READOUT, width)
    anatomy = _sample_anatomy(rng, shape)
    maps = coil_sensitivities(rng, n_coils, shape) if challenge == "multicoil" else None
    left, right = acquired_columns(challenge, width)
    kspace_shape = (n_slices, READOUT, width) if maps is None else (n_slices, n_coils, READOUT, width)
    positions = np.linspace(-1.0, 1.0, n_slices) if n_slices > 1 else np.zeros(1)
    recon = np.empty((n_slices, RECON, RECON), dtype=np.float32)
    path = Path(path)
    with h5py.File(path, "w") as file:
        kspace_out = file.create_dataset("kspace", shape=kspace_shape, dtype=np.complex64)
        for index, t in enumerate(positions):
            image = _slice_image(base, anatomy, float(t), shape)
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
            recon[index] = center_crop(magnitude, RECON, RECON)
        file.create_dataset(RECON_KEYS[challenge], data=recon)
        file.create_dataset("ismrmrd_header", data=ismrmrd_header(width, (left, right)))
        file.attrs["max"] = float(recon.max())
        file.attrs["norm"] = float(np.linalg.norm(recon.astype(np.float64)))
        file.attrs["acquisition"] = ACQUISITION[challenge]
        file.attrs["patient_id"] = drawn_id if patient_id is None else patient_id


def generate_dataset(
    out_dir: str | Path,
    challenge: str,
    n_volumes: int,
    n_slices: int,
    seed: int,
    prefix: str = "file",
    width: int | None = None,
    n_coils: int = 4,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``n_volumes`` synthetic volumes ``{prefix}_{i:03d}.h5`` to ``out_dir`` (created if needed).

    Volume i is seeded from (seed, challenge, i) alone, so adding volumes leaves the others unchanged,
    and phantoms alternate between volumes. Each file is written to a temporary name and renamed, so
    an interrupted run leaves no partial ``.h5`` file. An existing file with identical content is left
    untouched; one with different content raises ``FileExistsError`` unless ``overwrite`` is set.

    Returns:
        The paths of the volumes, in order.
    """
    if n_volumes < 1:
        raise ValueError(f"n_volumes must be at least 1, got {n_volumes}")
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
            write_volume(temporary, challenge, n_slices, rng, width=width, n_coils=n_coils, phantom=PHANTOMS[index % len(PHANTOMS)])
            unchanged = path.exists() and filecmp.cmp(temporary, path, shallow=False)
            if path.exists() and not unchanged and not overwrite:
                raise FileExistsError(f"{path}: exists with different content; pass overwrite=True (--overwrite) to replace it")
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
    parser.add_argument("--challenge", required=True, choices=sorted(RECON_KEYS), help="knee-like single-coil or brain-like multi-coil data")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--volumes", required=True, type=int, help="number of volumes (files)")
    parser.add_argument("--slices", required=True, type=int, help="slices per volume")
    parser.add_argument("--seed", required=True, type=int, help="random seed; equal seeds give identical files")
    parser.add_argument("--width", type=int, default=None, help="phase-encoding columns (default 368 single-coil, 320 multi-coil)")
    parser.add_argument("--coils", type=int, default=4, help="coils per multi-coil volume (default 4)")
    parser.add_argument("--prefix", default="file", help="file names are PREFIX_000.h5, PREFIX_001.h5, ... (default 'file')")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files whose content differs")
    args = parser.parse_args(argv)
    try:
        paths = generate_dataset(args.out, args.challenge, args.volumes, args.slices, args.seed, args.prefix, args.width, args.coils, args.overwrite)
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} {args.challenge} volumes of {args.slices} slices to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
