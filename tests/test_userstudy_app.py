"""User-study stimuli and collection app: plans, durable answers, bad input, path traversal, a load
test of concurrent observers, and an observer's session in a real headless Chromium.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lossbench.data.valset import write_images
from lossbench.userstudy.__main__ import main as cli
from lossbench.userstudy.counts import read_counts
from lossbench.userstudy.responses import LOCK, ObserverFile, observer_counts, read_answers
from lossbench.userstudy.server import TOKEN_HEADER, Study, StudyServer
from lossbench.userstudy.stimuli import load_manifest, make_stimuli, plan

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
        write_images(outputs[loss], {"output": [(image, np.clip(t + rng.normal(0, 0.1, t.shape), 0, 1)) for image, t in targets.items()]})
    make_stimuli("denoise", root / "val.h5", outputs, IMAGES, root / "study", flicker_ms=100)
    return root / "study"


class Running:
    """A study server on a free port of 127.0.0.1, in a background thread."""

    def __init__(self, stimuli: Path, responses: Path, observers: list[str], **options):
        self.server = StudyServer(Study(stimuli, responses, observers, seed=0), "127.0.0.1", 0, **options)
        self.port = self.server.server_address[1]
        self.tokens: dict[str, str | None] = {}
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        return request(self.port, method, path, body, headers)

    def post(self, observer: str, body: bytes, **headers: str | None) -> tuple[int, dict]:
        """POST ``body`` as the observer's study page does; ``headers`` replace the page's (None: leave out)."""
        if observer not in self.tokens:
            self.tokens[observer] = page_token(self.port, observer)
        return post(self.port, observer, self.tokens[observer], body, **headers)

    def answer(self, observer: str, trial: str, choice: str) -> tuple[int, dict]:
        return self.post(observer, json.dumps({"trial": trial, "choice": choice}).encode())

    def state(self, observer: str) -> dict:
        return json.loads(self.request("GET", f"/api/{observer}/state")[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def page_token(port: int, observer: str) -> str | None:
    """The session token that the observer's study page carries (None for an unknown observer)."""
    status, page = request(port, "GET", f"/study/{observer}")
    return re.search(rb'<meta name="study-token" content="([0-9a-f]{64})">', page).group(1).decode() if status == 200 else None


def post(port: int, observer: str, token: str | None, body: bytes, **headers: str | None) -> tuple[int, dict]:
    """POST ``body`` to the observer's answers as their study page does; ``headers`` replace the page's (None: leave out)."""
    sent = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}", TOKEN_HEADER: token, **headers}
    status, answer = request(port, "POST", f"/api/{observer}/answer", body, {name: value for name, value in sent.items() if value is not None})
    return status, json.loads(answer)


@pytest.fixture
def running(stimuli, tmp_path):
    server = Running(stimuli, tmp_path / "responses", ["alice", "bob"])
    yield server
    server.close()


def test_manifest_lists_every_pair_of_every_image_at_native_size(stimuli):
    manifest = load_manifest(stimuli / "manifest.json")
    assert len(manifest["trials"]) == len(IMAGES) * 6
    assert {frozenset((t["a"], t["b"])) for t in manifest["trials"]} == {frozenset(p) for p in [("l1", "l2"), ("l1", "msssim"), ("l1", "flip"), ("l2", "msssim"), ("l2", "flip"), ("msssim", "flip")]}
    entry = manifest["images"]["a"]
    assert Image.open(stimuli / entry["reference"]).size == (40, 24) == (entry["width"], entry["height"])
    assert Image.open(stimuli / entry["outputs"]["flip"]).mode == "RGB"


