"""Observers' answers: one append-only JSON-lines file per observer, and count matrices from them.

Every answer is one line, appended, flushed and fsynced before the app confirms it, so a
confirmed answer survives a crash or a power cut; nothing is ever rewritten. A torn last line
(a write interrupted before it was confirmed) is left in place, skipped when reading, and the next
answer starts on a fresh line. One server at a time writes into a responses folder
(:class:`FolderLock`), so no trial is ever accepted twice.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
from pathlib import Path

import numpy as np

LOG = logging.getLogger(__name__)
#: Observer ids: letters, digits, "_" and "-", so that an id is always a safe file name.
OBSERVER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: The lock file of a responses folder; not an observer file, so the analysis never reads it.
LOCK = ".lock"


def check_observer(observer: str) -> str:
    if not OBSERVER_ID.match(observer):
        raise ValueError(f"observer id {observer!r}: use 1–64 letters, digits, '_' or '-', starting with a letter or digit")
    return observer


def read_answers(path: str | Path) -> list[dict]:
    """The confirmed answers in an observer file, in order; unparseable (torn) lines are skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        return []
    answers = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                LOG.warning("%s:%d: unreadable line skipped (an answer interrupted before it was confirmed)", path, number)
                continue
            answers.append(record)
    return answers


class ObserverFile:
    """The answers of one observer, appended durably; thread-safe."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock = threading.Lock()
        self.answered = {record["trial"] for record in read_answers(self.path)}

    def append(self, record: dict) -> None:
        """Append ``record`` as one line and fsync it (and, for a new file, its folder)."""
        line = json.dumps(record, sort_keys=True).encode() + b"\n"
        created = not self.path.exists()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if not created and os.fstat(descriptor).st_size > 0:
                with open(self.path, "rb") as handle:
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        line = b"\n" + line  # after a torn line, start a fresh one
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if created:
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        self.answered.add(record["trial"])


class FolderLock:
    """An exclusive lock on a responses folder, held by the one server that writes into it.

    Two servers on one folder would each accept the same trial (each keeps its own record of what
    is answered). The lock is an ``flock`` on ``<folder>/.lock``, which the kernel releases when its
    holder exits in any way, kill -9 included, so a crashed server never blocks its restart.

    Raises:
        ValueError: naming the folder and the holder's pid, if another server holds it.
    """

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise ValueError(f"{folder}: in use by another study server (pid {holder}); stop it, or serve into another responses folder") from None
        except BaseException:
            os.close(descriptor)
            raise
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._descriptor: int | None = descriptor

    def close(self) -> None:
        """Release the lock (idempotent); the file stays, so that no other server races on its creation."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def observer_counts(manifest: dict, folder: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """Per-observer count matrices from every ``<observer>.jsonl`` in ``folder``.

    A file without a confirmed answer (only a torn line) is skipped with a warning: its observer
    answered nothing, and counting them would overstate how many observers the study has.

    Returns:
        (observers, conditions, counts) with counts of shape (observers, N, N),
        ``counts[k, i, j]`` the times observer k chose condition i over condition j.

    Raises:
        ValueError: naming the file and line of an answer that does not fit the manifest.
    """
    conditions = manifest["conditions"]
    trials = {trial["id"]: trial for trial in manifest["trials"]}
    files = sorted(Path(folder).glob("*.jsonl"))
    if not files:
        raise ValueError(f"{folder}: no observer files (<observer>.jsonl)")
    observers, matrices = [], []
    for path in files:
        counts = np.zeros((len(conditions), len(conditions)))
        seen = set()
        answers = read_answers(path)
        if not answers:
            LOG.warning("%s: no confirmed answer; observer %s left out", path, path.stem)
            continue
        for record in answers:
            trial = trials.get(record.get("trial"))
            pair = {record.get("chosen"), record.get("other")}
            if trial is None or pair != {trial["a"], trial["b"]}:
                raise ValueError(f"{path}: answer {record} does not match a trial of the manifest")
            if record["trial"] in seen:
                raise ValueError(f"{path}: trial {record['trial']} answered twice")
            seen.add(record["trial"])
            counts[conditions.index(record["chosen"]), conditions.index(record["other"])] += 1
        observers.append(path.stem)
        matrices.append(counts)
    if not observers:
        raise ValueError(f"{folder}: no observer file holds a confirmed answer")
    return observers, conditions, np.stack(matrices)
