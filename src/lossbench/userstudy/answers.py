"""One observer's answer file: an append-only JSON-lines file, written durably and read back line by line.

**Writing** (:class:`ObserverFile`). An answer is confirmed only once its whole line is on disk:
the line is written to its end (a short write, as on a filling disk, is continued), fsynced, and for
a new file the folder is fsynced too. A write that fails in any way (a full disk or quota, a
read-only or failing file system) is undone before :class:`StorageError` reports it in one line: the
file is truncated back to its length before the answer, and a file that the answer created is
removed, so no prefix of an unconfirmed answer stays and the observer can answer the same trial
again. Nothing confirmed is ever rewritten. A line cut off by a crash is left in place; the next
answer ends it with :data:`CUT_OFF_MARK` and starts a fresh line, so that the cut-off line can never
be read as an answer, even where it happens to be complete JSON. One server at a time writes into a
responses folder (:class:`FolderLock`), so no trial is ever accepted twice.

**Reading** (:func:`read_answers`). An answer is a line that ends in a newline and holds a JSON
object whose ``observer`` is an observer id and whose ``trial``, ``chosen`` and ``other`` are
strings. Every other line is skipped and counted by its reason (:data:`SKIP_REASONS`), and one
warning per file names the file, the counts and the line numbers.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

# The answers' one log, "lossbench.userstudy.responses", whichever of their modules writes.
LOG = logging.getLogger("lossbench.userstudy.responses")
#: Observer ids: letters, digits, "_" and "-", so that an id is always a safe file name.
OBSERVER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: The lock file of a responses folder; not an observer file, so the analysis never reads it.
LOCK = ".lock"
#: What ends a line found cut off when the next answer is appended; no JSON object ends so.
CUT_OFF_MARK = b" [cut off]"
#: The fields every answer needs (the server writes more: image, sides, position, time).
FIELDS = ("observer", "trial", "chosen", "other")
#: Why a line is skipped, with what that means.
SKIP_REASONS = {
    "cut off": "an answer interrupted before it was confirmed",
    "not JSON": "not a JSON value",
    "not an object": "JSON, but not an object",
    "missing or invalid fields": f"an object without string fields {', '.join(FIELDS)} or with an invalid observer id",
    "another observer": "an answer of another observer than the file's",
    "repeated trial": "a trial answered before in the file; the first answer counts",
}
#: Line numbers a log line or caption names per reason before it says how many more.
_SHOWN_LINES = 5


def check_observer(observer: str) -> str:
    if not OBSERVER_ID.match(observer):
        raise ValueError(
            f"observer id {observer!r}: use 1–64 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return observer


class StorageError(Exception):
    """A file of the responses folder that could not be read or written; the message is one line naming it.

    Attributes:
        path: The file.
        full: Whether the disk or the quota is full (more space helps), rather than the file system refusing.
    """

    def __init__(self, path: str | Path, action: str, error: OSError):
        self.path = Path(path)
        self.full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        super().__init__(f"{path}: {action}: {error.strerror or error}")


def write_all(descriptor: int, data: bytes) -> None:
    """Write all of ``data`` to ``descriptor``, continuing after short writes.

    Raises:
        OSError: as ``os.write``; ENOSPC if a write makes no progress, which would otherwise loop forever.
    """
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def sync_folder(folder: str | Path) -> None:
    """fsync ``folder``, so that a file created in it survives a power cut."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:_SHOWN_LINES])) + (
        f", … ({len(numbers)} in all)" if len(numbers) > _SHOWN_LINES else ""
    )
    return f"line{'s' if len(numbers) > 1 else ''} {shown}"


@dataclass
class AnswerFile:
    """What an observer file holds: its answers, the line of each, and its skipped lines by reason."""

    path: Path
    answers: list[dict] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    #: Reason (a key of :data:`SKIP_REASONS`) → the numbers of the lines skipped for it.
    skipped: dict[str, list[int]] = field(default_factory=dict)

    @property
    def observer(self) -> str | None:
        """The observer the first answer names; None without an answer."""
        return self.answers[0]["observer"] if self.answers else None

    def skip_summary(self) -> str:
        """The skipped lines in words, e.g. ``1 cut off (line 9), 2 not JSON (lines 3, 7)``."""
        return ", ".join(f"{len(numbers)} {reason} ({_lines(numbers)})" for reason, numbers in self.skipped.items())


def _skip_reason(line: bytes, observer: str | None, answered: set[tuple[str, str]]) -> tuple[str | None, dict | None]:
    """Why ``line`` (without its newline) is no answer, else (None, its record)."""
    if line.endswith(CUT_OFF_MARK):
        return "cut off", None
    try:
        record = json.loads(line)
    except (
        ValueError,
        RecursionError,
    ):  # JSONDecodeError, UnicodeDecodeError; json gives up on deep nesting, which no answer has
        return "not JSON", None
    if not isinstance(record, dict):
        return "not an object", None
    if not all(isinstance(record.get(key), str) for key in FIELDS) or not OBSERVER_ID.match(record["observer"]):
        return "missing or invalid fields", None
    if observer is not None and record["observer"] != observer:
        return "another observer", None
    if (record["observer"], record["trial"]) in answered:
        return "repeated trial", None
    return None, record