def test_missing_validation_image_is_named(stimuli, tmp_path):
    with pytest.raises(ValueError, match="no validation image 'nope'"):
        make_stimuli("denoise", stimuli.parent / "val.h5", {loss: stimuli.parent / f"{loss}.h5" for loss in LOSSES}, ["nope"], tmp_path)


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
    try:
        state = second.state("alice")
        assert state["done"] == 5 and state["total"] == 12
        while state["trial"] is not None:
            status, state = second.answer("alice", state["trial"]["id"], "right")
            assert status == 200
        assert state["done"] == 12
    finally:
        second.close()
    answers = read_answers(responses / "alice.jsonl")
    assert [a["position"] for a in answers] == list(range(12))
    assert [a["chosen"] for a in answers] == [a["left"] for a in answers[:5]] + [a["right"] for a in answers[5:]]
    observers, conditions, counts = observer_counts(load_manifest(stimuli / "manifest.json"), responses)
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
    assert len(read_answers(running.server.study.responses / "alice.jsonl")) == 1


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


def test_stimuli_are_served(running):
    state = running.state("bob")
    status, body = running.request("GET", state["trial"]["left"])
    assert status == 200 and body.startswith(b"\x89PNG")


def test_torn_last_line_is_skipped_and_never_merged(tmp_path):
    path = tmp_path / "alice.jsonl"
    ObserverFile(path).append({"trial": "t0000", "chosen": "l1"})
    with open(path, "ab") as handle:
        handle.write(b'{"trial": "t00')  # a write cut off by a crash, never confirmed
    log = ObserverFile(path)
    assert log.answered == {"t0000"}
    log.append({"trial": "t0001", "chosen": "l2"})
    assert [a["trial"] for a in read_answers(path)] == ["t0000", "t0001"]
    assert b'{"trial": "t00\n' in path.read_bytes()  # what was there stays there


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
        answers = read_answers(tmp_path / "responses" / f"{observer}.jsonl")
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
                choice = "left" if "/l1.png" in trial["left"] or ("/l1.png" not in trial["right"] and index % 2) else "right"
                state = server.answer(observer, trial["id"], choice)[1]
    finally:
        server.close()
    out = tmp_path / "analysis"
    cli(["analyse", "--manifest", str(stimuli / "manifest.json"), "--responses", str(tmp_path / "responses"), "--out", str(out), "--samples", "50"])
    conditions, counts = read_counts(out / "observer_counts.csv")
    assert counts.shape == (3, 4, 4) and counts.sum() == 36
    with open(out / "jod.csv") as handle:
        best = max((line.split(",") for line in handle.read().splitlines()[1:]), key=lambda row: float(row[1]))
    assert best[0] == "l1"
    assert (out / "triangle.pdf").stat().st_size > 0 and "**" in (out / "probabilities.md").read_text()


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def test_observer_session_in_headless_chromium(stimuli, tmp_path):
    found = _chromium()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are required in CI: run ci/install_browser.sh")
        pytest.skip("chromium/chromedriver not installed (ci/install_browser.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    server = Running(stimuli, tmp_path / "responses", ["alice"])
    browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=found[1]), options=options)
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        browser.find_element(By.ID, "observer").send_keys("alice")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait = WebDriverWait(browser, 20)
        shown = []

        def answer(side: str) -> None:
            wait.until(lambda b: b.find_element(By.ID, f"choose-{side}").is_enabled())
            trial = browser.find_element(By.ID, "pair").get_attribute("data-trial")
            # Native resolution: the image is drawn at its own pixel size.
            assert browser.find_element(By.ID, side).size == {"width": 40, "height": 24}
            shown.append(trial)
            browser.find_element(By.ID, f"choose-{side}").click()
            wait.until(lambda b: b.find_element(By.ID, "done").is_displayed() or b.find_element(By.ID, "pair").get_attribute("data-trial") != trial)

        for index in range(5):
            answer("left" if index % 2 else "right")
        browser.refresh()  # reload midway: the session continues at the first unanswered trial
        wait.until(lambda b: "Comparison 6 of 12" in b.find_element(By.ID, "progress").text)
        for _ in range(7):
            answer("left")
        wait.until(lambda b: b.find_element(By.ID, "done").is_displayed())
    finally:
        browser.quit()
        server.close()
    answers = read_answers(tmp_path / "responses" / "alice.jsonl")
    assert [a["trial"] for a in answers] == shown and len(set(shown)) == 12
    assert [a["trial"] for a in answers] == [t.id for t in plan(load_manifest(stimuli / "manifest.json"), "alice", 0)]
