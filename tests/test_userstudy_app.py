"""User-study stimuli and collection app: plans, durable answers, bad input, path traversal, a load
test of concurrent observers, an observer's session in a real headless Chromium, and the server's
reliability cases (symlinks, cross-site answers, sessions only for the registering browser, idle and
slow clients, a second server, bad ports, security headers, vanished stimuli, kill -9 under load).
Every server listens on 127.0.0.1 only. Answer files on a full or read-only disk, and what the
analysis reads from them: tests/test_userstudy_storage.py.
"""

from __future__ import annotations

import csv
import errno
import html
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from PIL import Image

from lossbench.data.valset import write_images
from lossbench.flip import pixels_per_degree
from lossbench.userstudy import answers as answer_files
from lossbench.userstudy.__main__ import main as cli
from lossbench.userstudy.counts import read_counts
from lossbench.userstudy.responses import CUT_OFF_MARK, LOCK, ObserverFile, observer_counts, read_answers, read_folder
from lossbench.userstudy.server import SECONDS_PER_COMPARISON, Study, StudyServer
from lossbench.userstudy.sessions import SESSIONS
from lossbench.userstudy.stimuli import load_manifest, make_stimuli, plan
from lossbench.userstudy.study import PRACTICE
from lossbench.userstudy.viewing import conditions, distance_m

LOSSES = ["l1", "l2", "msssim", "flip"]
IMAGES = ["a", "b"]


@pytest.fixture(scope="module")
def stimuli(tmp_path_factory) -> Path:
    """Stimuli of 4 losses × 2 images (12 trials) made from small synthetic validation and output files."""
    root = tmp_path_factory.mktemp("stimuli")
    rng = np.random.default_rng(0)
    targets = {image: rng.random((3, 24, 40)).astype(np.float32) for image in IMAGES}
    write_images(root / "val.h5", {"input": targets.items(), "target": targets.items()})
    outputs = {}
    for loss in LOSSES:
        outputs[loss] = root / f"{loss}.h5"
        write_images(
            outputs[loss],
            {"output": [(image, np.clip(t + rng.normal(0, 0.1, t.shape), 0, 1)) for image, t in targets.items()]},
        )
    # evaluation.flip's defaults: 0.7 m from a 0.7 m wide 3840-pixel monitor.
    make_stimuli("denoise", root / "val.h5", outputs, IMAGES, root / "study", flicker_ms=100, viewing={})
    return root / "study"


class Running:
    """A study server on a free port of 127.0.0.1, in a background thread."""

    def __init__(self, stimuli: Path, responses: Path, observers: list[str], practice_trials: int = 0, **options):
        study = Study(stimuli, responses, observers, seed=0, practice_trials=practice_trials)
        self.server = StudyServer(study, "127.0.0.1", 0, **options)
        self.port = self.server.server_address[1]
        #: The session token of each observer that this client registered: its browser's cookie.
        self.tokens: dict[str, str | None] = {}
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, bytes]:
        return request(self.port, method, path, body, headers)

    def token(self, observer: str) -> str | None:
        """The observer's session token, registering them on first use as the start page's form does."""
        if observer not in self.tokens:
            self.tokens[observer] = register(self.port, observer)[1]
        return self.tokens[observer]

    def post(self, observer: str, body: bytes, **headers: str | None) -> tuple[int, dict]:
        """POST ``body`` as the observer's study page does; ``headers`` replace the page's (None: leave out)."""
        return post(self.port, observer, self.token(observer), body, **headers)

    def answer(self, observer: str, trial: str, choice: str) -> tuple[int, dict]:
        return self.post(observer, json.dumps({"trial": trial, "choice": choice}).encode())

    def state(self, observer: str) -> dict:
        return state(self.port, observer, self.token(observer))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, bytes]:
    return fetch(port, method, path, body, headers)[::2]


def fetch(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, str | None, bytes]:
    """Status, Content-Type and body of a request."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def cookie(observer: str, token: str | None) -> str | None:
    """The ``Cookie`` header of a browser holding ``token`` as the observer's session (None: no cookie)."""
    return None if token is None else f"study_{observer}={token}"


