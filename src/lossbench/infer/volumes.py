"""fastMRI volumes: the submission files (one per volume, dataset ``reconstruction`` at the volume's scale), from
the workflow's outputs or from a folder of one's own train, validation or test files."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from lossbench.data import tasks
from lossbench.data.fastmri_format import KSPACE_NDIM, RECON_KEYS, crop_side
from lossbench.data.fastmri_ids import volume_of
from lossbench.data.mri import MRISliceDataset, zero_filled
from lossbench.data.valset import ImageFile
from lossbench.infer.common import (
    RECORD_KEY,
    InferenceInputError,
    _check_apart,
    _make_folder,
    _pending,
    _record,
    _refuse_existing,
    _restore,
    _write_atomically,
)
from lossbench.infer.images import _images_in
from lossbench.train.run_settings import RunSettings

# The package's one log, "lossbench.infer", whichever of its modules writes.
log = logging.getLogger(__package__)


def save_reconstructions(
    reconstructions: Mapping[str, np.ndarray], out_dir: str | Path, overwrite: bool = False
) -> list[Path]:
    """Write fastMRI submission files: ``out_dir/<file name>`` with dataset ``reconstruction``.

    The layout of ``fastmri.save_reconstructions`` (what the leaderboard and ``fastmri.evaluate``
    read), each file written atomically.

    Args:
        reconstructions: Volume file name (``file1000.h5``) → (slices, H, W) images at the volume's scale.
        out_dir: Folder of the files (created).
        overwrite: Replace existing files; without it an existing one raises :class:`OutputExistsError`.
    """
    out_dir = Path(out_dir)
    paths = [out_dir / name for name in reconstructions]
    _refuse_existing(paths, overwrite)
    _make_folder(out_dir)
    for path, volume in zip(paths, reconstructions.values()):
        _write_reconstruction(path, volume)
    return paths


def _write_reconstruction(path: Path, volume: np.ndarray, record: str | None = None) -> None:
    """``path`` in fastMRI's submission layout (dataset ``reconstruction``, float32), with ``record`` as attribute
    :data:`RECORD_KEY`."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        file.create_dataset("reconstruction", data=np.asarray(volume, dtype=np.float32))
        if record is not None:
            file.attrs[RECORD_KEY] = record
    _write_atomically(path, buffer.getvalue())


def _volume_scale(path: Path) -> float:
    with h5py.File(path, "r") as file:
        return float(file.attrs["max"])


def write_fastmri_reconstructions(outputs_path: str | Path, volumes_dir: str | Path, out_dir: str | Path) -> int:
    """The workflow's MRI outputs (per slice, scaled to [0, 1]) as fastMRI submission files.

    Each volume's slices are stacked in order and multiplied back by the volume's ``max``, the
    scale its ground truth has, so ``fastmri.evaluate`` compares them with the ground-truth files.

    Args:
        outputs_path: Model outputs written by :func:`run` (group ``output``, (1, H, W) per slice).
        volumes_dir: The validation volumes they restore (``<stem>.h5``, attribute ``max``).
        out_dir: Folder of the per-volume files (replaced files: the workflow owns it).

    Returns:
        The number of volumes written.
    """
    volumes: dict[str, list[np.ndarray]] = {}
    with ImageFile(outputs_path) as outputs:
        for image_id, output in outputs.items("output"):
            volumes.setdefault(volume_of(image_id), []).append(output[0])
    reconstructions = {}
    for stem, slices in volumes.items():
        source = Path(volumes_dir) / f"{stem}.h5"
        if not source.is_file():
            raise FileNotFoundError(f"{source}: the volume of outputs {outputs_path} is missing from {volumes_dir}")
        reconstructions[source.name] = np.stack(slices) * _volume_scale(source)
    save_reconstructions(reconstructions, out_dir, overwrite=True)
    return len(reconstructions)


def _is_test_file(path: Path, recon_key: str) -> bool:
    """Whether ``path`` is a fastMRI test file (undersampled k-space and its ``mask``, no reference)."""
    try:
        with h5py.File(path, "r") as file:
            if "kspace" not in file:
                raise InferenceInputError(
                    f"{path}: not a fastMRI file (no 'kspace' dataset; has {', '.join(file) or 'nothing'})"
                )
            return "mask" in file and recon_key not in file
    except OSError as error:
        raise InferenceInputError(f"{path}: not a readable HDF5 file ({str(error).splitlines()[0]})") from None


