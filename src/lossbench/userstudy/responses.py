"""Observers' answers: one append-only JSON-lines file per observer, and count matrices from them.

**The analysis** (:func:`read_folder`, :func:`observer_counts`) takes the observer of a file from
its answers' ``observer``, not from the file's name. A file with answers of two observers, and an
observer with answers in two files (a copy such as ``o1 copy.jsonl``), are refused in one line
naming the files. A file without a confirmed answer (empty, or only skipped lines) counts as no
observer; the log, ``skipped_lines.csv`` (:func:`write_skipped`) and the JOD table's caption
(:func:`skip_note`) say so, and count the skipped lines per file and reason.

One file's format, reading and durable writing are :mod:`lossbench.userstudy.answers`, whose public names are
imported here too.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lossbench.core.io import read_csv, write_rows
from lossbench.userstudy.answers import (
    CUT_OFF_MARK,
    FIELDS,
    LOCK,
    OBSERVER_ID,
    SKIP_REASONS,
    AnswerFile,
    FolderLock,
    ObserverFile,
    StorageError,
    check_observer,
    read_answers,
    sync_folder,
    write_all,
)

LOG = logging.getLogger(__name__)
#: The observer column of :func:`write_skipped` for a file without a confirmed answer.
NO_OBSERVER = "none (no confirmed answer)"

__all__ = [
    "AnswerFile",
    "CUT_OFF_MARK",
    "FIELDS",
    "FolderLock",
    "LOCK",
    "NO_OBSERVER",
    "OBSERVER_ID",
    "ObserverFile",
    "SKIP_REASONS",
    "StorageError",
    "check_observer",
    "observer_counts",
    "read_answers",
    "read_folder",
    "read_skipped",
    "skip_note",
    "sync_folder",
    "write_all",
    "write_skipped",
]


def read_folder(folder: str | Path) -> list[AnswerFile]:
    """Every answer file (``*.jsonl``) of ``folder``, read and checked; see the module's docstring.

    Raises:
        ValueError: in one line naming the files: no answer file, none with a confirmed answer, a
            file with answers of two observers, or an observer with answers in two files.
        StorageError: a file cannot be read.
    """
    paths = sorted(Path(folder).glob("*.jsonl"))
    if not paths:
        raise ValueError(f"{folder}: no observer files (<observer>.jsonl)")
    files = [read_answers(path) for path in paths]
    owners: dict[str, Path] = {}
    for answer_file in files:
        first_lines: dict[str, int] = {}
        for line, record in zip(answer_file.lines, answer_file.answers):
            first_lines.setdefault(record["observer"], line)
        if len(first_lines) > 1:
            named = ", ".join(f"{observer} from line {line}" for observer, line in first_lines.items())
            raise ValueError(
                f"{answer_file.path}: answers of {len(first_lines)} observers ({named}); an answer file holds one"
                " observer's answers"
            )
        if not first_lines:
            skipped = sum(map(len, answer_file.skipped.values()))
            content = f"{skipped} line{'s' if skipped != 1 else ''}, all skipped" if skipped else "empty"
            LOG.warning("%s: no confirmed answer (%s): counted as no observer", answer_file.path, content)
            continue
        observer = answer_file.observer
        if observer in owners:
            raise ValueError(
                f"observer {observer}: answers in two files, {owners[observer]} and {answer_file.path}; keep one (a"
                " copy would count their answers twice)"
            )
        owners[observer] = answer_file.path
    if not owners:
        raise ValueError(f"{folder}: no observer file holds a confirmed answer")
    return files


def observer_counts(manifest: dict, files: list[AnswerFile]) -> tuple[list[str], list[str], np.ndarray]:
    """Per-observer count matrices from the answer files of :func:`read_folder`; files without answers are left out.

    Returns:
        (observers, conditions, counts), observers sorted, counts of shape (observers, N, N),
        ``counts[k, i, j]`` the times observer k chose condition i over condition j.

    Raises:
        ValueError: naming the file and line of an answer that does not fit the manifest.
    """
    conditions = manifest["conditions"]
    trials = {trial["id"]: trial for trial in manifest["trials"]}
    matrices = {}
    for answer_file in files:
        if not answer_file.answers:
            continue
        counts = np.zeros((len(conditions), len(conditions)))
        for line, record in zip(answer_file.lines, answer_file.answers):
            trial = trials.get(record["trial"])
            if trial is None or {record["chosen"], record["other"]} != {trial["a"], trial["b"]}:
                raise ValueError(
                    f"{answer_file.path}:{line}: answer to trial {record['trial']!r} ({record['chosen']} over"
                    f" {record['other']}) does not match a trial of the manifest"
                )
            counts[conditions.index(record["chosen"]), conditions.index(record["other"])] += 1
        matrices[answer_file.observer] = counts
    observers = sorted(matrices)
    return observers, conditions, np.stack([matrices[observer] for observer in observers])


_SKIPPED_FIELDS = ["file", "observer", "reason", "lines", "line_numbers"]


def write_skipped(files: list[AnswerFile], path: str | Path) -> list[dict[str, str]]:
    """Write the skipped lines per file and reason as CSV (``file,observer,reason,lines,line_numbers``); returns the
    rows.

    A file without a confirmed answer has observer :data:`NO_OBSERVER`; an empty one a row of reason ``empty``.
    """
    rows = []
    for answer_file in files:
        observer = answer_file.observer or NO_OBSERVER
        if not answer_file.answers and not answer_file.skipped:
            rows.append(
                {
                    "file": answer_file.path.name,
                    "observer": observer,
                    "reason": "empty",
                    "lines": "0",
                    "line_numbers": "",
                }
            )
        for reason, numbers in answer_file.skipped.items():
            rows.append(
                {
                    "file": answer_file.path.name,
                    "observer": observer,
                    "reason": reason,
                    "lines": str(len(numbers)),
                    "line_numbers": " ".join(map(str, numbers)),
                }
            )
    write_rows(path, rows, _SKIPPED_FIELDS)
    return rows


def read_skipped(path: str | Path) -> list[dict[str, str]]:
    """The rows of :func:`write_skipped`."""
    header, rows = read_csv(path)
    if header != _SKIPPED_FIELDS:
        raise ValueError(f"{path}: expected the header {','.join(_SKIPPED_FIELDS)}, got {','.join(header)}")
    return rows


def skip_note(rows: list[dict[str, str]]) -> str:
    """One sentence for a caption and the log: the lines skipped per file and reason, and the files that count as no
    observer."""
    per_file: dict[str, list[str]] = {}
    for row in rows:
        if int(row["lines"]):
            per_file.setdefault(row["file"], []).append(f"{row['lines']} {row['reason']}")
    skipped = sum(int(row["lines"]) for row in rows)
    files = "; ".join(f"{name}: " + ", ".join(parts) for name, parts in per_file.items())
    note = (
        f"Answer files: {skipped} line{'s' if skipped != 1 else ''} skipped ({files})"
        if skipped
        else "Answer files: no line skipped"
    )
    unobserved = list(dict.fromkeys(row["file"] for row in rows if row["observer"] == NO_OBSERVER))
    if unobserved:
        note += f"; without a confirmed answer, so no observer: {', '.join(unobserved)}"
    return note + "."
