"""Checkpoints of a training run: where they live, how they are written and read, and the RNG states in them.

A run's checkpoints live in a folder named by :func:`settings_hash` of its settings and of its training
files' identity (:func:`data_identity`), so changed data (or another training folder) starts a new
run. Each is written atomically as ``step_<step>.pt``, the newest :data:`KEEP_CHECKPOINTS` kept;
unreadable ones are moved aside as ``*.corrupt``, never resumed, counted or pruned in place of a
good one.

Checkpoints and ``model.pt`` hold tensors and plain data (dict, list, tuple, str, int, float, bool,
None) only, and are read back by :func:`load_file` with ``torch.load(weights_only=True)``: trained
models and checkpoints are files people share, and a full unpickling would run whatever a file's
pickle names. A file holding anything else is refused before anything in it runs. Files of earlier
versions, whose checkpoints held NumPy's RNG state as a NumPy array, are turned into today's format
by ``python -m lossbench.train.checkpoint convert FILE`` (:func:`convert`), which runs nothing in them either.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import pickle
import random
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lossbench.core.io import atomic_file
from lossbench.train.run_settings import RunSettings

log = logging.getLogger(__name__)

#: Checkpoints kept: the newest, and the one before it in case the newest turns out unreadable.
KEEP_CHECKPOINTS = 2
_CHECKPOINT_GLOB = "step_*.pt"
#: What every checkpoint holds; a file without these is unreadable as a checkpoint.
_CHECKPOINT_KEYS = {"model", "loss", "optimizer", "rng", "progress"}
#: Training sets up to this size are identified by their content, larger ones by file sizes and mtimes.
CONTENT_DIGEST_BYTES = 256 * 2**20


def settings_hash(settings: RunSettings, data: dict[str, Any] | None = None) -> str:
    """Short stable hash of run settings and the identity of its training files (:func:`data_identity`).

    It names the checkpoint folder of that exact run, so a changed settings or changed data is a new run.
    """
    plain = settings.to_dict()
    content = plain if data is None else {"spec": plain, "data_identity": data}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def data_identity(files: list[Path], root: str | Path) -> dict[str, Any]:
    """What identifies a training set: every file's name (relative to ``root`` where below it) and size,
    and a digest of their contents, or, above :data:`CONTENT_DIGEST_BYTES` in all, of their mtimes.

    Computed by the training job itself rather than by Snakemake's parameters, so that planning a
    workflow never reads the data. The mtimes of a large set make a copy with new times a new run:
    never a stale resume, at worst a repeated one.
    """
    root = Path(root)
    sizes = [path.stat().st_size for path in files]
    by_content = sum(sizes) <= CONTENT_DIGEST_BYTES
    digest = hashlib.sha256()
    for path, size in zip(files, sizes):
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        digest.update(json.dumps([name, size]).encode())
        if by_content:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(2**20), b""):
                    digest.update(block)
        else:
            digest.update(str(path.stat().st_mtime_ns).encode())
    return {
        "files": len(files),
        "bytes": sum(sizes),
        "by": "content" if by_content else "size and mtime",
        "digest": digest.hexdigest()[:16],
    }


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` through :func:`atomic_file`: a kill or a full disk leaves ``path`` old or
    complete."""
    with atomic_file(path) as handle:
        torch.save(obj, handle)


#: The globals of a NumPy array in a pickle (``numpy.core`` under NumPy 1, ``numpy._core`` under 2),
#: the only objects besides tensors and plain data that earlier lossbench versions wrote: NumPy's RNG
#: state. :func:`convert` lets torch's weights-only unpickler rebuild them, and nothing else.
_NUMPY_RECONSTRUCT = np.empty(0).__reduce__()[0]
_EARLIER_GLOBALS: dict[str, Any] = {
    "numpy.core.multiarray._reconstruct": _NUMPY_RECONSTRUCT,
    "numpy._core.multiarray._reconstruct": _NUMPY_RECONSTRUCT,
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
}


def convert_command(path: Path, out: Path | None = None) -> str:
    """The shell command that converts ``path`` (to ``out``) with :func:`main`."""
    return shlex.join(
        ["python", "-m", "lossbench.train.checkpoint", "convert", str(path), *(["--out", str(out)] if out else [])]
    )


