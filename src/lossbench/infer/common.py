"""What restoring images and restoring fastMRI volumes share: the errors, one input through the model, and the
outputs: their records, their atomic writing, and what a rerun keeps."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from lossbench.data.images import png_text


class InferenceInputError(ValueError):
    """An input folder or file the model cannot restore; the message is one line naming it."""


class OutputExistsError(FileExistsError):
    """An output file exists already and ``overwrite`` was not given."""


class OutputWriteError(OSError):
    """An output folder or file that cannot be written (read-only, disk full, ...); the message is one line naming
    it."""


#: Name of the record of model, input and settings in each output of :func:`restore_folder`.
RECORD_KEY = "lossbench.infer"


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Nothing a user produced is replaced silently: stop before writing if any output exists."""
    existing = [path for path in paths if path.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise OutputExistsError(f"{existing[0]}{more} exist already; pass --overwrite to replace them")


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
