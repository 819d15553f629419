"""Issue 27: answers on a full, read-only or failing disk, and what the analysis accepts from answer files.

A confirmed answer is one whose whole line is on disk: failures are injected into the file
operations (everywhere), and where this process may mount, a real 64 KiB tmpfs fills up and turns
read-only under a running server. The analysis names its observers from the answers, refuses
copies and mixed files in one line, and counts every skipped line by reason.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lossbench.userstudy.__main__ import main as cli
from lossbench.userstudy.counts import read_counts
from lossbench.userstudy.responses import (
    CUT_OFF_MARK,
    LOCK,
    ObserverFile,
    StorageError,
    observer_counts,
    read_answers,
    read_folder,
)
from lossbench.userstudy.server import Study, StudyServer
from lossbench.userstudy.sessions import SESSIONS
from lossbench.userstudy.stimuli import load_manifest, plan

from test_userstudy_app import Running, _text, register, state, stimuli  # noqa: F401 (stimuli: the fixture)

NO_SPACE = (
    "Your answer was not saved: the study's disk is full. Please tell the person running the study, then try again."
)
UNWRITABLE = (
    "Your answer was not saved: the study's files cannot be written or read. Please tell the person running the study,"
    " then try again."
)


class Faults:
    """File operations on one path failing as a full, read-only or broken disk makes them fail.

    Args:
        monkeypatch: The test's monkeypatch, which undoes the faults.
        path: The file whose operations fail; every other file is untouched.
        fault: ``short+ENOSPC`` (part of a write lands, then the disk is full), ``short+stall`` (part
            lands, then writes make no progress), ``EDQUOT`` (no write lands), ``fsync-EIO`` (the
            data cannot be synced), ``EROFS`` (the file cannot be opened for writing), or
            ``trickle`` (every write lands at most 7 bytes, and nothing fails).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: Path, fault: str):
        self.active = True
        descriptors: set[int] = set()  # open on ``path``
        part_written: set[int] = set()  # of those, the ones a short write has gone to
        real_open, real_write, real_fsync = os.open, os.write, os.fsync

        def fail(code: int) -> OSError:
            return OSError(code, os.strerror(code))

        def open_(file, flags, mode=0o777, *, dir_fd=None):
            if self.active and Path(file) == path and fault == "EROFS" and flags & (os.O_WRONLY | os.O_RDWR):
                raise fail(errno.EROFS)
            descriptor = real_open(file, flags, mode, dir_fd=dir_fd)
            part_written.discard(descriptor)
            if Path(file) == path:
                descriptors.add(descriptor)
            else:
                descriptors.discard(descriptor)
            return descriptor

        def write(descriptor, data):
            if not (self.active and descriptor in descriptors) or fault in ("fsync-EIO", "EROFS"):
                return real_write(descriptor, data)
            if fault == "trickle":
                return real_write(descriptor, bytes(data[:7]))
            if fault == "EDQUOT":
                raise fail(errno.EDQUOT)
            if descriptor not in part_written:
                part_written.add(descriptor)
                return real_write(descriptor, bytes(data[: len(data) // 2]))
            if fault == "short+ENOSPC":
                raise fail(errno.ENOSPC)
            return 0

        def fsync(descriptor):
            if self.active and fault == "fsync-EIO" and descriptor in descriptors:
                raise fail(errno.EIO)
            return real_fsync(descriptor)

        monkeypatch.setattr(os, "open", open_)
        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fsync", fsync)


def _record(trial: str, observer: str = "alice", chosen: str = "l1", other: str = "l2") -> dict:
    return {"observer": observer, "trial": trial, "chosen": chosen, "other": other}


FAULTS = {
    "short+ENOSPC": ("No space left on device", True),
    "short+stall": ("No space left on device", True),
    "EDQUOT": ("Disk quota exceeded", True),
    "fsync-EIO": ("Input/output error", False),
    "EROFS": ("Read-only file system", False),
}


@pytest.mark.parametrize("existing", [True, False], ids=["appending", "first-answer"])
@pytest.mark.parametrize("fault", FAULTS)
def test_no_answer_is_confirmed_without_its_full_line_on_disk(tmp_path, monkeypatch, fault, existing):
    """Issue 27: ObserverFile.append ignored a short os.write, and the server confirmed a torn prefix."""
    path = tmp_path / "alice.jsonl"
    if existing:
        ObserverFile(path, "alice").append(_record("t0000"))
    before = path.read_bytes() if existing else None
    log = ObserverFile(path, "alice")
    faults = Faults(monkeypatch, path, fault)
    with pytest.raises(StorageError) as failed:
        log.append(_record("t0001"))
    strerror, full = FAULTS[fault]
    assert str(failed.value) == f"{path}: answer to trial t0001 not saved: {strerror}" and failed.value.full is full
    # Nothing of the answer stays: the file as it was, or none at all; and the trial is still open.
    assert (path.read_bytes() if existing else path.exists()) == (before if existing else False)
    assert log.answered == ({"t0000"} if existing else set())
    faults.active = False
    log.append(_record("t0001"))  # the observer answers the same trial again
    assert [record["trial"] for record in read_answers(path).answers] == (["t0000"] if existing else []) + ["t0001"]
    assert read_answers(path).skipped == {}


def test_short_writes_are_continued_to_the_end_of_the_line(tmp_path, monkeypatch):
    path = tmp_path / "alice.jsonl"
    Faults(monkeypatch, path, "trickle")
    ObserverFile(path, "alice").append(_record("t0000"))
    ObserverFile(path, "alice").append(_record("t0001"))
    assert [record["trial"] for record in read_answers(path).answers] == ["t0000", "t0001"]


def _post_answer(server: Running, observer: str) -> tuple[int, dict]:
    trial = server.state(observer)["trial"]["id"]
    return server.answer(observer, trial, "left")


@pytest.mark.parametrize(("fault", "status", "error"), [("short+ENOSPC", 507, NO_SPACE), ("EROFS", 503, UNWRITABLE)])
def test_the_server_answers_an_unsaved_answer_with_an_error_and_one_log_line(
    stimuli, tmp_path, monkeypatch, caplog, capfd, fault, status, error
):
    responses = tmp_path / "responses"
    server = Running(stimuli, responses, ["alice"])
    try:
        assert _post_answer(server, "alice")[0] == 200
        before = (responses / "alice.jsonl").read_bytes()
        faults = Faults(monkeypatch, responses / "alice.jsonl", fault)
        trial = server.state("alice")["trial"]["id"]
        assert server.answer("alice", trial, "left") == (status, {"error": error})
        assert (responses / "alice.jsonl").read_bytes() == before and server.state("alice")["trial"]["id"] == trial
        faults.active = False
        assert server.answer("alice", trial, "left")[0] == 200
    finally:
        server.close()
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert errors == [f"{responses / 'alice.jsonl'}: answer to trial {trial} not saved: {FAULTS[fault][0]}"]
    assert "Traceback" not in capfd.readouterr().err
    assert sorted(path.name for path in responses.iterdir()) == [LOCK, SESSIONS, "alice.jsonl"]  # nothing left behind


def test_a_registration_that_cannot_be_saved_leaves_nothing_behind(stimuli, tmp_path, monkeypatch, caplog):
    responses = tmp_path / "responses"
    server = Running(stimuli, responses, ["alice"])
    try:
        faults = Faults(monkeypatch, responses / SESSIONS / "alice", "short+ENOSPC")
        status, token, _, page = register(server.port, "alice")
        assert (status, token) == (507, None)
        assert (
            "You could not be registered: the study's disk is full. Please tell the person running the study, then try"
            " again." in _text(page)
        )
        assert sorted(path.name for path in responses.iterdir()) == [LOCK]
        faults.active = False
        status, token, _, _ = register(server.port, "alice")
        assert status == 303 and state(server.port, "alice", token)["done"] == 0
    finally:
        server.close()
    assert f"{responses / SESSIONS / 'alice'}: session not saved: No space left on device" in caplog.text


def test_an_unreadable_answer_file_is_a_503_not_a_lockout(stimuli, tmp_path, caplog):
    responses = tmp_path / "responses"
    server = Running(stimuli, responses, ["alice"])
    try:
        token = server.token("alice")
        (responses / "alice.jsonl").mkdir()  # reading it fails, as on a failing disk
        assert state(server.port, "alice", token) == {
            "error": (
                "Your progress could not be read: the study's files cannot be written or read. Please tell the person"
                " running the study, then try again."
            )
        }
        (responses / "alice.jsonl").rmdir()
        assert state(server.port, "alice", token)["done"] == 0  # read again, once it can be
    finally:
        server.close()
    assert f"{responses / 'alice.jsonl'}: cannot be read: Is a directory" in caplog.text


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (16 pages), unmounted afterwards; skipped where this process may not mount (not root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if (
        not shutil.which("mount")
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected faults test the same code")
    yield disk
    subprocess.run(["umount", "--recursive", str(disk)], check=True)


def _fill(folder: Path) -> Path:
    """Fill the disk of ``folder`` to its last byte with one file; returns it."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 512)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


def test_on_a_full_tmpfs_no_answer_is_confirmed_torn(stimuli, small_disk, caplog, capfd):
    """The issue's case: the line crosses into a page that the full disk cannot give, so only a prefix fits."""
    responses = small_disk / "responses"
    first = plan(load_manifest(stimuli / "manifest.json"), "alice", 0)[0]
    # alice's first answer, padded (JSON allows spaces) to end 100 bytes before the file's first page does.
    line = json.dumps(
        {
            **_record(first.id, chosen=first.left, other=first.right),
            "image": first.image,
            "left": first.left,
            "right": first.right,
            "position": 0,
        }
    )
    responses.mkdir()
    (responses / "alice.jsonl").write_text(line[:-1] + " " * (4096 - 100 - len(line) - 1) + "}\n")
    server = Running(stimuli, responses, ["alice"])
    try:
        token = server.token("alice")
        filler = _fill(small_disk)
        before = (responses / "alice.jsonl").read_bytes()
        trial = state(server.port, "alice", token)["trial"]["id"]
        assert server.answer("alice", trial, "right") == (507, {"error": NO_SPACE})
        assert (responses / "alice.jsonl").read_bytes() == before  # no torn prefix
        filler.unlink()
        assert server.answer("alice", trial, "right")[0] == 200
        # Read-only under the running server (a read-only bind mount: the server's open lock file keeps the
        # tmpfs itself from turning read-only): refused with a 503, and the file is unchanged.
        subprocess.run(["mount", "--bind", str(responses), str(responses)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(responses)], check=True)
        before = (responses / "alice.jsonl").read_bytes()
        assert _post_answer(server, "alice") == (503, {"error": UNWRITABLE})
        assert (responses / "alice.jsonl").read_bytes() == before
    finally:
        server.close()
    assert [answer["trial"] for answer in read_answers(responses / "alice.jsonl").answers] == [first.id, trial]
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert errors[0] == f"{responses / 'alice.jsonl'}: answer to trial {trial} not saved: No space left on device"
    assert errors[1].startswith(f"{responses / 'alice.jsonl'}: answer to trial ") and errors[1].endswith(
        " not saved: Read-only file system"
    )
    # A server refuses to start on the read-only folder, or to make one there, in one line naming it.
    with pytest.raises(
        ValueError,
        match=rf"^{re.escape(str(responses / 'new'))}: cannot make the responses folder \(Read-only file system\)$",
    ):
        Study(stimuli, responses / "new", ["alice"])
    with pytest.raises(
        SystemExit,
        match=(
            rf"^error: {re.escape(str(responses))}: answers cannot be saved there \(Read-only file system\); serve into"
            r" a writable responses folder$"
        ),
    ):
        cli(["serve", "--stimuli", str(stimuli), "--responses", str(responses), "--observer", "alice", "--port", "0"])
    assert "Traceback" not in capfd.readouterr().err


def test_a_server_refuses_to_start_on_a_full_disk(stimuli, small_disk):
    responses = small_disk / "responses"
    responses.mkdir()
    _fill(small_disk)
    with pytest.raises(
        ValueError,
        match=(
            rf"^{re.escape(str(responses))}: answers cannot be saved there \(No space left on device\); free space or"
            r" serve into another responses folder$"
        ),
    ):
        StudyServer(Study(stimuli, responses, ["alice"]), "127.0.0.1", 0)
    assert [path.name for path in responses.iterdir()] == [
        LOCK
    ]  # the lock file, empty, as every folder a server used keeps


# --- What the analysis reads (issue 27, item 2) ---


def _write_lines(path: Path, lines: list[bytes | dict]) -> None:
    path.write_bytes(b"".join(line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n" for line in lines))


def test_every_skipped_line_is_counted_by_its_reason_in_one_warning(tmp_path, caplog):
    path = tmp_path / "alice.jsonl"
    _write_lines(
        path,
        [
            _record("t0000"),
            b"42\n",
            b"[1, 2]\n",
            b"null\n",
            b"garbage\n",
            {"trial": "t0001"},
            _record("t0002", observer="bob"),
            _record("t0000", chosen="l2", other="l1"),
            b'{"trial": "t00' + CUT_OFF_MARK + b"\n",
            _record("t0003"),
            b'{"observer": "alice", "tri',
        ],
    )
    read = read_answers(path, "alice")
    assert [answer["trial"] for answer in read.answers] == ["t0000", "t0003"] and read.lines == [1, 10]
    assert read.skipped == {
        "not an object": [2, 3, 4],
        "not JSON": [5],
        "missing or invalid fields": [6],
        "another observer": [7],
        "repeated trial": [8],
        "cut off": [9, 11],
    }
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"{path}: 9 of 11 lines skipped: 3 not an object (lines 2, 3, 4), 1 not JSON (line 5), 1 missing or invalid"
        " fields (line 6), 1 another observer (line 7), 1 repeated trial (line 8), 2 cut off (lines 9, 11) ("
    )
    assert (
        "cut off: an answer interrupted before it was confirmed" in warnings[0]
        and "not JSON: not a JSON value" in warnings[0]
    )
    # The analysis keeps every observer's answers, for read_folder to refuse the mixed file.
    assert [answer["observer"] for answer in read_answers(path).answers] == ["alice", "bob", "alice"]


def test_lines_that_are_no_answer_never_lock_an_observer_out(stimuli, tmp_path, caplog):
    """Issue 27: a line `42` gave a traceback on reading and locked its observer out of the server."""
    responses = tmp_path / "responses"
    responses.mkdir()
    first = plan(load_manifest(stimuli / "manifest.json"), "alice", 0)[0]
    _write_lines(
        responses / "alice.jsonl",
        [b"42\n", b"[1, 2]\n", b"null\n", _record(first.id, chosen=first.left, other=first.right), b"[" * 5000 + b"\n"],
    )
    server = Running(stimuli, responses, ["alice"])
    try:
        assert server.state("alice")["done"] == 1
        assert _post_answer(server, "alice")[0] == 200
    finally:
        server.close()
    assert "alice.jsonl: 4 of 5 lines skipped: 3 not an object (lines 1, 2, 3), 1 not JSON (line 5)" in caplog.text


def _answers(folder: Path, responses: Path, observers: list[str]) -> None:
    """Every trial of each observer, answered through the app's logic (left each time)."""
    study = Study(folder, responses, observers)
    for observer in observers:
        for trial in study.plans[observer]:
            assert study.answer(observer, trial.id, "left")[0] == 200


def _analyse(folder: Path, responses: Path, out: Path) -> None:
    cli(
        [
            "analyse",
            "--manifest",
            str(folder / "manifest.json"),
            "--responses",
            str(responses),
            "--out",
            str(out),
            "--samples",
            "20",
        ]
    )


def test_a_copied_answer_file_is_refused_not_a_second_observer(stimuli, tmp_path, capsys):
    """Issue 27: `o1 copy.jsonl` counted as an extra observer."""
    responses = tmp_path / "responses"
    _answers(stimuli, responses, ["o1", "o2"])
    shutil.copy(responses / "o1.jsonl", responses / "o1 copy.jsonl")
    with pytest.raises(
        SystemExit,
        match=(
            rf"^error: observer o1: answers in two files, {re.escape(str(responses / 'o1 copy.jsonl'))} and"
            rf" {re.escape(str(responses / 'o1.jsonl'))}; keep one \(a copy would count their answers twice\)$"
        ),
    ):
        _analyse(stimuli, responses, tmp_path / "out")
    # Observers are named by their answers, not by file names: a renamed file is still o1.
    (responses / "o1.jsonl").unlink()
    observers, _, counts = observer_counts(load_manifest(stimuli / "manifest.json"), read_folder(responses))
    assert observers == ["o1", "o2"] and counts.sum() == 24
    assert "Traceback" not in capsys.readouterr().err


def test_a_file_with_answers_of_two_observers_is_refused(stimuli, tmp_path):
    """Issue 27: a record naming another observer was accepted silently."""
    responses = tmp_path / "responses"
    _answers(stimuli, responses, ["o1", "o2"])
    with open(responses / "o1.jsonl", "ab") as handle:
        handle.write((responses / "o2.jsonl").read_bytes().splitlines(keepends=True)[0])
    with pytest.raises(
        SystemExit,
        match=(
            rf"^error: {re.escape(str(responses / 'o1.jsonl'))}: answers of 2 observers \(o1 from line 1, o2 from line"
            r" 13\); an answer file holds one observer's answers$"
        ),
    ):
        _analyse(stimuli, responses, tmp_path / "out")


def test_skipped_lines_and_observerless_files_reach_the_log_the_csv_and_the_jod_table(
    stimuli, tmp_path, capsys, caplog
):
    """Issue 27: non-object lines gave a traceback in analyse; empty files and skipped lines went uncounted."""
    responses = tmp_path / "responses"
    _answers(stimuli, responses, ["o1", "o2"])
    with open(responses / "o1.jsonl", "ab") as handle:
        handle.write(b"42\n[1, 2]\nnull\n")
    with open(responses / "o2.jsonl", "ab") as handle:
        handle.write(b'{"observer": "o2", "tri')
    (responses / "o3.jsonl").write_bytes(b"")
    (responses / "o4.jsonl").write_bytes(b"not json\n")
    out = tmp_path / "out"
    _analyse(stimuli, responses, out)
    note = (
        "Answer files: 5 lines skipped (o1.jsonl: 3 not an object; o2.jsonl: 1 cut off; o4.jsonl: 1 not JSON); without"
        " a confirmed answer, so no observer: o3.jsonl, o4.jsonl."
    )
    assert note in capsys.readouterr().out and note in (out / "jod_table.md").read_text()
    assert f"{responses / 'o3.jsonl'}: no confirmed answer (empty): counted as no observer" in caplog.text
    assert f"{responses / 'o4.jsonl'}: no confirmed answer (1 line, all skipped): counted as no observer" in caplog.text
    with open(out / "skipped_lines.csv") as handle:
        rows = [tuple(row.values()) for row in csv.DictReader(handle)]
    assert rows == [
        ("o1.jsonl", "o1", "not an object", "3", "13 14 15"),
        ("o2.jsonl", "o2", "cut off", "1", "13"),
        ("o3.jsonl", "none (no confirmed answer)", "empty", "0", ""),
        ("o4.jsonl", "none (no confirmed answer)", "not JSON", "1", "1"),
    ]
    conditions, counts = read_counts(out / "observer_counts.csv")
    assert counts.shape == (2, 4, 4) and counts.sum() == 24


def test_a_session_file_cut_off_while_registering_holds_nobody(stimuli, tmp_path):
    """A crash between creating and writing a session file: its browser never got the cookie, so the id is free."""
    responses = tmp_path / "responses"
    (responses / SESSIONS).mkdir(parents=True)
    (responses / SESSIONS / "alice").write_bytes(b"3f2a")
    server = Running(stimuli, responses, ["alice"])
    try:
        status, token, _, _ = register(server.port, "alice")
        assert status == 303 and state(server.port, "alice", token)["done"] == 0
    finally:
        server.close()
