"""The collection app with active sampling (serve --sampling active) and a per-observer trial limit."""

import argparse
import copy
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import yaml
from scipy.special import ndtr

from lossbench.userstudy.__main__ import _from_config
from lossbench.userstudy.__main__ import main as cli
from lossbench.userstudy.active import Posterior
from lossbench.userstudy.counts import read_counts
from lossbench.userstudy.responses import read_answers
from lossbench.userstudy.sampler import ActiveSampler
from lossbench.userstudy.server import Study, StudyServer
from lossbench.userstudy.stimuli import load_manifest, plan
from lossbench.userstudy.thurstone import SIGMA, scale

from conftest import TINY_CONFIG
from test_userstudy_app import _chromium, post, register, state, stimuli  # noqa: F401 (stimuli: a fixture)

# True scores of the simulated observers, JOD.
TRUTH = {"l1": 1.0, "l2": -0.5, "msssim": 0.3, "flip": 0.0}


class Served:
    """A study server with the given options on a free port, in a background thread."""

    def __init__(self, stimuli, responses, observers, browser=(), **options):
        self.study = Study(stimuli, responses, observers, seed=0, **options)
        self.server = StudyServer(self.study, "127.0.0.1", 0)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        # Observers in ``browser`` register from a browser themselves.
        self.tokens = {observer: register(self.port, observer)[1] for observer in observers if observer not in browser}

    def state(self, observer):
        return state(self.port, observer, self.tokens[observer])

    def answer(self, observer, trial, choice):
        body = json.dumps({"trial": trial, "choice": choice}).encode()
        return post(self.port, observer, self.tokens[observer], body)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _thurstone_choice(rng, trial):
    """A simulated observer's side: the left loss with probability Φ((t_left − t_right) / σ)."""
    left, right = (trial[side].rsplit("/", 1)[1].removesuffix(".png") for side in ("left", "right"))
    return "left" if rng.random() < ndtr((TRUTH[left] - TRUTH[right]) / SIGMA) else "right"


def _counts(responses, conditions):
    counts = np.zeros((len(conditions), len(conditions)))
    for path in responses.glob("*.jsonl"):
        for record in read_answers(path).answers:
            counts[conditions.index(record["chosen"]), conditions.index(record["other"])] += 1
    return counts


def test_concurrent_observers_of_an_active_study_lose_no_answer_and_stop_at_their_limit(stimuli, tmp_path):  # noqa: F811
    observers = [f"obs{index}" for index in range(6)]
    served = Served(stimuli, tmp_path / "responses", observers, sampling="active", trials_per_observer=5)

    def session(index):
        rng = np.random.default_rng(index)
        observer, answered = observers[index], 0
        current = served.state(observer)
        assert current["total"] == 5
        while current["trial"] is not None:
            status, current = served.answer(observer, current["trial"]["id"], _thurstone_choice(rng, current["trial"]))
            assert status == 200, current
            answered += 1
        assert current["done"] == 5
        return answered

    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            done = list(pool.map(session, range(6)))
        # An observer who has answered their share gets no further trial.
        answered = {answer["trial"] for answer in read_answers(tmp_path / "responses" / "obs0.jsonl").answers}
        unanswered = next(
            t["id"] for t in load_manifest(stimuli / "manifest.json")["trials"] if t["id"] not in answered
        )
        assert served.answer("obs0", unanswered, "left") == (409, {"error": "all 5 trials are answered"})
    finally:
        served.close()
    assert done == [5] * 6
    for observer in observers:
        answers = read_answers(tmp_path / "responses" / f"{observer}.jsonl").answers
        assert len({answer["trial"] for answer in answers}) == len(answers) == 5
    # The analysis is unchanged: pwcmp's scaling of all answers, whatever chose the pairs.
    out = tmp_path / "analysis"
    manifest = stimuli / "manifest.json"
    cli(["analyse", "--manifest", str(manifest), "--responses", str(tmp_path / "responses"), "--out", str(out)])
    conditions, per_observer = read_counts(out / "observer_counts.csv")
    assert per_observer.sum() == 30
    with open(out / "jod.csv") as handle:
        jod = [float(line.split(",")[1]) for line in handle.read().splitlines()[1:]]
    np.testing.assert_allclose(jod, scale(per_observer.sum(axis=0)), atol=1e-5)


