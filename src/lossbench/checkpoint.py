"""Checkpoints of a training run: where they live, how they are written and read, and the RNG states in them.

A run's checkpoints live in a folder named by :func:`spec_hash` of its spec and of its training
files' identity (:func:`data_identity`), so changed data (or another training folder) starts a new
run. Each is written atomically as ``step_<step>.pt``, the newest :data:`KEEP_CHECKPOINTS` kept;
unreadable ones are moved aside as ``*.corrupt``, never resumed, counted or pruned in place of a
good one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lossbench.run_spec import RunSpec

log = logging.getLogger(__name__)

#: Checkpoints kept: the newest, and the one before it in case the newest turns out unreadable.
KEEP_CHECKPOINTS = 2
_CHECKPOINT_GLOB = "step_*.pt"
#: What every checkpoint holds; a file without these is unreadable as a checkpoint.
_CHECKPOINT_KEYS = {"model", "loss", "optimizer", "rng", "progress"}
#: Training sets up to this size are identified by their content, larger ones by file sizes and mtimes.
CONTENT_DIGEST_BYTES = 256 * 2**20


def spec_hash(spec: RunSpec, data: dict[str, Any] | None = None) -> str:
    """Short stable hash of a run spec and the identity of its training files (:func:`data_identity`).

    It names the checkpoint folder of that exact run, so a changed spec or changed data is a new run.
    """
    plain = spec.to_dict()
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
    return {"files": len(files), "bytes": sum(sizes), "by": "content" if by_content else "size and mtime", "digest": digest.hexdigest()[:16]}


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` so that a kill during the write leaves ``path`` either old or complete."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


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
    """Rename an unreadable checkpoint to ``<name>.corrupt`` (``.corrupt.1``, ... if taken), out of the resume and pruning."""
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
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
            if not isinstance(checkpoint, dict) or not _CHECKPOINT_KEYS <= checkpoint.keys():
                raise ValueError(f"not a training checkpoint (expected the keys {', '.join(sorted(_CHECKPOINT_KEYS))})")
            return checkpoint, path
        except Exception as error:  # a truncated or corrupted file raises anything from pickle to zip errors
            aside = _move_aside(path)
            moved += 1
            log.warning("checkpoint %s is unreadable (%s: %s): moved aside to %s", path, type(error).__name__, str(error).splitlines()[0] if str(error) else "", aside.name)
    if moved:
        log.warning("no readable checkpoint in %s (%d moved aside as *.corrupt): training restarts from step 0", directory, moved)
    return None


def rng_states(device: torch.device) -> dict[str, Any]:
    """The states of torch's, NumPy's and Python's global generators, and of ``device``'s CUDA one."""
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        # Only the training device's generator: a resume may see fewer GPUs than this run.
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng_states(states: dict[str, Any], device: torch.device) -> None:
    """Restore :func:`rng_states`; a CUDA state goes to ``device``, whichever GPU it was saved from."""
    torch.set_rng_state(states["torch"].cpu())
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"].cpu(), device)
