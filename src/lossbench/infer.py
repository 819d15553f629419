"""Inference: a trained model on the workflow's validation set, or on one's own images and fastMRI files.

The MRI outputs also exist in fastMRI's submission layout (:func:`save_reconstructions`): one HDF5
file per volume, named as the volume's file, holding ``reconstruction`` (slices, H, W) float32 at
the volume's own scale, which ``python -m fastmri.evaluate`` reads beside the ground-truth files.

CLI (one's own data):
    python -m lossbench.infer --model results/<experiment>/models/<task>/<loss>/seed0/model.pt \\
        --input FOLDER --out FOLDER [--sigma 25] [--overwrite] [--max-pixels N]

On one's own data, every output is written to a temporary file beside it and renamed into place,
carrying a record (PNG text chunk or HDF5 attribute :data:`RECORD_KEY`) of the model file's and
the input file's SHA-256 and the settings. An output that exists is therefore complete, and one
whose record matches is done: a rerun of a stopped run keeps it and computes only the rest, with or
without ``--overwrite``. Any other existing output stops the run before any work unless
``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from PIL import Image

from lossbench import models
from lossbench.data import tasks
from lossbench.data.denoise import validation_noise
from lossbench.data.fastmri_files import KSPACE_NDIM, crop_side
from lossbench.data.fastmri_ids import volume_of
from lossbench.data.fastmri_synthetic import RECON_KEYS
from lossbench.data.images import (
    IMAGE_SUFFIXES,
    DuplicateImageIdError,
    image_size,
    list_images,
    png_text,
    read_rgb,
    write_png,
)
from lossbench.data.mri import MRISliceDataset, zero_filled
from lossbench.data.valset import ImageFile, write_images
from lossbench.train.device import DeviceError, configure_cuda_kernels, select_device
from lossbench.train.loop import load_model
from lossbench.train.run_spec import RunSpec

log = logging.getLogger(__name__)


class InferenceInputError(ValueError):
    """An input folder or file the model cannot restore; the message is one line naming it."""


class OutputExistsError(FileExistsError):
    """An output file exists already and ``overwrite`` was not given."""


class OutputWriteError(OSError):
    """An output folder or file that cannot be written (read-only, disk full, ...); the message is one line naming
    it."""


#: Pixels an input image may have by default (``--max-pixels``), read from its header before decoding:
#: 50 megapixels are 600 MB as float32 RGB and several GB of network activations.
DEFAULT_MAX_PIXELS = 50_000_000
#: Name of the record of model, input and settings in each output of :func:`restore_folder`.
RECORD_KEY = "lossbench.infer"


@torch.no_grad()
def run(
    model_path: str | Path,
    valset_path: str | Path,
    out_path: str | Path,
    device: str = "auto",
    threads: int | None = None,
) -> int:
    """Restore every validation input with the model and write the outputs (group ``output``).

    Outputs are written clamped to [0, 1], as an image file of them would be; the share of values
    the clamp changed is logged, since a model (a FLIP-trained one in particular) may leave the range.

    Returns:
        The number of images written.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    target_device = select_device(device)
    model, spec = load_model(model_path, target_device)
    configure_cuda_kernels(target_device, spec.trainer.tf32, spec.trainer.cudnn_benchmark)  # as trained
    log.info("inference of %s/%s seed %d on %s", spec.task, spec.loss.name, spec.seed, target_device)
    with ImageFile(valset_path) as valset:
        outside = total = 0

        def outputs():
            nonlocal outside, total
            for image_id, degraded in valset.items("input"):
                restored = model(torch.from_numpy(degraded)[None].to(target_device))[0].float()
                outside += int(((restored < 0) | (restored > 1)).sum())
                total += restored.numel()
                yield image_id, restored.clamp(0.0, 1.0).cpu().numpy()

        write_images(out_path, {"output": outputs()}, {"task": spec.task, "loss": spec.loss.name, "seed": spec.seed})
        log.info("%.2f%% of output values were outside [0, 1] and were clamped", 100.0 * outside / max(total, 1))
        return len(valset.ids)


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Nothing a user produced is replaced silently: stop before writing if any output exists."""
    existing = [path for path in paths if path.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise OutputExistsError(f"{existing[0]}{more} exist already; pass --overwrite to replace them")


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


def _reason(error: OSError) -> str:
    """The cause of ``error`` in a few words: its ``strerror``, else the first line of its message."""
    return error.strerror or (str(error).splitlines()[0] if str(error) else type(error).__name__)


def _make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents, a failure as one :class:`OutputWriteError` line naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputWriteError(f"{folder}: cannot create the output folder ({_reason(error)})") from None


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and on to the disk, so that the file is complete once renamed, even after a crash."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    A file at ``path`` is thus always complete (what lets a rerun keep it), and a failure leaves
    neither a partial file nor the temporary one. The data are encoded in memory first, so that
    every disk error is Python's (HDF5's own writes report a full disk in several lines of text).

    Raises:
        OutputWriteError: one line naming ``path`` (disk full, read-only folder, ...).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # hidden, one per process
    try:
        try:
            _write_file(temporary, data)
            os.replace(temporary, path)
        finally:
            # Only if it exists: unlinking a missing file fails too on a read-only file system.
            if os.path.lexists(temporary):
                temporary.unlink()
    except OSError as error:
        raise OutputWriteError(f"{path}: cannot write ({_reason(error)})") from None


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


def _restore(model: torch.nn.Module, image: np.ndarray, device: torch.device, where: str) -> np.ndarray:
    """The (C, H, W) output of ``model`` for one (C, H, W) input, clamped to [0, 1] as :func:`run` writes it.

    Raises:
        InferenceInputError: one line starting with ``where`` (a file, or a file's slice) when the
            input or the output holds NaN or infinite values (the clamp would hide an infinite
            output and keep NaN), or the model fails on it (out of memory, say).
    """
    if not np.isfinite(image).all():
        raise InferenceInputError(f"{where}: the model's input has NaN or infinite values (the file's data has them)")
    try:
        restored = model(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device))[0].float()
    except RuntimeError as error:  # torch.OutOfMemoryError among them
        raise InferenceInputError(f"{where}: the model failed on it ({str(error).splitlines()[0]})") from None
    if not torch.isfinite(restored).all():
        raise InferenceInputError(f"{where}: the model's output has NaN or infinite values (its input is finite)")
    return restored.clamp(0.0, 1.0).cpu().numpy()


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _record(settings: Mapping[str, Any], source: Path) -> str:
    """The record an output of ``source`` carries: ``settings`` (the model's SHA-256, ...) and the input's SHA-256."""
    return json.dumps({**settings, "input": _sha256(source)}, sort_keys=True)


def _stored_record(path: Path) -> str | None:
    """The record output ``path`` carries; None when it has none or cannot be read (as a partial file could not)."""
    try:
        if path.suffix == ".png":
            return png_text(path).get(RECORD_KEY)
        with h5py.File(path, "r") as file:
            stored = file.attrs.get(RECORD_KEY)
        return stored if isinstance(stored, str) else None
    except (OSError, ValueError):
        return None


def _pending(
    jobs: Iterable[tuple[Path, Path]], settings: Mapping[str, Any], overwrite: bool
) -> list[tuple[Path, Path]]:
    """The (input, output) pairs of ``jobs`` still to do, checked before any work.

    An output whose record is that of its input and ``settings`` was completed by an earlier run of
    the same model and is kept; any other existing output is replaced only with ``overwrite``.

    Raises:
        OutputExistsError: such other outputs exist and ``overwrite`` is False (the first named).
    """
    pending, foreign = [], []
    for source, target in jobs:
        if os.path.lexists(target):
            if _stored_record(target) == _record(settings, source):
                continue
            foreign.append(target)
        pending.append((source, target))
    if foreign and not overwrite:
        which = f"{foreign[0]} and {len(foreign) - 1} more exist" if len(foreign) > 1 else f"{foreign[0]} exists"
        raise OutputExistsError(
            f"{which} already, not written from these inputs by this model and settings; pass --overwrite to replace"
            " them"
        )
    return pending


def _check_apart(input_dir: Path, out_dir: Path, sources: Iterable[Path]) -> None:
    """Refuse an output folder that is, holds or lies in the input folder, or holds an input file.

    Whatever ``overwrite`` says: outputs must neither replace inputs nor become inputs of a rerun
    (images are listed recursively). Symbolic links are resolved, so a link to the input folder, or
    an input linked from the output folder, is found.
    """
    inputs, outputs = input_dir.resolve(), out_dir.resolve()
    relation = (
        "is"
        if outputs == inputs
        else "lies inside"
        if outputs.is_relative_to(inputs)
        else "holds"
        if inputs.is_relative_to(outputs)
        else None
    )
    if relation is not None:
        raise InferenceInputError(
            f"{out_dir}: the output folder {relation} the input folder {input_dir} (links resolved); give the outputs a"
            " folder apart from the inputs"
        )
    for source in sources:
        if source.resolve().is_relative_to(outputs):
            raise InferenceInputError(
                f"{source}: this input is {source.resolve()}, inside the output folder {out_dir}; give the outputs a"
                " folder apart from the inputs"
            )


def _check_size(path: Path, height: int, width: int, model: Mapping[str, Any]) -> None:
    """One line naming ``path`` when the image is smaller than the network of ``model`` (a ``model`` section) takes."""
    network = models.of(model)
    minimum = network.min_side(models.params(model))
    if min(height, width) < minimum:
        raise InferenceInputError(
            f"{path}: {width}×{height} is smaller than the {minimum}×{minimum} minimum of"
            f" {network.describe(models.params(model))}"
        )


def _image_outputs(images: Mapping[str, Path], out_dir: Path) -> dict[str, Path]:
    """``out_dir/<id>.png`` for each image id; two that are one file on a case-insensitive file system are refused."""
    outputs: dict[str, Path] = {}
    taken: dict[str, str] = {}
    for image_id, source in images.items():
        outputs[image_id] = out_dir / f"{image_id}.png"
        other = taken.setdefault(image_id.casefold(), image_id)
        if other != image_id:
            raise InferenceInputError(
                f"{images[other]} and {source} would both be written as {outputs[other]} on a case-insensitive file"
                f" system ({outputs[image_id].name} is the same name there); rename one"
            )
    return outputs


def restore_images(
    model: torch.nn.Module,
    spec: RunSpec,
    input_dir: Path,
    out_dir: Path,
    device: torch.device,
    settings: Mapping[str, Any],
    sigma: float | None = None,
    seed: int = 0,
    overwrite: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Path]:
    """Denoise every image below ``input_dir`` into ``out_dir/<id>.png`` (ids of :func:`list_images`).

    Every input is checked before any work: ids that would share an output, the folders' overlap,
    each header (readable, a mode with a defined range, at most ``max_pixels``, at least the
    network's minimum side) and the existing outputs (:func:`_pending`).

    Args:
        settings: What each output's record holds besides its input's SHA-256 (the model's, the noise).
        sigma: Add Gaussian noise of ``sigma``/255 first, fixed per image by ``seed`` and its id (as
            the validation noise is); None restores the images as they are.
        max_pixels: Largest width × height of an input.

    Returns:
        The files written (not those an earlier run completed).
    """
    try:
        images = list_images(input_dir)
    except DuplicateImageIdError as error:
        raise InferenceInputError(
            f"{error.first} and {error.second} would both be written as {out_dir / f'{error.image_id}.png'}; rename one"
        ) from None
    except FileNotFoundError as error:
        if input_dir.is_dir() and any(input_dir.glob("*.h5")):
            raise InferenceInputError(
                f"{input_dir}: holds .h5 files but no images; the {spec.task} model restores RGB images (PNG, JPEG,"
                " ...)"
            ) from None
        raise InferenceInputError(str(error)) from None
    outputs = _image_outputs(images, out_dir)
    _check_apart(input_dir, out_dir, images.values())
    for source in images.values():
        with warnings.catch_warnings():  # PIL warns of images above its bomb limit; the budget below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            width, height = image_size(source)
        if width * height > max_pixels:
            raise InferenceInputError(
                f"{source}: {width}×{height} is {width * height / 1e6:.1f} megapixels, more than --max-pixels"
                f" {max_pixels}; raise it to restore this image"
            )
        _check_size(source, height, width, spec.model)
    ids = {source: image_id for image_id, source in images.items()}
    pending = _pending(((images[image_id], target) for image_id, target in outputs.items()), settings, overwrite)
    if len(pending) < len(images):
        log.info("%s: keeping %d outputs an earlier run of this model completed", out_dir, len(images) - len(pending))
    _make_folder(out_dir)
    for source, target in pending:
        image = read_rgb(source)  # grayscale is repeated into RGB, alpha dropped; unreadable: one line naming the file
        if sigma is not None:
            image = validation_noise(image, ids[source], sigma, seed)
        restored = _restore(model, image.transpose(2, 0, 1), device, str(source))
        buffer = io.BytesIO()
        write_png(buffer, restored.transpose(1, 2, 0), {RECORD_KEY: _record(settings, source)})
        _write_atomically(target, buffer.getvalue())
    return [target for _, target in pending]


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
    spec: RunSpec,
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
    challenge, data = tasks.spec(spec.kind).challenge, spec.data
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
    _check_apart(input_dir, out_dir, files)
    pending = _pending(((path, out_dir / path.name) for path in files), settings, overwrite)
    if len(pending) < len(files):
        log.info("%s: keeping %d outputs an earlier run of this model completed", out_dir, len(files) - len(pending))
    if tests:

        def volume_inputs(path: Path) -> tuple[Iterable[np.ndarray], float]:
            return _test_volume_inputs(path, challenge, data["crop"])

    else:
        # The workflow's own path: its checks (one line naming a bad file), masks and [0, 1] scaling.
        dataset = MRISliceDataset(
            input_dir, challenge, data["mask"]["center_fraction"], data["mask"]["acceleration"], data["crop"]
        )
        slices: dict[str, list[int]] = {}  # volume stem → its slices' dataset indices, in slice order
        for index in range(len(dataset)):
            slices.setdefault(volume_of(dataset.sample_id(index)), []).append(index)

        def volume_inputs(path: Path) -> tuple[Iterable[np.ndarray], float]:
            return (dataset.validation_item(index)[1].numpy() for index in slices[path.stem]), _volume_scale(path)

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


def _images_in(folder: Path) -> Iterator[Path]:
    return (path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)


@torch.no_grad()
def restore_folder(
    model_path: str | Path,
    input_dir: str | Path,
    out_dir: str | Path,
    sigma: float | None = None,
    seed: int = 0,
    overwrite: bool = False,
    device: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Path]:
    """Run a trained model on one's own data: a folder of images (denoising) or of fastMRI ``.h5`` files (MRI).

    Args:
        model_path: ``model.pt`` written by :mod:`lossbench.train.loop`; its spec names the task, the
            MRI mask and the crop.
        input_dir: Folder of images (PNG, JPEG, ...; below it, recursively) or of fastMRI volumes.
        out_dir: Where the restored PNGs or fastMRI submission files go: a folder apart from the
            inputs (neither inside the other), whatever ``overwrite`` says.
        sigma: Denoising: noise of ``sigma``/255 added to each image first (None: none).
        seed: Seed of that noise.
        overwrite: Replace existing outputs that are not this run's (otherwise any of them stops
            the run first). Outputs an earlier run of the same model, inputs and settings completed
            are kept either way: rerunning a stopped run resumes it.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        max_pixels: Denoising: largest width × height of an input image, read from its header
            before decoding. PIL's own limit (``PIL.Image.MAX_IMAGE_PIXELS``, beyond twice which it
            refuses) applies too; :func:`main` raises it to ``--max-pixels``.

    Returns:
        The files written (not those an earlier run completed).

    Raises:
        InferenceInputError, OutputExistsError, OutputWriteError, FileNotFoundError, ValueError:
            one line naming the file, folder or value.
    """
    model_path, input_dir, out_dir = Path(model_path), Path(input_dir), Path(out_dir)
    if not model_path.is_file():
        raise FileNotFoundError(
            f"{model_path}: model file does not exist (results/<experiment>/models/<task>/<loss>/seed<N>/model.pt)"
        )
    target_device = select_device(device)
    try:
        model, spec = load_model(model_path, target_device)
    except ValueError as error:  # load_model's own one line: a refused file, no spec, a bad spec
        message = str(error)
        raise InferenceInputError(
            message if message.startswith(str(model_path)) else f"{model_path}: {message}"
        ) from None
    except Exception as error:  # anything from zip to torch errors for a file that is no model.pt
        raise InferenceInputError(
            f"{model_path}: not a model written by lossbench.train ({type(error).__name__}:"
            f" {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    log.info("%s: %s/%s seed %d on %s", model_path, spec.task, spec.loss.name, spec.seed, target_device)
    settings: dict[str, Any] = {"model": _sha256(model_path)}
    challenge = tasks.spec(spec.kind).challenge
    if challenge is None:  # a task on photographs
        if sigma is not None:  # the seed matters only with noise
            settings.update(sigma=sigma, seed=seed)
        return restore_images(
            model, spec, input_dir, out_dir, target_device, settings, sigma, seed, overwrite, max_pixels
        )
    if sigma is not None:
        raise InferenceInputError(
            f"--sigma adds noise to images, but {model_path} is a {spec.task} (fastMRI {challenge}) model"
        )
    return restore_volumes(model, spec, input_dir, out_dir, target_device, settings, overwrite)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench.infer",
        description="Run a trained model on a folder of images (denoising) or of fastMRI .h5 files (MRI).",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="model.pt written by lossbench.train, e.g. results/demo/models/denoise/l1/seed0/model.pt",
    )
    parser.add_argument(
        "--input",
        required=True,
        help=(
            "folder of images (denoising) or of fastMRI .h5 files: train/val files get the task's mask, test files"
            " their own"
        ),
    )
    parser.add_argument(
        "--out",
        required=True,
        help=(
            "output folder, apart from the input folder (neither inside the other): PNGs, or fastMRI submission files"
            " (dataset 'reconstruction')"
        ),
    )
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="denoising: add Gaussian noise of SIGMA/255 (seeded) first; default: none",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the --sigma noise (default 0)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=(
            "replace existing outputs that this model did not write from these inputs and settings (those it did are"
            " kept: a rerun resumes)"
        ),
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=(
            "denoising: largest width x height of an input image, checked before decoding (default"
            f" {DEFAULT_MAX_PIXELS})"
        ),
    )
    args = parser.parse_args(argv)
    if args.sigma is not None and not (np.isfinite(args.sigma) and args.sigma >= 0):
        parser.error(f"--sigma {args.sigma} must be a finite number >= 0")
    if args.max_pixels < 1:
        parser.error(f"--max-pixels {args.max_pixels} must be a positive number of pixels")
    if Image.MAX_IMAGE_PIXELS is not None and args.max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = args.max_pixels  # PIL's bomb check would refuse what the user allowed
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        written = restore_folder(
            args.model, args.input, args.out, args.sigma, args.seed, args.overwrite, args.device, args.max_pixels
        )
    except (ValueError, FileNotFoundError, FileExistsError, OutputWriteError, DeviceError) as error:
        sys.exit(f"error: {error}")
    print(f"wrote {len(written)} files to {args.out}")


if __name__ == "__main__":
    main()