def test_each_trial_is_the_pair_of_largest_information_gain_and_stays_until_answered(stimuli, tmp_path):  # noqa: F811
    served = Served(stimuli, tmp_path / "responses", ["ann", "ben"], sampling="active")
    manifest = load_manifest(stimuli / "manifest.json")
    conditions = manifest["conditions"]
    try:
        rng = np.random.default_rng(1)
        for _ in range(6):
            current = served.state("ben")
            served.answer("ben", current["trial"]["id"], _thurstone_choice(rng, current["trial"]))
        pending = served.state("ann")["trial"]
        # The gain of the pair shown, under the belief from ben's answers, is the largest over ann's trials.
        belief = Posterior.from_counts(_counts(tmp_path / "responses", conditions))
        index = {
            trial["id"]: (conditions.index(trial["a"]), conditions.index(trial["b"])) for trial in manifest["trials"]
        }
        gains = belief.information_gain(np.array(list(index.values())))
        shown = belief.information_gain(np.array([index[pending["id"]]]))[0]
        assert shown == pytest.approx(gains.max(), rel=1e-9)
        # ben answers on and the belief moves; ann's trial stays hers, and her answer to it is taken.
        for _ in range(3):
            current = served.state("ben")
            served.answer("ben", current["trial"]["id"], _thurstone_choice(rng, current["trial"]))
        assert served.state("ann")["trial"] == pending
        assert served.answer("ann", pending["id"], "left")[0] == 200
    finally:
        served.close()


def test_a_restarted_active_study_takes_up_the_same_belief_and_choices(stimuli, tmp_path):  # noqa: F811
    responses = tmp_path / "responses"
    served = Served(stimuli, responses, ["ann", "ben"], sampling="active")
    try:
        rng = np.random.default_rng(2)
        for observer in ("ann", "ben", "ann", "ann", "ben"):
            current = served.state(observer)
            served.answer(observer, current["trial"]["id"], _thurstone_choice(rng, current["trial"]))
        before = served.study.sampler.counts.copy()
        next_trial = {observer: served.state(observer)["trial"]["id"] for observer in ("ann", "ben")}
    finally:
        served.close()
    restarted = Study(stimuli, responses, ["ann", "ben"], seed=0, sampling="active")
    np.testing.assert_array_equal(restarted.sampler.counts, before)
    np.testing.assert_array_equal(before, _counts(responses, load_manifest(stimuli / "manifest.json")["conditions"]))
    # Pending trials are not stored: after a restart they are chosen again, from the belief of all answers and the
    # seed, so every restart chooses alike. ben's was chosen after the last answer, so it is chosen again as it was;
    # ann's was chosen before ben's last answer, from another belief.
    again = Study(stimuli, responses, ["ann", "ben"], seed=0, sampling="active")
    chosen = {observer: restarted.state(observer)["trial"]["id"] for observer in ("ann", "ben")}
    assert chosen == {observer: again.state(observer)["trial"]["id"] for observer in ("ann", "ben")}
    assert chosen["ben"] == next_trial["ben"]


def test_full_sampling_with_a_limit_asks_the_first_trials_of_each_order(stimuli, tmp_path):  # noqa: F811
    study = Study(stimuli, tmp_path / "responses", ["ann"], seed=0, trials_per_observer=3)
    expected = [trial.id for trial in plan(load_manifest(stimuli / "manifest.json"), "ann", 0)[:3]]
    asked = []
    current = study.state("ann")
    assert current["total"] == 3
    while current["trial"] is not None:
        asked.append(current["trial"]["id"])
        status, current = study.answer("ann", current["trial"]["id"], "left")
        assert status == 200
    assert asked == expected and current["done"] == 3
    assert "3 comparisons" in study.start_page().decode()


