"""Validation of one fastMRI volume (:func:`check_volume`): HDF5 readable and complete, datasets, shapes, dtypes,
ISMRMRD header and attributes, with one line naming the file and what is wrong.

Every genuine fastMRI layout passes: coil counts varying between volumes, k-space of any width (knee
368, 372, ...; brain scans narrower than the crop are cropped to W × W, see
:func:`~lossbench.data.fastmri_format.crop_side`), single-coil files that also carry
``reconstruction_rss``, any ``acquisition``, any positive ``max``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import h5py
import numpy as np

from lossbench.data.fastmri_format import HEADER_FIELDS, ISMRMRD_NAMESPACE, KSPACE_NDIM, RECON_KEYS, crop_side


class FastMRIFileError(ValueError):
    """A fastMRI volume is unusable; the message is one line naming the file and the problem."""


def check_volume(
    path: str | Path, challenge: str, crop: int = 320, read_data: bool = True, full: bool = False
) -> tuple[int, ...]:
    """Validate one fastMRI volume and return its k-space shape.

    Args:
        path: The ``.h5`` file.
        challenge: ``singlecoil`` or ``multicoil``.
        crop: Side of the centre crop the task uses; the images must be at least this large, except
            that k-space narrower than the crop is cropped to its width W (:func:`crop_side`), so its
            target and k-space rows must hold W × W.
        read_data: Also read the last slice, which catches a file cut short inside its data.
        full: Read every slice of k-space and target: catches damaged (e.g. compressed) chunks
            anywhere, and NaN or infinite values, one of which spoils a whole slice (slower).

    Raises:
        FastMRIFileError: The file is truncated or not HDF5, lacks ``kspace``, the target or the
            header (or stores one as a group), has wrong shapes or dtypes, an unparsable header or
            a non-positive matrix size, no positive scalar ``max``, unreadable or non-finite data.
        ValueError: ``crop`` is not a positive integer.
    """
    path = Path(path)
    recon_key = RECON_KEYS[challenge]
    if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)) or crop < 1:
        raise ValueError(f"crop {crop!r} must be a positive integer")

    def fail(problem: str) -> FastMRIFileError:
        return FastMRIFileError(f"{path}: {problem}")

    try:
        file = h5py.File(path, "r")
    except OSError as error:
        # HDF5 compares the stored end-of-file address with the file size, so a cut-off download
        # fails here with "truncated file".
        raise fail(f"not a readable HDF5 file, truncated or corrupt ({_first_line(error)})") from None
    with file:
        kspace, target = _datasets(file, challenge, recon_key, fail)
        _check_shapes(kspace, target, recon_key, crop, fail)
        _check_header(file["ismrmrd_header"][()], fail)
        _check_max(file.attrs.get("max"), fail)
        if full:
            for index in range(kspace.shape[0]):
                _check_slice(kspace, index, fail)
                _check_slice(target, index, fail)
        elif read_data:
            # The last slice lies at the end of the data: reading it catches a file cut short.
            _read_slice(kspace, -1, fail)
            _read_slice(target, -1, fail)
        return tuple(kspace.shape)


def _datasets(file: h5py.File, challenge: str, recon_key: str, fail) -> tuple[h5py.Dataset, h5py.Dataset]:
    """The ``kspace`` and target datasets of a ``challenge`` volume, after checking that they and the header are
    datasets of the right dimensions and types."""
    for key in ("kspace", recon_key, "ismrmrd_header"):
        if key not in file:
            raise fail(
                f"missing dataset {key!r}, expected a fastMRI {challenge} volume with kspace, {recon_key} and"
                " ismrmrd_header"
            )
        if not isinstance(file[key], h5py.Dataset):
            raise fail(f"{key} is an HDF5 {type(file[key]).__name__.lower()}, expected a dataset")
    kspace, target = file["kspace"], file[recon_key]
    if kspace.ndim != KSPACE_NDIM[challenge]:
        raise fail(f"kspace has shape {kspace.shape}, expected {KSPACE_NDIM[challenge]} dimensions for {challenge}")
    if not np.issubdtype(kspace.dtype, np.complexfloating):
        raise fail(f"kspace has dtype {kspace.dtype}, expected complex64")
    if target.ndim != 3 or not np.issubdtype(target.dtype, np.floating):
        raise fail(
            f"{recon_key} has shape {target.shape} and dtype {target.dtype}, expected (slices, height, width) float32"
        )
    return kspace, target


def _check_shapes(kspace: h5py.Dataset, target: h5py.Dataset, recon_key: str, crop: int, fail) -> None:
    """K-space and target hold the same, non-zero number of slices, each large enough for the task's crop."""
    if target.shape[0] != kspace.shape[0] or kspace.shape[0] == 0:
        raise fail(f"kspace has {kspace.shape[0]} slices but {recon_key} has {target.shape[0]}")
    side = crop_side(kspace.shape, crop)
    if side > min(target.shape[-2:]) or side > kspace.shape[-2]:
        narrow = f", cropped to {side}×{side} as its k-space is narrower" if side < crop else ""
        raise fail(
            f"crop {crop} is larger than the image (kspace {kspace.shape[-2]}×{kspace.shape[-1]}, {recon_key}"
            f" {target.shape[-2]}×{target.shape[-1]}{narrow})"
        )


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _read_slice(dataset: h5py.Dataset, index: int, fail) -> np.ndarray:
    try:
        return dataset[index]
    except (OSError, ValueError, RuntimeError) as error:
        # A damaged compressed chunk fails in its decompression filter ("can't read data").
        raise fail(
            f"{dataset.name.lstrip('/')} slice {index % dataset.shape[0]} cannot be read, damaged data"
            f" ({_first_line(error)})"
        ) from None


