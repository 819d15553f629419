"""The collection app's practice trials (issue 30): answered first, labelled as practice, stored apart from the
answers, never counted by the analysis nor seen by active sampling, and not repeated after a restart."""

from __future__ import annotations

import numpy as np
import pytest

from lossbench.userstudy.responses import observer_counts, read_answers, read_folder
from lossbench.userstudy.stimuli import load_manifest
from lossbench.userstudy.study import PRACTICE, Study
from lossbench.userstudy.thurstone import scale

from test_userstudy_active_app import TRUTH, Served
from test_userstudy_app import stimuli  # noqa: F401 (a fixture)

OBSERVERS = ["ann", "ben"]


def _loss(url: str) -> str:
    return url.rsplit("/", 1)[1].removesuffix(".png")


def _preferred(trial: dict) -> str:
    """A careful observer's side: the loss of the higher true score."""
    return "left" if TRUTH[_loss(trial["left"])] > TRUTH[_loss(trial["right"])] else "right"


def _study(stimuli, responses, sampling: str, practice: int) -> tuple[dict[str, list[str]], np.ndarray]:
    """Both observers answer, taking turns, every trial of theirs: the real ones as a careful observer, the practice
    against their preference, so that a practice answer counted would change the counts. Returns the real trials
    each was asked, in order, and the pooled counts of the analysis."""
    served = Served(stimuli, responses, OBSERVERS, sampling=sampling, trials_per_observer=8, practice_trials=practice)
    asked: dict[str, list[str]] = {observer: [] for observer in OBSERVERS}
    try:
        states = {observer: served.state(observer) for observer in OBSERVERS}
        while any(current["trial"] is not None for current in states.values()):
            for observer, current in states.items():
                trial = current["trial"]
                if trial is None:
                    continue
                if current["practice"] is not None:
                    assert trial["id"] == "practice-1" and current["practice"] == {"number": 1, "total": 1}
                    assert current["done"] == 0 and not asked[observer]  # the practice comes first
                    choice = "right" if _preferred(trial) == "left" else "left"
                else:
                    asked[observer].append(trial["id"])
                    choice = _preferred(trial)
                status, states[observer] = served.answer(observer, trial["id"], choice)
                assert status == 200
                if current["practice"] is not None:
                    assert states[observer]["practice"] is None and states[observer]["done"] == 0
                    assert served.answer(observer, "practice-1", choice)[0] == 409  # a replay
    finally:
        served.close()
    conditions, counts = observer_counts(load_manifest(stimuli / "manifest.json"), read_folder(responses))[1:]
    return asked, counts.sum(axis=0)


@pytest.mark.parametrize("sampling", ["full", "active"])
def test_the_practice_comes_first_and_changes_neither_trials_nor_counts_nor_jod(stimuli, tmp_path, sampling):  # noqa: F811
    without_asked, without = _study(stimuli, tmp_path / "without", sampling, practice=0)
    with_asked, counts = _study(stimuli, tmp_path / "with", sampling, practice=1)
    # Active sampling chose the same trials: its belief never saw the practice answers.
    assert with_asked == without_asked and all(len(trials) == 8 for trials in with_asked.values())
    assert np.array_equal(counts, without) and counts.sum() == 16
    assert np.array_equal(scale(counts), scale(without))
    assert not (tmp_path / "without" / PRACTICE).exists()
    for observer in OBSERVERS:
        practice = read_answers(tmp_path / "with" / PRACTICE / f"{observer}.jsonl").answers
        assert [answer["trial"] for answer in practice] == ["practice-1"]
        # Answered against the preference: had it counted, the counts would differ.
        assert TRUTH[practice[0]["chosen"]] < TRUTH[practice[0]["other"]]


def test_a_restarted_session_does_not_repeat_the_practice(stimuli, tmp_path):  # noqa: F811
    responses = tmp_path / "responses"
    first = Served(stimuli, responses, OBSERVERS, practice_trials=1)
    try:
        assert first.answer("ann", "practice-2", "left")[0] == 404  # no such practice trial
        trial = first.state("ann")["trial"]["id"]
        real = first.study.plans["ann"][0].id
        assert first.answer("ann", real, "left")[0] == 409  # not before the practice
        status, current = first.answer("ann", trial, "left")
        assert status == 200 and trial == "practice-1"
        for _ in range(2):
            status, current = first.answer("ann", current["trial"]["id"], "left")
            assert status == 200
    finally:
        first.close()
    # ben answered before practice trials existed, and lost nothing: he gets no practice either.
    (responses / "ben.jsonl").write_text((responses / "ann.jsonl").read_text().replace('"ann"', '"ben"'))
    second = Served(stimuli, responses, OBSERVERS, browser=OBSERVERS, practice_trials=1)
    second.tokens = first.tokens  # the same browsers, their session cookies kept across the restart
    try:
        for observer in OBSERVERS:
            current = second.state(observer)
            assert current["practice"] is None and current["done"] == 2
        assert second.state("ann")["trial"]["id"] == second.study.plans["ann"][2].id
    finally:
        second.close()
    assert len(read_answers(responses / PRACTICE / "ann.jsonl").answers) == 1
    assert not (responses / PRACTICE / "ben.jsonl").exists()


def test_bad_practice_counts_are_refused_in_one_line(stimuli, tmp_path):  # noqa: F811
    for bad in (-1, 13):
        with pytest.raises(ValueError, match=rf"^practice trials: expected 0 to the manifest's 12 trials, got {bad}$"):
            Study(stimuli, tmp_path / "r", ["ann"], practice_trials=bad)