def test_bad_sampling_options_are_refused_in_one_line(stimuli, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="^sampling: expected one of full, active, got 'adaptive'$"):
        Study(stimuli, tmp_path / "r", ["ann"], sampling="adaptive")
    for bad in (0, 13):
        with pytest.raises(
            ValueError, match=f"^trials per observer: expected 1 to the manifest's 12 trials, got {bad}$"
        ):
            Study(stimuli, tmp_path / "r", ["ann"], trials_per_observer=bad)


def test_no_confirmed_answer_of_an_active_study_is_lost_to_kill_9(stimuli, tmp_path):  # noqa: F811
    responses, log = tmp_path / "responses", tmp_path / "server.log"
    observers = [f"obs{index}" for index in range(6)]
    confirmed = {observer: [] for observer in observers}
    tokens = {}

    def serve():
        command = [sys.executable, "-m", "lossbench.userstudy", "serve", "--stimuli", str(stimuli), "--responses"]
        command += [str(responses), "--port", "0", "--sampling", "active", "--trials-per-observer", "8"]
        command += [argument for observer in observers for argument in ("--observer", observer)]
        with open(log, "ab") as stderr:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        found = re.search(r"on http://127\.0\.0\.1:(\d+)/", process.stdout.readline())
        assert found, f"the server did not start: {log.read_text()[-2000:]}"
        return process, int(found.group(1))

    def session(port, observer):
        """Answer until done or until the server dies; a trial counts as confirmed on a 200 only."""
        rng = np.random.default_rng(len(confirmed[observer]))
        try:
            if observer not in tokens:
                tokens[observer] = register(port, observer)[1]
            while (current := state(port, observer, tokens[observer]))["trial"] is not None:
                trial = current["trial"]
                body = json.dumps({"trial": trial["id"], "choice": _thurstone_choice(rng, trial)}).encode()
                status, _ = post(port, observer, tokens[observer], body)
                assert status == 200
                if current["practice"] is None:  # the practice (serve's default of 1) goes to another file
                    confirmed[observer].append(trial["id"])
        except (OSError, http.client.HTTPException):
            pass  # killed

    def check():
        for observer in observers:
            stored = [answer["trial"] for answer in read_answers(responses / f"{observer}.jsonl").answers]
            # Every confirmed answer is stored, in order, once; at most the one in flight is stored unconfirmed.
            assert stored[: len(confirmed[observer])] == confirmed[observer] and len(set(stored)) == len(stored)
            assert len(stored) - len(confirmed[observer]) <= 1
            confirmed[observer] = stored

    process, port = serve()
    try:
        with ThreadPoolExecutor(max_workers=len(observers)) as pool:
            sessions = [pool.submit(session, port, observer) for observer in observers]
            deadline = time.monotonic() + 60
            while sum(map(len, confirmed.values())) < 20 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(process.pid, signal.SIGKILL)  # mid-load: answers in flight
            for finished in sessions:
                finished.result()
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    check()
    assert 20 <= sum(map(len, confirmed.values())) < 48
    # A new server takes up the belief from the files, and every observer finishes their 8 trials.
    process, port = serve()
    try:
        with ThreadPoolExecutor(max_workers=len(observers)) as pool:
            list(pool.map(lambda observer: session(port, observer), observers))
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    check()
    assert all(len(confirmed[observer]) == 8 for observer in observers)
    assert "Traceback" not in log.read_text()