def register(
    port: int, observer: str, token: str | None = None, **headers: str | None
) -> tuple[int, str | None, dict, bytes]:
    """Submit the start page's form for ``observer`` from a browser holding ``token`` (if any).

    Returns:
        The status, the session token the response sets (None if it sets none), its headers and its body.
    """
    sent = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Origin": f"http://127.0.0.1:{port}",
        "Cookie": cookie(observer, token),
        **headers,
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
    try:
        connection.request(
            "POST",
            "/study",
            body=urlencode({"observer": observer}),
            headers={name: value for name, value in sent.items() if value is not None},
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    found = re.fullmatch(
        rf"study_{re.escape(observer)}=([A-Za-z0-9_-]{{43}}); Path=/; Max-Age=31536000; HttpOnly; SameSite=Strict",
        response.getheader("Set-Cookie") or "",
    )
    return response.status, found.group(1) if found else None, dict(response.getheaders()), body


def state(port: int, observer: str, token: str | None) -> dict:
    """The observer's state, as their study page reads it."""
    return json.loads(
        request(port, "GET", f"/api/{observer}/state", headers={"Cookie": cookie(observer, token)} if token else {})[1]
    )


def post(port: int, observer: str, token: str | None, body: bytes, **headers: str | None) -> tuple[int, dict]:
    """POST ``body`` to the observer's answers as their study page does; ``headers`` replace the page's (None: leave
    out)."""
    sent = {
        "Content-Type": "application/json",
        "Origin": f"http://127.0.0.1:{port}",
        "Cookie": cookie(observer, token),
        **headers,
    }
    status, answer = request(
        port,
        "POST",
        f"/api/{observer}/answer",
        body,
        {name: value for name, value in sent.items() if value is not None},
    )
    return status, json.loads(answer)


@pytest.fixture
def running(stimuli, tmp_path):
    server = Running(stimuli, tmp_path / "responses", ["alice", "bob"])
    yield server
    server.close()


def test_manifest_lists_every_pair_of_every_image_at_native_size(stimuli):
    manifest = load_manifest(stimuli / "manifest.json")
    assert len(manifest["trials"]) == len(IMAGES) * 6
    assert {frozenset((t["a"], t["b"])) for t in manifest["trials"]} == {
        frozenset(p)
        for p in [("l1", "l2"), ("l1", "msssim"), ("l1", "flip"), ("l2", "msssim"), ("l2", "flip"), ("msssim", "flip")]
    }
    entry = manifest["images"]["a"]
    assert Image.open(stimuli / entry["reference"]).size == (40, 24) == (entry["width"], entry["height"])
    assert Image.open(stimuli / entry["outputs"]["flip"]).mode == "RGB"


def test_missing_validation_image_is_named(stimuli, tmp_path):
    with pytest.raises(ValueError, match="no validation image 'nope'"):
        make_stimuli(
            "denoise",
            stimuli.parent / "val.h5",
            {loss: stimuli.parent / f"{loss}.h5" for loss in LOSSES},
            ["nope"],
            tmp_path,
        )


def test_plans_are_seeded_per_observer(stimuli):
    manifest = load_manifest(stimuli / "manifest.json")
    alice, again, bob = plan(manifest, "alice", 0), plan(manifest, "alice", 0), plan(manifest, "bob", 0)
    assert alice == again and alice != bob and alice != plan(manifest, "alice", 1)
    assert sorted(t.id for t in alice) == sorted(t["id"] for t in manifest["trials"])
    assert {t.left for t in alice} == set(LOSSES)  # sides vary
    assert [t.id for t in alice] != sorted(t.id for t in alice)  # order varies


def test_session_is_recorded_and_resumes_after_a_restart(stimuli, tmp_path):
    responses = tmp_path / "responses"
    first = Running(stimuli, responses, ["alice"])
    try:
        for _ in range(5):
            trial = first.state("alice")["trial"]
            assert first.answer("alice", trial["id"], "left")[0] == 200
    finally:
        first.close()
    second = Running(stimuli, responses, ["alice"])
    second.tokens = first.tokens  # the same browser, its session cookie kept across the restart
    try:
        state = second.state("alice")
        assert state["done"] == 5 and state["total"] == 12
        while state["trial"] is not None:
            status, state = second.answer("alice", state["trial"]["id"], "right")
            assert status == 200
        assert state["done"] == 12
    finally:
        second.close()
    answers = read_answers(responses / "alice.jsonl").answers
    assert [a["position"] for a in answers] == list(range(12))
    assert [a["chosen"] for a in answers] == [a["left"] for a in answers[:5]] + [a["right"] for a in answers[5:]]
    observers, conditions, counts = observer_counts(load_manifest(stimuli / "manifest.json"), read_folder(responses))
    assert observers == ["alice"] and conditions == LOSSES and counts.sum() == 12
    assert np.all((counts[0] + counts[0].T)[~np.eye(4, dtype=bool)] == 2)


def test_replayed_out_of_order_and_unknown_submissions_are_refused(running):
    trial = running.state("alice")["trial"]["id"]
    later = next(t.id for t in running.server.study.plans["alice"] if t.id != trial)
    assert running.answer("alice", later, "left")[0] == 409  # not the current trial
    assert running.answer("alice", trial, "left")[0] == 200
    assert running.answer("alice", trial, "right")[0] == 409  # replay
    assert running.answer("alice", "t9999", "left")[0] == 404
    assert running.answer("mallory", trial, "left")[0] == 404
    assert running.request("GET", "/api/mallory/state")[0] == 404
    assert running.request("GET", "/study/mallory")[0] == 404
    post = lambda body, **headers: running.post("alice", body, **headers)[0]  # noqa: E731
    assert post(b"{not json", **{"Content-Length": "9"}) == 400
    assert post(json.dumps({"trial": trial, "choice": "up"}).encode()) == 400
    assert post(json.dumps({"trial": trial, "choice": "left", "extra": 1}).encode()) == 400
    assert post(json.dumps(["left"]).encode()) == 400
    assert post(b"x" * 5000) == 400
    assert post(b"\xff\xfe") == 400
    assert len(read_answers(running.server.study.responses / "alice.jsonl").answers) == 1


@pytest.mark.parametrize(
    "path",
    [
        "/stimuli/../manifest.json",
        "/stimuli/%2e%2e/manifest.json",
        "/stimuli/manifest.json",
        "/stimuli/images/a/../../manifest.json",
        "/stimuli/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/stimuli//etc/passwd",
        "/stimuli/images%2fa%2freference.png%00",
        "/study/..%2f..%2fetc%2fpasswd",
        "/api/..%2Fresponses%2Falice/state",
        "/../../etc/passwd",
    ],
)
def test_nothing_outside_the_study_can_be_read(running, path):
    status, body = running.request("GET", path)
    assert status == 404 and b"root:" not in body and b"trials" not in body


def test_nothing_outside_the_responses_can_be_written(running, tmp_path):
    body = json.dumps({"trial": "t0000", "choice": "left"}).encode()
    for observer in ["..%2F..%2Fevil", "..", "%2e%2e%2fevil", "alice%2F..%2F..%2Fevil"]:
        assert running.request("POST", f"/api/{observer}/answer", body)[0] == 404
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [LOCK]  # the server's own lock only
    with pytest.raises(ValueError, match="observer id"):
        Study(running.server.study.stimuli, tmp_path / "r", ["../evil"])


def _text(page: bytes) -> str:
    """A page's text without its tags, its entities resolved and its whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.decode())).split())


def test_start_page_says_what_to_do_how_long_and_how_far_to_sit(running):
    status, content_type, body = fetch(running.port, "GET", "/")
    text = _text(body)
    assert status == 200 and content_type == "text/html; charset=utf-8"
    assert "Choose the side whose two images look more alike" in text and "← or → arrow key" in text
    # 12 comparisons at 10 s each.
    assert SECONDS_PER_COMPARISON == 10 and "12 comparisons, about 2 minutes (at roughly 10 s each)" in text
    assert (
        "Sit about 70 cm from the screen if it is a 70 cm wide monitor with 3840 pixels across (the study's viewing"
        " conditions)." in text
    )
    assert "67.0 pixels per degree of visual angle" in text and "sit 3840 times its pixel pitch away" in text


def test_viewing_conditions_keep_a_geometry_unless_pixels_per_degree_replace_it():
    assert distance_m(pixels_per_degree(0.7, 0.7, 3840), 0.7, 3840) == pytest.approx(
        0.7, rel=1e-6
    )  # the inverse of FLIP's formula
    geometry = conditions({"distance_m": 0.7, "monitor_width_m": 0.7, "monitor_pixels": 3840, "ppd": None})
    assert geometry == {"distance_m": 0.7, "monitor_width_m": 0.7, "monitor_pixels": 3840, "ppd": pixels_per_degree()}
    assert conditions(geometry) == geometry  # a recorded geometry and its own ppd
    assert conditions({"distance_m": 0.7, "monitor_width_m": 0.7, "monitor_pixels": 3840, "ppd": 40}) == {"ppd": 40.0}
    with pytest.raises(ValueError, match=r"^evaluation\.flip\.monitor_pixels: expected a positive number, got 0$"):
        conditions({"monitor_pixels": 0})


def test_with_pixels_per_degree_only_the_distance_names_the_display_it_assumes(stimuli, tmp_path):
    study = Study(stimuli, tmp_path / "responses", ["alice"], viewing=conditions({"ppd": 40}))
    text = _text(study.start_page())
    # 40 × (0.7 m / 3840) × 180 / π = 0.418 m.
    assert (
        "Sit about 42 cm from the screen if it is a 70 cm wide monitor with 3840 pixels across (the study gives pixels"
        " per degree only; this is the monitor this project assumes for the thesis)." in text
    )
    assert "40.0 pixels per degree" in text and "sit 2292 times its pixel pitch away" in text


def test_stimuli_without_viewing_conditions_need_them_given(stimuli, tmp_path):
    study = _copy(stimuli, tmp_path)
    manifest = json.loads((study / "manifest.json").read_text())
    del manifest["viewing"]
    (study / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        ValueError,
        match=(
            r"manifest\.json: no viewing conditions \(stimuli made without evaluation\.flip\): give them, e\.g\. serve"
            r" with --ppd P"
        ),
    ):
        Study(study, tmp_path / "responses", ["alice"])
    assert Study(study, tmp_path / "responses", ["alice"], viewing=conditions({"ppd": 40})).viewing == {"ppd": 40.0}
    with pytest.raises(
        ValueError, match=r"^viewing: viewing conditions hold distance_m but not monitor_width_m, monitor_pixels$"
    ):
        Study(study, tmp_path / "responses", ["alice"], viewing={"ppd": 40, "distance_m": 0.7})


def test_viewing_options_of_the_command_line(stimuli, tmp_path):
    base = [
        "stimuli",
        "--task",
        "denoise",
        "--valset",
        str(stimuli.parent / "val.h5"),
        "--image",
        "a",
        *(f"--output={loss}={stimuli.parent / f'{loss}.h5'}" for loss in LOSSES[:2]),
    ]
    cli([*base, "--folder", str(tmp_path / "ppd"), "--ppd", "40"])
    assert load_manifest(tmp_path / "ppd" / "manifest.json")["viewing"] == {"ppd": 40.0}
    cli([*base, "--folder", str(tmp_path / "near"), "--distance-m", "0.5"])
    near = load_manifest(tmp_path / "near" / "manifest.json")["viewing"]
    assert near == {
        "distance_m": 0.5,
        "monitor_width_m": 0.7,
        "monitor_pixels": 3840,
        "ppd": pytest.approx(pixels_per_degree(0.5, 0.7, 3840)),
    }
    with pytest.raises(
        SystemExit, match=r"^error: --ppd replaces the viewing geometry: give it or --distance-m, not both$"
    ):
        cli([*base, "--folder", str(tmp_path / "both"), "--ppd", "40", "--distance-m", "0.5"])
    with pytest.raises(SystemExit, match=r"^error: viewing options\.ppd: expected a positive number, got -1\.0$"):
        cli(
            [
                "serve",
                "--stimuli",
                str(stimuli),
                "--responses",
                str(tmp_path / "responses"),
                "--observer",
                "alice",
                "--ppd",
                "-1",
            ]
        )


def test_an_unknown_observer_id_gets_a_page_saying_so(running):
    status, content_type, body = fetch(running.port, "GET", "/study/alic")
    text = _text(body)
    assert status == 404 and content_type == "text/html; charset=utf-8"
    assert "No observer with the id alic is registered for this study." in text and "Check the spelling" in text
    assert b'<a href="/">enter your id again</a>' in body
    status, _, body = fetch(running.port, "GET", "/study/%3Cimg%20src%3Dx%3E")
    assert status == 404 and b"&lt;img src=x&gt;" in body and b"<img" not in body
    # The app's scripts still get JSON.
    assert fetch(running.port, "GET", "/api/alic/state")[1:] == ("application/json", b'{"error": "unknown observer"}')


def test_stimuli_are_served(running):
    state = running.state("bob")
    status, body = running.request("GET", state["trial"]["left"])
    assert status == 200 and body.startswith(b"\x89PNG")


def _record(trial: str, chosen: str = "l1", other: str = "l2", observer: str = "alice") -> dict:
    return {"observer": observer, "trial": trial, "chosen": chosen, "other": other}


@pytest.mark.parametrize(
    "cut", [b'{"trial": "t00', json.dumps(_record("t0001")).encode()], ids=["prefix", "whole-line-without-newline"]
)
def test_torn_last_line_is_skipped_and_never_merged(tmp_path, caplog, cut):
    path = tmp_path / "alice.jsonl"
    ObserverFile(path, "alice").append(_record("t0000"))
    with open(path, "ab") as handle:
        handle.write(cut)  # a write cut off by a crash, never confirmed: even a whole line without its newline
    log = ObserverFile(path, "alice")
    assert log.answered == {"t0000"}
    assert (
        "alice.jsonl: 1 of 2 lines skipped: 1 cut off (line 2) (cut off: an answer interrupted before it was confirmed)"
        in caplog.text
    )
    log.append(_record("t0002"))
    read = read_answers(path)
    assert [a["trial"] for a in read.answers] == ["t0000", "t0002"] and read.skipped == {"cut off": [2]}
    assert cut + CUT_OFF_MARK + b"\n" in path.read_bytes()  # what was there stays there, marked as never confirmed


def test_an_observer_file_without_a_confirmed_answer_is_no_observer(stimuli, tmp_path, caplog):
    manifest = load_manifest(stimuli / "manifest.json")
    trial = manifest["trials"][0]
    ObserverFile(tmp_path / "alice.jsonl", "alice").append(_record(trial["id"], trial["a"], trial["b"]))
    (tmp_path / "bob.jsonl").write_bytes(b'{"trial": "t00')  # cut off before its first answer was confirmed
    (tmp_path / "carol.jsonl").write_bytes(b"")
    observers, _, counts = observer_counts(manifest, read_folder(tmp_path))
    assert observers == ["alice"] and counts.shape[0] == 1
    assert f"{tmp_path / 'bob.jsonl'}: no confirmed answer (1 line, all skipped): counted as no observer" in caplog.text
    assert f"{tmp_path / 'carol.jsonl'}: no confirmed answer (empty): counted as no observer" in caplog.text
    (tmp_path / "alice.jsonl").unlink()
    with pytest.raises(ValueError, match=r": no observer file holds a confirmed answer$"):
        read_folder(tmp_path)


def test_concurrent_observers_lose_no_answer(stimuli, tmp_path):
    observers = [f"obs{index:02d}" for index in range(16)]
    server = Running(stimuli, tmp_path / "responses", observers)

    def session(observer: str) -> int:
        answered = 0
        state = server.state(observer)
        while state["trial"] is not None:
            status, state = server.answer(observer, state["trial"]["id"], "left" if answered % 2 else "right")
            assert status == 200, state
            answered += 1
        return answered

    try:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            done = list(pool.map(session, observers))
        elapsed = time.monotonic() - started
    finally:
        server.close()
    # Bounded in time as well as in count; generous, since CI machines are shared.
    assert done == [12] * 16 and elapsed < 120, f"{sum(done)} answers in {elapsed:.1f} s"
    for observer in observers:
        answers = read_answers(tmp_path / "responses" / f"{observer}.jsonl").answers
        assert len(answers) == 12 and len({a["trial"] for a in answers}) == 12
        assert all(a["observer"] == observer for a in answers)


def test_cli_analyses_collected_answers(stimuli, tmp_path):
    server = Running(stimuli, tmp_path / "responses", ["alice", "bob", "carol"])
    try:
        for index, observer in enumerate(["alice", "bob", "carol"]):
            state = server.state(observer)
            while state["trial"] is not None:
                # Everyone prefers l1 most of the time, so the scale has a clear top.
                trial = state["trial"]
                choice = (
                    "left" if "/l1.png" in trial["left"] or ("/l1.png" not in trial["right"] and index % 2) else "right"
                )
                state = server.answer(observer, trial["id"], choice)[1]
    finally:
        server.close()
    out = tmp_path / "analysis"
    cli(
        [
            "analyse",
            "--manifest",
            str(stimuli / "manifest.json"),
            "--responses",
            str(tmp_path / "responses"),
            "--out",
            str(out),
            "--samples",
            "50",
        ]
    )
    conditions, counts = read_counts(out / "observer_counts.csv")
    assert counts.shape == (3, 4, 4) and counts.sum() == 36
    with open(out / "jod.csv") as handle:
        best = max((line.split(",") for line in handle.read().splitlines()[1:]), key=lambda row: float(row[1]))
    assert best[0] == "l1"
    assert (out / "triangle.pdf").stat().st_size > 0 and "**" in (out / "probabilities.md").read_text()
    assert (out / "skipped_lines.csv").read_text() == "file,observer,reason,lines,line_numbers\n"
    assert "Answer files: no line skipped." in (out / "jod_table.md").read_text()
    # Three observers are too few to resample: scores without intervals or p-values, and the table says why.
    assert "3 observers: fewer than the 5 that resampling needs" in (out / "jod_table.md").read_text()
    with open(out / "p_values.csv") as handle:
        assert all(cell == "" for row in list(csv.reader(handle))[1:] for cell in row)


def _chromium():
    """A headless Chromium driven by Selenium; skipped where missing, except in CI."""
    browser, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (browser and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are required in CI: run ci/install_browser.sh")
        pytest.skip("chromium/chromedriver not installed (ci/install_browser.sh installs them)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to see Content-Security-Policy violations
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)


def _waiting(browser):
    """A 20-second wait that retries an element a navigation replaced under it (stale, not missing)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,))


