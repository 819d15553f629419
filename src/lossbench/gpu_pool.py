"""A lock-file pool of GPUs: each training or inference process holds one device for its lifetime.

Snakemake's ``--resources gpu=N`` limits how many GPU jobs run at once but, for local runs, does not
say which GPU a job should use. Each job therefore takes an exclusive ``flock`` on one lock file per
visible device; the operating system drops the lock when the process exits, even on SIGKILL or a
crash, so a device is never leaked. A scheduler that places the job itself (SLURM sets
``CUDA_VISIBLE_DEVICES`` to the job's one GPU) is honoured: no lock is taken then.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

#: Lock files taken by this process: device index → open file. Kept open until the process exits.
_HELD: dict[int, IO[str]] = {}


def default_lock_dir() -> Path:
    """Node-local folder of the lock files (a shared file system would couple different nodes' GPUs)."""
    return Path(tempfile.gettempdir()) / f"lossbench-gpu-locks-{os.getuid()}"


def device_ids(count: int, visible: str | None) -> list[str]:
    """Names of the ``count`` visible devices for the lock files: the entries of ``CUDA_VISIBLE_DEVICES``
    (indices or UUIDs, so that jobs seeing the same GPUs share locks), or 0…count-1 when it is unset.

    Raises:
        ValueError: if ``CUDA_VISIBLE_DEVICES`` names fewer devices than are visible.
    """
    if visible is None:
        return [str(index) for index in range(count)]
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if len(entries) < count:
        raise ValueError(f"CUDA_VISIBLE_DEVICES={visible!r}: names {len(entries)} devices but {count} are visible")
    return entries[:count]


def acquire(count: int, visible: str | None = None, lock_dir: str | Path | None = None, poll_seconds: float = 1.0) -> int:
    """Index of a device this process holds exclusively, waiting while every device is taken.

    Args:
        count: Number of visible CUDA devices (``torch.cuda.device_count()``; tests simulate it).
        visible: The value of ``CUDA_VISIBLE_DEVICES`` (None: unset).
        lock_dir: Folder of the lock files (default :func:`default_lock_dir`).
        poll_seconds: Pause between attempts while all devices are taken.

    Returns:
        The device index among the visible ones (``cuda:<index>``). A process that already holds a
        device gets the same one again. With ``CUDA_VISIBLE_DEVICES`` naming exactly one device the
        scheduler has placed the job: 0, without a lock.
    """
    if count < 1:
        raise ValueError(f"no device to acquire (count {count})")
    ids = device_ids(count, visible)
    if visible is not None and len(ids) == 1:
        return 0
    if _HELD:
        return next(iter(_HELD))
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    waiting = False
    while True:
        for index, device in enumerate(ids):
            handle = open(folder / f"gpu-{device}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            _HELD[index] = handle
            log.info("holding GPU %s (cuda:%d) through %s", device, index, handle.name)
            return index
        if not waiting:
            log.info("all %d GPUs are taken by other jobs (locks in %s): waiting for one", count, folder)
            waiting = True
        time.sleep(poll_seconds)