def test_an_active_study_in_headless_chromium_beside_other_observers(stimuli, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _chromium()
    observers = ["alice", "bob", "carol"]
    # alice registers in the browser; the others answer over HTTP.
    served = Served(
        stimuli, tmp_path / "responses", observers, sampling="active", trials_per_observer=6, browser=["alice"]
    )
    stop = threading.Event()

    def others(observer):
        """Another observer answering over HTTP while alice answers in the browser."""
        rng = np.random.default_rng(len(observer))
        while not stop.is_set() and (trial := served.state(observer)["trial"]) is not None:
            assert served.answer(observer, trial["id"], _thurstone_choice(rng, trial))[0] == 200
            time.sleep(0.4)

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            background = [pool.submit(others, observer) for observer in ("bob", "carol")]
            wait = WebDriverWait(browser, 20)
            browser.get(f"http://127.0.0.1:{served.port}/")
            assert "6 comparisons, about 1 minute" in browser.find_element(By.TAG_NAME, "main").text
            browser.find_element(By.ID, "observer").send_keys("alice")
            browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            shown = []
            for index in range(6):
                wait.until(lambda b: b.find_element(By.ID, "choose-left").is_enabled())
                assert f"Comparison {index + 1} of 6" in browser.find_element(By.ID, "progress").text
                trial = browser.find_element(By.ID, "pair").get_attribute("data-trial")
                shown.append(trial)
                browser.find_element(By.ID, "choose-left" if index % 2 else "choose-right").click()
                wait.until(
                    lambda b: (
                        b.find_element(By.ID, "done").is_displayed()
                        or b.find_element(By.ID, "pair").get_attribute("data-trial") != trial
                    )
                )
            wait.until(lambda b: b.find_element(By.ID, "done").is_displayed())
            assert "You answered all 6 comparisons." in browser.find_element(By.ID, "done").text
            stop.set()
            for finished in background:
                finished.result()
    finally:
        stop.set()
        browser.quit()
        served.close()
    answers = read_answers(tmp_path / "responses" / "alice.jsonl").answers
    assert [answer["trial"] for answer in answers] == shown and len(set(shown)) == 6
    # The others answered while alice did: the belief her trials came from moved under her.
    first, last = answers[0]["time"], answers[-1]["time"]
    between = [
        answer
        for observer in ("bob", "carol")
        for answer in read_answers(tmp_path / "responses" / f"{observer}.jsonl").answers
        if first < answer["time"] < last
    ]
    assert between


def _config(tmp_path, **userstudy):
    """The tiny test configuration with these ``userstudy`` keys, written to ``tmp_path``."""
    config = copy.deepcopy(yaml.safe_load(TINY_CONFIG.read_text()))
    config["userstudy"] = {**config.get("userstudy", {}), **userstudy}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_serve_takes_sampling_limit_and_seed_from_the_configuration(stimuli, tmp_path):  # noqa: F811
    config = _config(tmp_path, sampling="active", trials_per_observer=4, seed=3)
    manifest = load_manifest(stimuli / "manifest.json")
    command = [sys.executable, "-m", "lossbench.userstudy", "serve", "--config", str(config), "--stimuli", str(stimuli)]
    command += ["--responses", str(tmp_path / "responses"), "--observer", "ann", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        found = re.search(r"on http://127\.0\.0\.1:(\d+)/", process.stdout.readline())
        assert found, process.stderr.read()
        port = int(found.group(1))
        token = register(port, "ann")[1]
        # serve's default practice trial first, which leaves the belief as it was.
        practice = state(port, "ann", token)
        assert practice["practice"] == {"number": 1, "total": 1} and practice["trial"]["id"] == "practice-1"
        status, first = post(port, "ann", token, json.dumps({"trial": "practice-1", "choice": "right"}).encode())
        assert status == 200 and first["practice"] is None
        # Active with seed 3: the sampler's first choice, not the first trial of ann's seeded order.
        expected = ActiveSampler(manifest, 3).current("ann", set()).id
        assert first["total"] == 4 and first["trial"]["id"] == expected != plan(manifest, "ann", 3)[0].id
        current = first
        for _ in range(4):
            status, current = post(
                port, "ann", token, json.dumps({"trial": current["trial"]["id"], "choice": "left"}).encode()
            )
            assert status == 200
        assert current["trial"] is None and current["done"] == 4
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def test_options_on_the_command_line_win_over_the_configuration(tmp_path):
    config = _config(tmp_path, sampling="active", trials_per_observer=4, seed=3)
    args = argparse.Namespace(config=str(config), seed=None, sampling="full", trials_per_observer=2)
    _from_config(args)
    assert (args.seed, args.sampling, args.trials_per_observer) == (3, "full", 2)
    args = argparse.Namespace(config=None, seed=None, sampling=None, trials_per_observer=None)
    _from_config(args)
    assert (args.seed, args.sampling, args.trials_per_observer) == (0, "full", None)
    with pytest.raises(ValueError, match="sampling"):
        _from_config(argparse.Namespace(config=str(_config(tmp_path, sampling="adaptive")), seed=None, sampling=None))