def test_observer_session_in_headless_chromium(stimuli, tmp_path):
    from selenium.webdriver.common.by import By

    browser = _chromium()
    server = Running(stimuli, tmp_path / "responses", ["alice"], practice_trials=1)
    try:
        wait = _waiting(browser)
        browser.get(f"http://127.0.0.1:{server.port}/")
        start = browser.find_element(By.TAG_NAME, "main").text
        # 13 comparisons of 10 s, the practice included: 3 minutes.
        assert "12 comparisons after 1 practice comparison (not counted), about 3 minutes" in start
        assert "Sit about 70 cm from the screen" in start
        # A mistyped id: a page that says so and leads back, not the server's JSON.
        browser.find_element(By.ID, "observer").send_keys("Alice")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda b: b.find_element(By.TAG_NAME, "h1").text == "Unknown observer id")
        assert "No observer with the id Alice is registered" in browser.find_element(By.ID, "unknown").text
        browser.find_element(By.LINK_TEXT, "enter your id again").click()
        wait.until(lambda b: b.find_elements(By.ID, "observer"))
        browser.find_element(By.ID, "observer").send_keys("alice")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        shown = []

        def answer(side: str) -> None:
            wait.until(lambda b: b.find_element(By.ID, f"choose-{side}").is_enabled())
            trial = browser.find_element(By.ID, "pair").get_attribute("data-trial")
            # Native resolution: the image is drawn at its own pixel size.
            assert browser.find_element(By.ID, side).size == {"width": 40, "height": 24}
            shown.append(trial)
            browser.find_element(By.ID, f"choose-{side}").click()
            wait.until(
                lambda b: (
                    b.find_element(By.ID, "done").is_displayed()
                    or b.find_element(By.ID, "pair").get_attribute("data-trial") != trial
                )
            )

        # The practice comes first, labelled as such, then the real comparisons without the label.
        wait.until(lambda b: b.find_element(By.ID, "practice").is_displayed())
        assert browser.find_element(By.ID, "practice").text.startswith("Practice — not counted.")
        assert browser.find_element(By.ID, "progress").text == "Practice 1 of 1"
        answer("left")
        wait.until(lambda b: b.find_element(By.ID, "progress").text == "Comparison 1 of 12")
        assert not browser.find_element(By.ID, "practice").is_displayed()
        assert shown.pop(0) == "practice-1"
        for index in range(5):
            answer("left" if index % 2 else "right")
        assert not browser.find_element(By.ID, "practice").is_displayed()
        assert (
            browser.execute_script("return document.cookie") == ""
        )  # the session cookie is HttpOnly: no script reads it
        # The page's styles run under the server's Content-Security-Policy: the study's grey background.
        assert (
            browser.find_element(By.TAG_NAME, "body").value_of_css_property("background-color")
            == "rgba(127, 127, 127, 1)"
        )
        browser.refresh()  # reload midway: the session continues at the first unanswered trial, with no practice
        wait.until(lambda b: "Comparison 6 of 12" in b.find_element(By.ID, "progress").text)
        assert not browser.find_element(By.ID, "practice").is_displayed()
        for _ in range(7):
            answer("left")
        wait.until(lambda b: b.find_element(By.ID, "done").is_displayed())
        # The end page alone: the last pair and its buttons are gone, on a plain background.
        for element in ("pair", "left", "right", "choose-left", "choose-right", "progress"):
            assert not browser.find_element(By.ID, element).is_displayed(), element
        assert browser.find_element(By.ID, "done").text.splitlines() == [
            "All comparisons are done",
            "You answered all 12 comparisons.",
            "Thank you! Your answers are saved; you can close this window.",
        ]
        assert (
            browser.find_element(By.TAG_NAME, "body").value_of_css_property("background-color")
            == "rgba(255, 255, 255, 1)"
        )
        # The page's scripts all run under the server's Content-Security-Policy.
        assert [
            entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]
        ] == []
    finally:
        browser.quit()
        server.close()
    answers = read_answers(tmp_path / "responses" / "alice.jsonl").answers
    assert [a["trial"] for a in answers] == shown and len(set(shown)) == 12
    assert [a["trial"] for a in answers] == [t.id for t in plan(load_manifest(stimuli / "manifest.json"), "alice", 0)]
    # The practice answer is in its own file only: the last trial of alice's order, answered left.
    practice = read_answers(tmp_path / "responses" / PRACTICE / "alice.jsonl").answers
    assert [(a["trial"], a["image"], a["left"], a["right"], a["chosen"]) for a in practice] == [
        ("practice-1", answers[-1]["image"], answers[-1]["left"], answers[-1]["right"], answers[-1]["left"])
    ]