class RefusedFileError(ValueError):
    """A model or checkpoint file holding objects other than tensors and plain data; nothing in it ran.

    Attributes:
        path: The file.
        earlier: It holds NumPy arrays and nothing else besides plain data: a file of an earlier
            lossbench, which :func:`convert` turns into today's format.
        reason: Why it was refused, without the path.
    """

    def __init__(self, path: Path, names: list[str]) -> None:
        self.path = path
        self.earlier = bool(names) and set(names) <= _EARLIER_GLOBALS.keys()
        if self.earlier:
            self.reason = (
                "written by an earlier lossbench (NumPy arrays in it, which this version does not unpickle); refused"
                " without running anything in it"
            )
        elif names:
            self.reason = (
                "not a lossbench model or checkpoint: it holds objects other than tensors and plain data"
                f" ({', '.join(sorted(names))}); refused without running them"
            )
        else:  # a raw pickle, a pickle protocol torch.save never writes, or no pickle at all
            self.reason = (
                "not a lossbench model or checkpoint: not tensors and plain data as torch.save writes them; refused"
                " without running anything in it"
            )
        super().__init__(
            f"{path}: {self.reason}" + (f"; convert it with: {convert_command(path)}" if self.earlier else "")
        )


def load_file(path: str | Path, map_location: torch.device | str = "cpu") -> Any:
    """``torch.load`` a model or checkpoint with ``weights_only=True``: tensors and plain data, and nothing in it run.

    Raises:
        RefusedFileError: The file holds other objects (a pickled payload, or NumPy arrays of an
            earlier lossbench); nothing in it ran.
        Exception: Anything torch raises for an unreadable file (truncated, not a torch file).
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        try:
            # Read off the pickle's opcodes, not unpickled: the globals it would import, to say what the file is.
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # not a zip archive of torch.save, or opcodes torch.save never writes: nothing to list
            names = []
        raise RefusedFileError(path, names) from None


def save_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` as ``step_<step>.pt`` atomically and delete older ones, keeping the newest two.

    The checkpoint just written is always kept, whatever the names of the others.
    """
    path = directory / f"step_{state['progress']['step']:09d}.pt"
    save_atomic(state, path)
    older = sorted(old for old in directory.glob(_CHECKPOINT_GLOB) if old.name < path.name)
    for old in older[: max(0, len(older) - (KEEP_CHECKPOINTS - 1))]:
        old.unlink()
    return path


def _move_aside(path: Path) -> Path:
    """Rename an unreadable checkpoint to ``<name>.corrupt`` (``.corrupt.1``, ... if taken), out of the resume and
    pruning."""
    target = path.with_name(path.name + ".corrupt")
    number = 0
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}.corrupt.{number}")
    path.rename(target)
    return target


