"""The file writer of the synthetic volumes: k-space, reconstruction, ISMRMRD header and attributes of one volume in
fastMRI's layout (:func:`write_volume`), and a folder of them (:func:`generate_dataset`), each volume's layout
fixed or drawn by the ``realistic`` preset."""

from __future__ import annotations

import dataclasses
import filecmp
import os
import zlib
from pathlib import Path

import h5py
import numpy as np

from lossbench.data.fastmri_format import ACQUISITIONS, DEFAULT_MATRIX, ISMRMRD_NAMESPACE, RECON_KEYS, WIDTH_RATIO
from lossbench.data.fastmri_synthetic.anatomy import _Anatomy, _sample_anatomy, _slice_image, coil_sensitivities

ACQUISITION = {"singlecoil": "CORPD_FBK", "multicoil": "AXT2"}
PRESETS = ("default", "realistic")
ANATOMY = {"singlecoil": "knee", "multicoil": "brain"}
# Real knee scans leave a few phase-encoding columns at each edge unacquired (zero); brain scans do not.
UNACQUIRED_FRACTION = {"singlecoil": 0.045, "multicoil": 0.0}


#: Coils of a default multi-coil volume.
DEFAULT_COILS = 4


def slice_bytes(challenge: str, matrix: int = DEFAULT_MATRIX) -> int:
    """Bytes of one default slice in a file: complex64 k-space (2·matrix rows, the phase-encoding columns, its
    coils) and the float32 matrix × matrix target, uncompressed."""
    coils = DEFAULT_COILS if challenge == "multicoil" else 1
    return 8 * 2 * matrix * default_width(challenge, matrix) * coils + 4 * matrix * matrix


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
    n_coils: int = DEFAULT_COILS,
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
    width = _checked_width(challenge, n_slices, width, n_coils, matrix)
    # Drawn whether used or not, so that the images do not depend on the id passed in.
    drawn_id = rng.bytes(8).hex()
    shape = (2 * matrix, width)
    anatomy = _sample_anatomy(rng, shape, ANATOMY[challenge])
    if amplitude is not None:
        anatomy = dataclasses.replace(anatomy, amplitude=amplitude)
    maps = coil_sensitivities(rng, n_coils, shape, matrix) if challenge == "multicoil" else None
    acquired = acquired_columns(challenge, width)
    kspace_shape = (n_slices,) + shape if maps is None else (n_slices, n_coils) + shape
    positions = np.linspace(-1.0, 1.0, n_slices) if n_slices > 1 else np.zeros(1)
    recon = np.empty((n_slices, matrix, matrix), dtype=np.float32)
    path = Path(path)
    with h5py.File(path, "w") as file:
        kspace_out = file.create_dataset("kspace", shape=kspace_shape, dtype=np.complex64)
        for index, t in enumerate(positions):
            kspace = _slice_kspace(anatomy, float(t), shape, matrix, maps, acquired, rng)
            kspace_out[index] = kspace
            recon[index] = _reconstruction(kspace, maps is not None, matrix)
        file.create_dataset(RECON_KEYS[challenge], data=recon)
        if challenge == "singlecoil":
            file.create_dataset(RECON_KEYS["multicoil"], data=recon)
        file.create_dataset("ismrmrd_header", data=ismrmrd_header(width, acquired, matrix))
        file.attrs["max"] = float(recon.max())
        file.attrs["norm"] = float(np.linalg.norm(recon.astype(np.float64)))
        file.attrs["acquisition"] = ACQUISITION[challenge] if acquisition is None else acquisition
        file.attrs["patient_id"] = drawn_id if patient_id is None else patient_id


def _checked_width(challenge: str, n_slices: int, width: int | None, n_coils: int, matrix: int) -> int:
    """The volume's phase-encoding columns (``width``, or :func:`default_width`), after checking the layout's
    arguments."""
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
    return width


def _slice_kspace(
    anatomy: _Anatomy,
    t: float,
    shape: tuple[int, int],
    matrix: int,
    maps: np.ndarray | None,
    acquired: tuple[int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    """The complex64 k-space of the slice at ``t``: its image through each coil (``maps``; None: one coil) with
    noise, zero outside the ``acquired`` columns."""
    image = _slice_image(anatomy, t, shape, matrix)
    coils = image if maps is None else maps * image
    sigma = anatomy.noise * anatomy.amplitude / np.sqrt(2)  # per real/imaginary part
    coils = coils + sigma * (rng.standard_normal(coils.shape) + 1j * rng.standard_normal(coils.shape))
    kspace = fft2c(coils)
    left, right = acquired
    kspace[..., :left] = 0
    kspace[..., right:] = 0
    return kspace.astype(np.complex64)


def _reconstruction(kspace: np.ndarray, multicoil: bool, matrix: int) -> np.ndarray:
    """The ``matrix`` × ``matrix`` target of one slice's k-space: the centre crop of its magnitude (multi-coil: of the
    coils' root-sum-of-squares)."""
    # Reconstruct from the stored complex64 k-space so that the target matches it exactly.
    magnitude = np.abs(ifft2c(kspace.astype(np.complex128)))
    if multicoil:
        magnitude = np.sqrt(np.sum(magnitude**2, axis=0))
    width = kspace.shape[-1]
    if width < matrix:
        # A narrow scan: its columns sit in the middle of the matrix, with the offset of a centre crop.
        left_pad = (matrix - width) // 2
        magnitude = np.pad(magnitude, [(0, 0)] * (magnitude.ndim - 1) + [(left_pad, matrix - width - left_pad)])
    return center_crop(magnitude, matrix, matrix)


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
    _check_dataset_options(n_volumes, n_slices, seed, width, n_coils, matrix, preset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n_volumes):
        path = out_dir / f"{prefix}_{index:03d}.h5"
        # Plain numpy seeding keeps this module free of torch, so the CLI starts fast.
        rng = np.random.default_rng([seed, zlib.crc32(challenge.encode()), index])
        if preset == "realistic":
            settings = realistic_settings(challenge, seed, index)
            if n_slices is not None:
                settings["n_slices"] = min(n_slices, settings["n_slices"])
        else:
            settings = {"n_slices": n_slices, "width": width, "n_coils": 4 if n_coils is None else n_coils}
        _write_file(path, challenge, rng, matrix, settings, overwrite)
        paths.append(path)
    return paths


def _check_dataset_options(
    n_volumes: int, n_slices: int | None, seed: int, width: int | None, n_coils: int | None, matrix: int, preset: str
) -> None:
    """Raise a one-line ValueError for options :func:`generate_dataset` cannot honour."""
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


def _write_file(
    path: Path, challenge: str, rng: np.random.Generator, matrix: int, settings: dict, overwrite: bool
) -> None:
    """Write one volume (:func:`write_volume` with ``settings``) to ``path`` through a temporary file: an existing
    file with identical content is left untouched, one with different content replaced only with ``overwrite``."""
    temporary = path.with_name(path.name + ".tmp")
    try:
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