def test_the_page_shows_an_answer_not_saved_and_offers_the_trial_again(stimuli, tmp_path, monkeypatch, caplog):
    """Issue 27: on a full disk the server confirmed a torn answer; now the page says so and the observer retries."""
    from selenium.webdriver.common.by import By

    full = threading.Event()
    full.set()
    write_all = answer_files.write_all

    def filling_disk(descriptor: int, data: bytes) -> None:
        """Half the line fits, then the disk is full."""
        if full.is_set() and data.endswith(b"\n") and b'"trial"' in data:
            os.write(descriptor, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_all(descriptor, data)

    monkeypatch.setattr(answer_files, "write_all", filling_disk)
    browser = _chromium()
    server = Running(stimuli, tmp_path / "responses", ["alice"])
    try:
        wait = _waiting(browser)
        browser.get(f"http://127.0.0.1:{server.port}/")
        browser.find_element(By.ID, "observer").send_keys("alice")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda b: b.find_element(By.ID, "choose-left").is_enabled())
        trial = browser.find_element(By.ID, "pair").get_attribute("data-trial")
        browser.find_element(By.ID, "choose-left").click()
        wait.until(lambda b: b.find_element(By.ID, "error").is_displayed())
        assert (
            browser.find_element(By.ID, "error").text
            == "Your answer was not saved: the study's disk is full. Please tell the person running the study, then try"
            " again."
        )
        # The same comparison, ready to be answered again; nothing of the answer is on disk.
        wait.until(lambda b: b.find_element(By.ID, "choose-left").is_enabled())
        assert browser.find_element(By.ID, "pair").get_attribute("data-trial") == trial
        assert "Comparison 1 of 12" in browser.find_element(By.ID, "progress").text
        assert not (tmp_path / "responses" / "alice.jsonl").exists()
        full.clear()  # space freed
        browser.find_element(By.ID, "choose-left").click()
        wait.until(lambda b: b.find_element(By.ID, "pair").get_attribute("data-trial") != trial)
        assert not browser.find_element(By.ID, "error").is_displayed()
    finally:
        browser.quit()
        server.close()
    assert [a["trial"] for a in read_answers(tmp_path / "responses" / "alice.jsonl").answers] == [trial]
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == [
        f"{tmp_path / 'responses' / 'alice.jsonl'}: answer to trial {trial} not saved: No space left on device"
    ]


