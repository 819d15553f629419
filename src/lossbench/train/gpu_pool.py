"""A lock-file pool of GPUs: each training or inference process holds one device for its lifetime.

Snakemake's ``--resources gpu=N`` limits how many GPU jobs run at once but, for local runs, does not
say which GPU a job should use. Each job therefore takes an exclusive ``flock`` on one lock file per
device; the operating system drops the lock when the process exits, even on SIGKILL or a crash, so
a device is never leaked. Lock files are named by GPU UUID, never by ``CUDA_VISIBLE_DEVICES``
entries: an index and a UUID naming one GPU share a lock, and two SLURM allocations on one node,
each renumbered from 0, hold different GPUs and never wait for each other. A job that sees one GPU
(a scheduler placed it) takes that GPU's lock as well, which costs nothing when the GPU is its own.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

#: Lock files taken by this process: device index → open file. Kept open until the process exits.
_HELD: dict[int, IO[str]] = {}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def default_lock_dir() -> Path:
    """Node-local folder of the lock files (a shared file system would couple different nodes' GPUs)."""
    return Path(tempfile.gettempdir()) / f"lossbench-gpu-locks-{os.getuid()}"


def lock_name(uuid: str) -> str:
    """File name of ``uuid``'s lock: ``GPU-`` prefix dropped and lower case, as CUDA and nvidia-smi
    write the same UUID with and without it."""
    key = uuid.strip().lower().removeprefix("gpu-")
    if not key:
        raise ValueError(f"GPU UUID {uuid!r} is empty")
    return f"gpu-{_UNSAFE.sub('_', key)}.lock"


def acquire(uuids: list[str], lock_dir: str | Path | None = None, poll_seconds: float = 1.0) -> int:
    """Index of a device this process holds exclusively, waiting while every device is taken.

    Args:
        uuids: UUIDs of the visible CUDA devices in index order
            (:func:`lossbench.train.device.visible_gpu_uuids`; tests simulate them).
        lock_dir: Folder of the lock files (default :func:`default_lock_dir`).
        poll_seconds: Pause between attempts while all devices are taken.

    Returns:
        The device index among the visible ones (``cuda:<index>``). A process that already holds a
        device gets the same one again.

    Raises:
        ValueError: No device, or two visible devices with one UUID.
    """
    if not uuids:
        raise ValueError("no device to acquire (no visible GPU)")
    names = [lock_name(uuid) for uuid in uuids]
    if len(set(names)) < len(names):
        raise ValueError(f"visible GPUs {uuids} repeat a UUID (CUDA_VISIBLE_DEVICES lists one GPU twice?)")
    if _HELD:
        return next(iter(_HELD))
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    waiting = False
    while True:
        for index, name in enumerate(names):
            handle = open(folder / name, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            _HELD[index] = handle
            log.info("holding GPU %s (cuda:%d) through %s", uuids[index], index, handle.name)
            return index
        if not waiting:
            log.info("all %d GPUs are taken by other jobs (locks in %s): waiting for one", len(uuids), folder)
            waiting = True
        time.sleep(poll_seconds)