def read_answers(path: str | Path, observer: str | None = None) -> AnswerFile:
    """The answers of an observer file, in order, and its skipped lines counted by reason.

    Args:
        path: The file; a missing file has no answers.
        observer: The observer the file belongs to (the server's view): answers naming another are
            skipped. None (the analysis's view): every observer's answers are kept, for
            :func:`read_folder` to check.

    Raises:
        StorageError: the file exists but cannot be read.
    """
    path = Path(path)
    result = AnswerFile(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return result
    except OSError as error:
        raise StorageError(path, "cannot be read", error) from None
    *lines, tail = data.split(b"\n")
    answered: set[tuple[str, str]] = set()
    for number, line in enumerate(lines, 1):
        reason, record = _skip_reason(line, observer, answered)
        if reason is not None:
            result.skipped.setdefault(reason, []).append(number)
            continue
        answered.add((record["observer"], record["trial"]))
        result.answers.append(record)
        result.lines.append(number)
    if tail:  # no newline: the write of this line never finished, so it was never confirmed
        result.skipped.setdefault("cut off", []).append(len(lines) + 1)
    if result.skipped:
        total = len(lines) + bool(tail)
        legend = "; ".join(f"{reason}: {SKIP_REASONS[reason]}" for reason in result.skipped)
        LOG.warning(
            "%s: %d of %d lines skipped: %s (%s)",
            path,
            sum(map(len, result.skipped.values())),
            total,
            result.skip_summary(),
            legend,
        )
    return result


class ObserverFile:
    """The answers of one observer, appended durably; thread-safe.

    Args:
        path: The observer's answer file.
        observer: Their id; lines of other observers in the file are skipped, never counted as theirs.

    Raises:
        StorageError: the file exists but cannot be read.
    """

    def __init__(self, path: str | Path, observer: str):
        self.path = Path(path)
        self.observer = observer
        self.lock = threading.Lock()
        self.answered = {record["trial"] for record in read_answers(self.path, observer).answers}

    def append(self, record: dict) -> None:
        """Append ``record`` as one line, whole and fsynced (and, for a new file, its folder).

        Raises:
            StorageError: nothing of ``record`` is on disk (every byte written was removed again).
        """
        line = json.dumps(record, sort_keys=True).encode() + b"\n"
        created = not self.path.exists()
        action = f"answer to trial {record['trial']} not saved"
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise StorageError(self.path, action, error) from None
        length = None
        try:
            length = os.fstat(descriptor).st_size
            if length and os.pread(descriptor, 1, length - 1) != b"\n":
                line = CUT_OFF_MARK + b"\n" + line  # end the cut-off line as never confirmed, then a fresh one
            write_all(descriptor, line)
            os.fsync(descriptor)
            if created:
                sync_folder(self.path.parent)
        except OSError as error:
            self._undo(descriptor, length, created)
            raise StorageError(self.path, action, error) from None
        finally:
            os.close(descriptor)
        self.answered.add(record["trial"])

    def _undo(self, descriptor: int, length: int | None, created: bool) -> None:
        """Remove every byte of a failed append: the file it created, or what it wrote after ``length``."""
        try:
            if created:
                os.unlink(self.path)
            elif length is not None:
                os.ftruncate(descriptor, length)
                os.fsync(descriptor)
        except OSError as error:
            # A part of the line stays unterminated, and reading skips it as cut off; only a line whose
            # fsync failed stays whole, and may count although the observer was told it did not.
            LOG.error(
                "%s: a failed answer could not be removed again (%s); a partial line is skipped as cut off when read",
                self.path,
                error.strerror,
            )


class FolderLock:
    """An exclusive lock on a responses folder, held by the one server that writes into it.

    Two servers on one folder would each accept the same trial (each keeps its own record of what
    is answered). The lock is an ``flock`` on ``<folder>/.lock``, which the kernel releases when its
    holder exits in any way, kill -9 included, so a crashed server never blocks its restart.

    Raises:
        ValueError: naming the folder and the holder's pid, if another server holds it; naming the
            folder and the reason, if the lock file cannot be written there (a read-only or full
            file system: no answer could be saved either).
    """

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise ValueError(
                f"{folder}: answers cannot be saved there ({error.strerror}); serve into a writable responses folder"
            ) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise ValueError(
                f"{folder}: in use by another study server (pid {holder}); stop it, or serve into another responses"
                " folder"
            ) from None
        except BaseException:
            os.close(descriptor)
            raise
        try:
            os.ftruncate(descriptor, 0)
            write_all(descriptor, f"{os.getpid()}\n".encode())
        except OSError as error:
            os.close(descriptor)
            raise ValueError(
                f"{folder}: answers cannot be saved there ({error.strerror}); free space or serve into another"
                " responses folder"
            ) from None
        self._descriptor: int | None = descriptor

    def close(self) -> None:
        """Release the lock (idempotent); the file stays, so that no other server races on its creation."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