# --- Reliability of the server (issue 11) ---


def _copy(stimuli: Path, tmp_path: Path) -> Path:
    """A copy of the stimuli that a test may change."""
    return Path(shutil.copytree(stimuli, tmp_path / "study"))


def _replace(path: Path, target: Path) -> None:
    """Put a symlink to ``target`` where ``path`` was."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(target)


def test_symlinks_out_of_the_stimuli_are_refused(stimuli, tmp_path):
    study = _copy(stimuli, tmp_path)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "reference.png").write_bytes(b"\x89PNG outside")
    images = load_manifest(study / "manifest.json")["images"]
    a, b = images["a"], images["b"]
    # At start: a listed image that leads out of the folder stops the server with one line.
    _replace(study / a["outputs"]["l1"], secret)
    with pytest.raises(
        ValueError,
        match=r"images/a/l1\.png: leads to .*secret\.png, outside the stimuli folder .*\(listed in .*manifest\.json\)$",
    ):
        Study(study, tmp_path / "other", ["alice"])
    (study / a["outputs"]["l1"]).unlink()
    shutil.copy(stimuli / a["outputs"]["l1"], study / a["outputs"]["l1"])
    server = Running(study, tmp_path / "responses", ["alice"])
    try:
        # While serving: a file and a folder swapped for symlinks out, and a symlink loop.
        _replace(study / a["outputs"]["l2"], secret)
        _replace(study / "images" / "b", outside)
        _replace(study / a["outputs"]["flip"], study / a["outputs"]["flip"])
        for relative in [a["outputs"]["l2"], b["reference"], a["outputs"]["flip"]]:
            status, body = server.request("GET", f"/stimuli/{relative}")
            assert status == 404 and b"secret" not in body and b"outside" not in body, relative
        # A symlink that stays inside the folder is still served.
        _replace(study / a["outputs"]["msssim"], study / a["reference"])
        assert server.request("GET", f"/stimuli/{a['outputs']['msssim']}") == (
            200,
            (stimuli / a["reference"]).read_bytes(),
        )
    finally:
        server.close()


def test_a_stimulus_deleted_while_serving_is_a_404(stimuli, tmp_path, capfd):
    study = _copy(stimuli, tmp_path)
    server = Running(study, tmp_path / "responses", ["alice"])
    try:
        trial = server.state("alice")["trial"]
        (study / trial["left"].removeprefix("/stimuli/")).unlink()
        assert server.request("GET", trial["left"])[0] == 404
        assert server.request("GET", trial["right"])[0] == 200
    finally:
        server.close()
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (
            {"Content-Type": "text/plain", "Origin": "http://evil.example", "Cookie": None},
            403,
        ),  # a cross-site form or fetch: SameSite=Strict sends no cookie
        ({"Content-Type": "text/plain;charset=UTF-8", "Origin": None, "Cookie": None}, 415),
        ({"Content-Type": "text/plain"}, 415),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Cookie": None}, 403),
        ({"Cookie": "study_alice=" + "0" * 43}, 403),
        ({"Host": "evil.example:{port}", "Origin": "http://evil.example:{port}"}, 421),  # a DNS-rebound name
    ],
)
def test_answers_from_other_sites_are_refused(running, headers, status):
    trial = running.state("alice")["trial"]["id"]
    body = json.dumps({"trial": trial, "choice": "left"}).encode()
    headers = {name: value.format(port=running.port) if value else value for name, value in headers.items()}
    assert running.post("alice", body, **headers)[0] == status
    assert not (running.server.study.responses / "alice.jsonl").exists()
    assert running.post("alice", body)[0] == 200  # the study page's own answer


def test_a_session_goes_only_to_the_browser_that_registers(stimuli, tmp_path):
    """Issue 27: any client could read an observer's token from GET /study/<id> and answer as them."""
    server = Running(stimuli, tmp_path / "responses", ["alice", "bob"])
    try:
        # The first registration gets the session, as an HttpOnly, SameSite=Strict cookie (register checks its
        # attributes).
        status, token, headers, _ = register(server.port, "alice")
        assert status == 303 and headers["Location"] == "/study/alice" and token is not None
        assert token not in (tmp_path / "responses" / SESSIONS / "alice").read_text()  # the server keeps its hash only
        # Knowing the id gives nothing: no page, script or API response holds the token or sets a cookie.
        for path in ["/", "/study/alice", "/api/alice/state", "/static/study.js"]:
            status, headers, body = _response(server.port, "GET", path)
            assert "Set-Cookie" not in headers and token.encode() not in body and b"study-token" not in body, path
        status, _, page = fetch(server.port, "GET", "/study/alice")
        assert status == 403 and "This browser has not started the study as observer alice." in _text(page)
        assert request(server.port, "GET", "/api/alice/state") == (
            403,
            (
                b'{"error": "this browser has not started the study as observer alice: enter your id on the start page'
                b' to continue"}'
            ),
        )
        assert fetch(server.port, "GET", "/study/alice", headers={"Cookie": cookie("alice", token)})[0] == 200
        # Another browser registering the same id is refused, and gets no cookie.
        status, other, _, page = register(server.port, "alice")
        assert (
            status == 409
            and other is None
            and "Observer alice has already started the study in another browser." in _text(page)
        )
        # The registering browser registers again (a returning observer): sent on, its session unchanged.
        assert register(server.port, "alice", token)[:2] == (303, None)
        # A cross-site form cannot register anyone into the observer's browser.
        assert register(server.port, "bob", Origin="http://evil.example")[:2] == (403, None)
        bob = server.token("bob")
        body = json.dumps({"trial": state(server.port, "alice", token)["trial"]["id"], "choice": "left"}).encode()
        assert post(server.port, "alice", None, body)[0] == 403
        assert post(server.port, "alice", bob, body)[0] == 403  # bob's session is not alice's
        assert post(server.port, "alice", bob, body, Cookie=f"study_alice={bob}")[0] == 403
        assert post(server.port, "alice", token, body)[0] == 200
    finally:
        server.close()
    # A restart keeps the sessions of its responses folder; another folder's are refused.
    again, elsewhere = (
        Running(stimuli, tmp_path / "responses", ["alice"]),
        Running(stimuli, tmp_path / "elsewhere", ["alice"]),
    )
    try:
        assert state(again.port, "alice", token)["done"] == 1
        assert state(elsewhere.port, "alice", token) == {
            "error": (
                "this browser has not started the study as observer alice: enter your id on the start page to continue"
            )
        }
        # Deleting the session releases the id for a new browser, at once.
        (tmp_path / "responses" / SESSIONS / "alice").unlink()
        assert "error" in state(again.port, "alice", token)
        status, fresh, _, _ = register(again.port, "alice")
        assert status == 303 and fresh not in (None, token) and state(again.port, "alice", fresh)["done"] == 1
    finally:
        again.close()
        elsewhere.close()