def _check_slice(dataset: h5py.Dataset, index: int, fail) -> None:
    values = _read_slice(dataset, index, fail)
    finite = np.isfinite(values)
    if not finite.all():
        kinds = sorted({"NaN" if np.isnan(value) else "inf" for value in np.ravel(values[~finite])[:1000]})
        raise fail(
            f"{dataset.name.lstrip('/')} slice {index} holds {np.count_nonzero(~finite)} non-finite values"
            f" ({', '.join(kinds)})"
        )


def _check_max(maximum, fail) -> None:
    """The ``max`` attribute must be one positive finite real number (it scales targets to [0, 1])."""
    if maximum is None:
        raise fail("attribute 'max' is missing, expected the positive volume maximum used to scale to [0, 1]")
    value = np.asarray(maximum)
    if value.ndim != 0 or value.dtype.kind not in "iuf":
        shown = f"a {value.dtype} array of shape {value.shape}" if value.ndim else f"{maximum!r} of type {value.dtype}"
        raise fail(
            f"attribute 'max' is {shown}, expected one positive number (the volume maximum used to scale to [0, 1])"
        )
    if not np.isfinite(value) or value <= 0:
        raise fail(f"attribute 'max' is {value.item()}, expected the positive volume maximum used to scale to [0, 1]")


def _check_header(raw: bytes, fail) -> None:
    try:
        root = ElementTree.fromstring(raw.tobytes() if hasattr(raw, "tobytes") else raw)
    except (ElementTree.ParseError, TypeError) as error:
        raise fail(f"ismrmrd_header is not valid XML ({error})") from None
    namespace = {"m": ISMRMRD_NAMESPACE}
    for field in HEADER_FIELDS:
        node = root.find("/".join(f"m:{part}" for part in field.split("/")), namespace)
        if node is None or node.text is None:
            raise fail(f"ismrmrd_header lacks {field}, expected an ISMRMRD header in namespace {ISMRMRD_NAMESPACE}")
        try:
            value = int(node.text)
        except ValueError:
            raise fail(f"ismrmrd_header field {field} is {node.text!r}, expected an integer") from None
        # fastMRI derives the k-space padding and the image size from these: sizes must be positive.
        smallest = 1 if "matrixSize" in field else 0
        if value < smallest:
            raise fail(f"ismrmrd_header field {field} is {value}, expected an integer of at least {smallest}")
