"""SIGTERM and SIGINT during training: recorded, acted on after the current step with a checkpoint.

A scheduler (SLURM) sends SIGTERM some time before it kills a job; a user presses Ctrl-C. Either
way the training loop finishes its step, writes a checkpoint and exits with :class:`Interrupted`,
so that a re-run resumes exactly there.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class Interrupted(SystemExit):
    """SIGTERM or SIGINT arrived: a checkpoint was written and the job exits with 128 + the signal."""


@dataclass
class StopSignals:
    """The first SIGTERM/SIGINT received while training (None: none yet)."""

    received: int | None = None


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[StopSignals]:
    """Record SIGTERM/SIGINT instead of dying mid-step; the previous handlers are back on leaving."""
    signals = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield signals  # handlers can only be installed from the main thread
        return

    def record(signum: int, frame: Any) -> None:
        if signals.received is None:
            signals.received = signum

    previous = {signum: signal.signal(signum, record) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield signals
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def ignore_stop_signals(worker_id: int) -> None:
    """``worker_init_fn`` of the DataLoader workers: a scheduler signals every process of the job,
    and the workers must outlive the main process's checkpoint."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