def _test_volume_inputs(path: Path, challenge: str, crop: int) -> tuple[np.ndarray, float]:
    """Zero-filled inputs (S, 1, side, side) of a test file with its own mask, and the scale they were divided by.

    Test files carry no reference and so no ``max``: the inputs are divided by the largest value of
    the volume's zero-filled images instead, about the scale the model saw in training.
    """
    with h5py.File(path, "r") as file:
        kspace, mask = file["kspace"][()], np.asarray(file["mask"][()]).astype(bool).reshape(-1)
    if kspace.ndim != KSPACE_NDIM[challenge] or not np.issubdtype(kspace.dtype, np.complexfloating):
        raise InferenceInputError(
            f"{path}: kspace has shape {kspace.shape} and dtype {kspace.dtype}, expected"
            f" {KSPACE_NDIM[challenge]}-dimensional complex {challenge} k-space for this model"
        )
    if mask.shape[0] != kspace.shape[-1]:
        raise InferenceInputError(f"{path}: mask has {mask.shape[0]} entries for {kspace.shape[-1]} k-space columns")
    side = crop_side(kspace.shape, crop)
    if side > kspace.shape[-2]:
        raise InferenceInputError(
            f"{path}: kspace {kspace.shape[-2]}×{kspace.shape[-1]} is smaller than the model's {crop}×{crop} crop"
        )
    kspace = torch.from_numpy(kspace.reshape((kspace.shape[0], -1) + kspace.shape[-2:]))
    slices, coils, height = kspace.shape[:3]
    # zero_filled takes the sampled columns of each slice, slice by slice: (S·K, C, H).
    columns = kspace[..., torch.from_numpy(mask)].permute(0, 3, 1, 2).reshape(-1, coils, height)
    images = zero_filled(columns, torch.from_numpy(mask).expand(slices, -1), side).numpy()
    bad = np.flatnonzero(~np.isfinite(images).all(axis=(1, 2, 3)))
    if bad.size:
        raise InferenceInputError(
            f"{path}: slice {bad[0]}{f' and {bad.size - 1} more' if bad.size > 1 else ''}: NaN or infinite values in"
            " the sampled k-space"
        )
    scale = float(images.max())
    if not np.isfinite(scale) or scale <= 0:
        raise InferenceInputError(f"{path}: the zero-filled images have maximum {scale}, expected a positive number")
    log.warning(
        "%s: a test file (own mask, no reference): scaled by its zero-filled maximum %.4g instead of the reference's",
        path,
        scale,
    )
    return images / scale, scale


def restore_volumes(
    model: torch.nn.Module,
    run_settings: RunSettings,
    input_dir: Path,
    out_dir: Path,
    device: torch.device,
    settings: Mapping[str, Any],
    overwrite: bool = False,
) -> list[Path]:
    """Reconstruct every fastMRI ``.h5`` volume of ``input_dir`` into fastMRI submission files in ``out_dir``.

    Train and validation files get the task's mask, fixed per file name as the workflow's
    validation set has it (so their outputs equal the workflow's); test files keep their own mask.
    Each volume is written when done (:func:`_pending` keeps those an earlier run completed); a
    slice whose input or output is not finite stops the run, naming the file and the slice.

    Args:
        settings: What each output's record holds besides its input's SHA-256 (the model's).

    Returns:
        The files written (not those an earlier run completed).
    """
    challenge = tasks.spec(run_settings.kind).challenge
    files, tests = _volume_files(input_dir, challenge)
    _check_apart(input_dir, out_dir, files)
    pending = _pending(((path, out_dir / path.name) for path in files), settings, overwrite)
    if len(pending) < len(files):
        log.info("%s: keeping %d outputs an earlier run of this model completed", out_dir, len(files) - len(pending))
    volume_inputs = _volume_inputs(input_dir, challenge, run_settings.data, tests)
    _make_folder(out_dir)
    for path, target in pending:
        inputs, scale = volume_inputs(path)
        volume = (
            np.stack(
                [_restore(model, image, device, f"{path}: slice {number}")[0] for number, image in enumerate(inputs)]
            )
            * scale
        )
        _write_reconstruction(target, volume, _record(settings, path))
    return [target for _, target in pending]


def _volume_files(input_dir: Path, challenge: str) -> tuple[list[Path], bool]:
    """The ``.h5`` files of ``input_dir``, sorted, and whether they are test files (all of them are, or none)."""
    if not input_dir.is_dir():
        raise InferenceInputError(f"{input_dir}: not a folder, expected a folder of fastMRI {challenge} .h5 files")
    files = sorted(path for path in input_dir.iterdir() if path.suffix == ".h5" and path.is_file())
    if not files:
        hint = (
            "; it holds images, but this MRI model restores fastMRI .h5 files"
            if any(True for _ in _images_in(input_dir))
            else ""
        )
        raise InferenceInputError(f"{input_dir}: no .h5 files, expected fastMRI {challenge} volumes{hint}")
    tests = [path for path in files if _is_test_file(path, RECON_KEYS[challenge])]
    full = [path for path in files if path not in tests]
    if tests and full:
        raise InferenceInputError(
            f"{input_dir}: mixes fastMRI test files ({tests[0].name}: own mask, no reference) with train/validation"
            f" files ({full[0].name}); give each kind a folder of its own"
        )
    return files, bool(tests)


def _volume_inputs(
    input_dir: Path, challenge: str, data: Mapping[str, Any], tests: bool
) -> Callable[[Path], tuple[Iterable[np.ndarray], float]]:
    """The function that gives a volume file's model inputs, slice by slice, and the scale of its outputs."""
    if tests:

        def volume_inputs(path: Path) -> tuple[Iterable[np.ndarray], float]:
            return _test_volume_inputs(path, challenge, data["crop"])

        return volume_inputs
    # The workflow's own path: its checks (one line naming a bad file), masks and [0, 1] scaling.
    dataset = MRISliceDataset(
        input_dir, challenge, data["mask"]["center_fraction"], data["mask"]["acceleration"], data["crop"]
    )
    slices: dict[str, list[int]] = {}  # volume stem → its slices' dataset indices, in slice order
    for index in range(len(dataset)):
        slices.setdefault(volume_of(dataset.sample_id(index)), []).append(index)

    def volume_inputs(path: Path) -> tuple[Iterable[np.ndarray], float]:
        return (dataset.validation_item(index)[1].numpy() for index in slices[path.stem]), _volume_scale(path)

    return volume_inputs