def load_checkpoint(directory: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint in ``directory`` (tensors on the CPU) and its path.

    An unreadable one is moved aside as ``*.corrupt`` with a warning, so it is never resumed,
    counted or pruned in place of a good one. With none readable but some moved aside, one
    warning line says that training restarts from step 0.
    """
    for leftover in directory.glob("*.tmp"):
        leftover.unlink()  # a write that was killed half-way
    moved = 0
    for path in sorted(directory.glob(_CHECKPOINT_GLOB), reverse=True):
        try:
            # On the CPU: load_state_dict moves each tensor where it belongs, and Adam's step
            # counters stay on the CPU as Adam expects (on the GPU each .item() would be a sync).
            checkpoint = load_file(path)
            if not isinstance(checkpoint, dict) or not _CHECKPOINT_KEYS <= checkpoint.keys():
                raise ValueError(f"not a training checkpoint (expected the keys {', '.join(sorted(_CHECKPOINT_KEYS))})")
            return checkpoint, path
        except RefusedFileError as error:
            aside = _move_aside(path)
            moved += 1
            hint = f"; convert it with: {convert_command(aside, path)}" if error.earlier else ""
            log.warning("checkpoint %s is %s: moved aside to %s%s", path, error.reason, aside.name, hint)
        except Exception as error:  # a truncated or corrupted file raises anything from pickle to zip errors
            aside = _move_aside(path)
            moved += 1
            log.warning(
                "checkpoint %s is unreadable (%s: %s): moved aside to %s",
                path,
                type(error).__name__,
                str(error).splitlines()[0] if str(error) else "",
                aside.name,
            )
    if moved:
        log.warning(
            "no readable checkpoint in %s (%d moved aside as *.corrupt): training restarts from step 0",
            directory,
            moved,
        )
    return None


def rng_states(device: torch.device) -> dict[str, Any]:
    """The states of torch's, NumPy's and Python's global generators, and of ``device``'s CUDA one, as tensors and plain
    data."""
    # Python's state is a tuple of ints, plain data already.
    states = {
        "torch": torch.get_rng_state(),
        "numpy": _plain_numpy_state(np.random.get_state()),
        "python": random.getstate(),
    }
    if device.type == "cuda":
        # Only the training device's generator: a resume may see fewer GPUs than this run.
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng_states(states: dict[str, Any], device: torch.device) -> None:
    """Restore :func:`rng_states`; a CUDA state goes to ``device``, whichever GPU it was saved from."""
    torch.set_rng_state(states["torch"].cpu())
    numpy = states["numpy"]
    np.random.set_state({**numpy, "state": {**numpy["state"], "key": numpy["state"]["key"].numpy()}})
    random.setstate(states["python"])
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"].cpu(), device)


def _plain_numpy_state(state: tuple) -> dict[str, Any]:
    """NumPy's legacy RNG state tuple ``(name, key array, pos, has_gauss, gauss)`` as the dict that
    ``np.random.set_state`` also takes, its key array a tensor: NumPy arrays are no plain data."""
    name, key, pos, has_gauss, gauss = state
    return {
        "bit_generator": name,
        "state": {"key": torch.from_numpy(key), "pos": pos},
        "has_gauss": has_gauss,
        "gauss": gauss,
    }


def convert(path: Path, out: Path) -> Path | None:
    """Write the model or checkpoint ``path`` of an earlier lossbench to ``out`` in today's format.

    ``path`` is read by torch's weights-only unpickler with NumPy's array globals allowed besides
    (:data:`_EARLIER_GLOBALS`), so nothing in it runs; NumPy's RNG state becomes plain data. ``out``
    is written atomically; converted in place, the original is kept as ``<path>.orig``.

    Returns:
        The kept original, or None when ``out`` is another file.

    Raises:
        RefusedFileError: ``path`` holds objects other than tensors, plain data and NumPy arrays.
        ValueError: ``path`` is in today's format already, holds NumPy arrays besides NumPy's RNG
            state, or ``out`` (``<path>.orig`` in place) exists; one line naming the file.
    """
    try:
        load_file(path)
    except RefusedFileError as error:
        if not error.earlier:
            raise
    else:
        raise ValueError(f"{path}: in today's format already (tensors and plain data only); nothing to convert")
    other_arrays = ValueError(f"{path}: holds NumPy arrays besides a checkpoint's NumPy RNG state; not converted")
    # The key array of NumPy's RNG state is of type uint32; arrays of any other type are refused here.
    with torch.serialization.safe_globals(
        [(value, name) for name, value in _EARLIER_GLOBALS.items()] + [type(np.dtype(np.uint32))]
    ):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise other_arrays from None
    rng = state.get("rng") if isinstance(state, dict) else None
    if isinstance(rng, dict) and isinstance(rng.get("numpy"), tuple):
        rng["numpy"] = _plain_numpy_state(rng["numpy"])
    converted = io.BytesIO()
    torch.save(state, converted)
    try:
        torch.load(io.BytesIO(converted.getvalue()), weights_only=True)
    except pickle.UnpicklingError:
        raise other_arrays from None
    in_place = out.resolve() == path.resolve()
    kept = path.with_name(path.name + ".orig") if in_place else None
    if (kept or out).exists():
        raise ValueError(f"{kept or out}: exists already; {'move it away first' if kept else 'choose another --out'}")
    if kept:
        shutil.copy2(path, kept)
    with atomic_file(out) as handle:
        handle.write(converted.getbuffer())
    return kept


def main(argv: list[str] | None = None) -> None:
    """``python -m lossbench.train.checkpoint convert FILE [--out OUT]``: see :func:`convert`."""
    parser = argparse.ArgumentParser(
        prog="python -m lossbench.train.checkpoint",
        description=(
            "Convert a model.pt or checkpoint (step_*.pt) written by an earlier lossbench into today's format: tensors"
            " and plain data only, which lossbench reads without running anything in the file. FILE is read without"
            " running anything in it either: besides tensors and plain data only NumPy arrays are rebuilt (earlier"
            " checkpoints held NumPy's RNG state as one); a file holding anything else is refused."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("convert", help="convert one file", description=parser.description)
    command.add_argument(
        "file", type=Path, help="model.pt or step_*.pt (or a step_*.pt.corrupt that training moved aside)"
    )
    command.add_argument(
        "--out",
        type=Path,
        help="where to write the converted file (default: over FILE, the original kept as FILE.orig)",
    )
    args = parser.parse_args(argv)
    out = args.out or args.file
    try:
        kept = convert(args.file, out)
    except (ValueError, OSError) as error:
        sys.exit(f"error: {error}")
    print(f"converted {args.file} to {out}" + (f" (the original kept as {kept})" if kept else ""))


if __name__ == "__main__":
    main()