def _response(port: int, method: str, path: str) -> tuple[int, dict, bytes]:
    """Status, headers and body of a request."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"[" * 1024, "body nests too deeply"),  # issue 27: an uncaught RecursionError
        (b"[" * 500 + b"]" * 500, 'expected {"trial": "<id>", "choice": "left" | "right"}'),
        (b"42", 'expected {"trial": "<id>", "choice": "left" | "right"}'),
        (b"null", 'expected {"trial": "<id>", "choice": "left" | "right"}'),
        (b"[1, 2]", 'expected {"trial": "<id>", "choice": "left" | "right"}'),
        (b'{"trial": "t0000", "choice": "left"' + b" " * 1000 + b"}", "body must be 1–1024 bytes"),
        (b"\xff\xfe", "body is not JSON"),
    ],
)
def test_bodies_that_are_no_answer_are_a_400_with_one_line(running, capfd, body, error):
    assert running.post("alice", body) == (400, {"error": error})
    assert running.state("alice")["done"] == 0  # nothing recorded, and the server still answers
    assert "Traceback" not in capfd.readouterr().err


def test_every_response_forbids_framing_and_foreign_scripts(running):
    trial = running.state("alice")["trial"]
    for path in [
        "/",
        "/study/alice",
        "/study/mallory",
        "/static/study.js",
        "/api/alice/state",
        trial["left"],
        "/nothing",
        "/stimuli/../manifest.json",
    ]:
        connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=90)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        policy = response.getheader("Content-Security-Policy")
        assert response.getheader("X-Frame-Options") == "DENY" and "frame-ancestors 'none'" in policy, path
        assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe" not in policy, path
        # No URL leaves for another site; same-origin still lets the start page's form send its Origin (not "null").
        assert response.getheader("Referrer-Policy") == "same-origin", path
    assert running.request("OPTIONS", "/api/alice/answer")[0] == 501  # no CORS preflight is ever granted
    with socket.create_connection(("127.0.0.1", running.port), timeout=90) as raw:  # http.server's own error page
        raw.sendall(b"DELETE / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += raw.recv(65536)
        assert reply.startswith(b"HTTP/1.1 501 ") and b"\r\nX-Frame-Options: DENY\r\n" in reply
    # The pages hold no inline script, style or handler, and every file they use is served.
    for page in ["/", "/study/alice", "/study/mallory"]:
        body = running.request("GET", page)[1]
        assert not re.search(rb"<script(?![^>]*\ssrc=)|<style|\sstyle=|\son[a-z]+=", body), page
        for asset in re.findall(rb'(?:src|href)="(/static/[^"]+)"', body):
            assert running.request("GET", asset.decode())[0] == 200


def _closed(connection: socket.socket) -> bool:
    """Whether the server has closed ``connection`` (waits up to 5 s for it)."""
    connection.settimeout(5)
    try:
        while connection.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_idle_half_open_and_slow_clients_are_dropped(stimuli, tmp_path):
    server = Running(stimuli, tmp_path / "responses", ["alice"], idle_timeout=0.5, request_timeout=2.0)
    threads = threading.active_count()
    connections = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(30)]
    try:
        for connection in connections[1::3]:  # a request whose headers never end
            connection.sendall(b"GET /api/alice/state HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        slow = connections[2::3]  # a byte each 0.2 s: every read in time, the request never complete
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            for connection in slow:
                try:
                    connection.send(b"G")
                except OSError:
                    pass
            time.sleep(0.2)
        assert [_closed(connection) for connection in connections] == [True] * 30
        deadline = time.monotonic() + 5
        while threading.active_count() > threads and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= threads  # no handler thread left behind
        assert server.state("alice")["done"] == 0  # and the server still answers
    finally:
        for connection in connections:
            connection.close()
        server.close()


def test_connections_beyond_the_limit_are_answered_503(stimuli, tmp_path):
    server = Running(stimuli, tmp_path / "responses", ["alice"], max_connections=3)
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
            assert extra.recv(4096).startswith(b"HTTP/1.1 503 ")
        for connection in held:
            connection.close()
        deadline = time.monotonic() + 5
        while server.request("GET", "/")[0] == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.request("GET", "/")[0] == 200
    finally:
        server.close()


def _serve_and_close(stimuli: Path, responses: Path) -> None:
    StudyServer(Study(stimuli, responses, ["bob"]), "127.0.0.1", 0).server_close()


def test_one_server_per_responses_folder(stimuli, tmp_path):
    first = Running(stimuli, tmp_path / "responses", ["alice"])
    try:
        with pytest.raises(
            ValueError,
            match=(
                rf"^{re.escape(str(tmp_path / 'responses'))}: in use by another study server \(pid {os.getpid()}\);"
                r" stop it, or serve into another responses folder$"
            ),
        ):
            _serve_and_close(stimuli, tmp_path / "responses")
    finally:
        first.close()
    _serve_and_close(stimuli, tmp_path / "responses")  # free again once closed


def test_bad_ports_are_one_line(stimuli, tmp_path, capsys):
    serve = [
        "serve",
        "--stimuli",
        str(stimuli),
        "--responses",
        str(tmp_path / "responses"),
        "--observer",
        "alice",
        "--port",
    ]
    for port in ["99999", "-1", "http"]:
        with pytest.raises(SystemExit) as exited:
            cli([*serve, port])
        error = capsys.readouterr().err
        assert exited.value.code == 2 and "Traceback" not in error
        assert (
            error.splitlines()[-1]
            == f"python -m lossbench.userstudy serve: error: argument --port: {port!r} is not a port (expected 0–65535;"
            " 0 picks a free one)"
        )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=rf"^error: cannot listen on 127\.0\.0\.1:{port}: Address already in use$"):
            cli([*serve, str(port)])
    _serve_and_close(stimuli, tmp_path / "responses")  # the failed start left the folder free


def _serve_process(stimuli: Path, responses: Path, observers: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    """``python -m lossbench.userstudy serve`` on a free port of 127.0.0.1; returns the process and its port."""
    command = [
        sys.executable,
        "-m",
        "lossbench.userstudy",
        "serve",
        "--stimuli",
        str(stimuli),
        "--responses",
        str(responses),
        "--port",
        "0",
    ]
    command += [argument for observer in observers for argument in ("--observer", observer)]
    with open(log, "ab") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    found = re.search(r"on http://127\.0\.0\.1:(\d+)/", process.stdout.readline())
    assert found, f"the server did not start: {log.read_text()[-2000:]}"
    return process, int(found.group(1))


def test_no_confirmed_answer_is_lost_to_kill_9_under_load(stimuli, tmp_path):
    responses, log = tmp_path / "responses", tmp_path / "server.log"
    observers = [f"obs{index}" for index in range(8)]
    confirmed: dict[str, list[str]] = {observer: [] for observer in observers}

    tokens: dict[str, str] = {}  # each observer's browser keeps its session cookie across the restarts

    def session(port: int, observer: str) -> None:
        """Answer until done or until the server dies; a trial counts as confirmed on a 200 only."""
        try:
            if observer not in tokens:
                tokens[observer] = register(port, observer)[1]
            token = tokens[observer]
            while (current := state(port, observer, token))["trial"] is not None:
                trial = current["trial"]
                status, _ = post(port, observer, token, json.dumps({"trial": trial["id"], "choice": "left"}).encode())
                assert status == 200
                if current["practice"] is None:  # the practice (serve's default of 1) goes to another file
                    confirmed[observer].append(trial["id"])
        except (OSError, http.client.HTTPException):
            pass  # killed

    def check() -> None:
        for observer in observers:
            stored = [answer["trial"] for answer in read_answers(responses / f"{observer}.jsonl").answers]
            # Every confirmed answer is stored, in order, once; at most the one in flight is stored unconfirmed.
            assert stored[: len(confirmed[observer])] == confirmed[observer] and len(set(stored)) == len(stored)
            assert len(stored) - len(confirmed[observer]) <= 1
            confirmed[observer] = stored

    for target in (20, 40):
        process, port = _serve_process(stimuli, responses, observers, log)
        try:
            if target == 40:  # while it runs, a second server on the same folder refuses to start
                with pytest.raises(
                    ValueError,
                    match=(
                        rf"^{re.escape(str(responses))}: in use by another study server \(pid {process.pid}\); stop it,"
                        r" or serve into another responses folder$"
                    ),
                ):
                    _serve_and_close(stimuli, responses)
            with ThreadPoolExecutor(max_workers=len(observers)) as pool:
                sessions = [pool.submit(session, port, observer) for observer in observers]
                deadline = time.monotonic() + 60
                while sum(map(len, confirmed.values())) < target and time.monotonic() < deadline:
                    time.sleep(0.01)
                os.kill(process.pid, signal.SIGKILL)  # mid-load: answers in flight
                for finished in sessions:
                    finished.result()
        finally:
            process.kill()
            process.wait()
            process.stdout.close()
        check()
    assert "Traceback" not in log.read_text()
    # The kernel released the killed server's lock: a new one starts and every session finishes.
    server = Running(stimuli, responses, observers)
    try:
        with ThreadPoolExecutor(max_workers=len(observers)) as pool:
            list(pool.map(lambda observer: session(server.port, observer), observers))
    finally:
        server.close()
    check()
    names, _, counts = observer_counts(load_manifest(stimuli / "manifest.json"), read_folder(responses))
    assert names == observers and counts.sum() == 8 * 12
    # Each observer practised once, before the first kill, and never again after a restart.
    for observer in observers:
        assert [a["trial"] for a in read_answers(responses / PRACTICE / f"{observer}.jsonl").answers] == ["practice-1"]
