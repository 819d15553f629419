"""The study planner (lossbench.userstudy.planner and ``python -m lossbench.userstudy plan``)."""

import numpy as np
import pytest
from scipy.stats import norm

from lossbench.core.io import read_rows
from lossbench.userstudy.__main__ import main
from lossbench.userstudy.counts import THESIS_STUDIES, read_counts
from lossbench.userstudy.planner import DESIGNS, fewest, parse_jod, plan
from lossbench.userstudy.responses import observer_counts, read_folder
from lossbench.userstudy.server import Study
from lossbench.userstudy.stimuli import load_manifest
from lossbench.userstudy.thurstone import SIGMA, scale

from test_userstudy_app import stimuli  # noqa: F401 (the fixture: 4 losses × 2 images)

DENOISE = THESIS_STUDIES["denoise"].path


def test_two_conditions_need_the_observers_the_normal_approximation_predicts():
    # One pair d = 0.5 JOD apart: n answers estimate d with standard deviation σ √(p (1 − p)) / (φ(z) √n), z = d / σ
    # (delta method), so ±p at 95 % takes n = (1.96 sd / p)² comparisons. Every design asks the one pair.
    d, trials = 0.5, 10
    z = d / SIGMA
    sd = SIGMA * np.sqrt(norm.cdf(z) * norm.sf(z)) / norm.pdf(z)
    plans = plan(np.array([0.0, d]), 0.4, trials_per_observer=trials, studies=200, max_observers=15)
    assert [entry.design for entry in plans] == list(DESIGNS)
    for entry in plans:
        for precision in (0.4, 0.6):
            predicted = (1.96 * sd / precision) ** 2 / trials  # 8.6 and 3.8 observers
            # The binomial's discreteness and pwcmp's prior put the simulated percentile a little above the
            # approximation (about 10–30 % in 400 studies).
            assert 0.8 * predicted <= fewest(entry.error, precision) <= 1.5 * predicted + 1, (entry.design, precision)
        # Tighter targets need more observers, never fewer; one far beyond the simulated range is not reached.
        needed = [fewest(entry.error, precision) for precision in (1.0, 0.8, 0.6, 0.5, 0.4)]
        assert needed == sorted(needed) and needed[0] < needed[-1]
        assert fewest(entry.error, 0.1) is None
        assert entry.observers == fewest(entry.error, 0.4)
        # The error shrinks about as 1/√n: from 2 to 8 observers it halves (within the simulation's noise).
        assert entry.error[7] / entry.error[1] == pytest.approx(0.5, abs=0.12)


def test_fewest_counts_only_a_target_held_from_then_on():
    assert fewest(np.array([0.9, 0.5, 0.35, 0.28, 0.31, 0.25, 0.2]), 0.3) == 6
    assert fewest(np.array([0.2, 0.1]), 0.3) == 1
    assert fewest(np.array([0.9, 0.5, 0.31]), 0.3) is None


def test_parse_jod_reads_lists_and_analyse_tables(tmp_path):
    names, jod = parse_jod("0, 0.5,1.2")
    assert names == ["c1", "c2", "c3"] and jod.tolist() == [0.0, 0.5, 1.2]
    path = tmp_path / "jod.csv"
    path.write_text("condition,jod,ci_low,ci_high,observers,resampled\nl1,0.1,,,,none\nl2,-0.4,,,,none\n")
    names, jod = parse_jod(str(path))
    assert names == ["l1", "l2"] and jod.tolist() == [0.1, -0.4]


def test_cli_plans_from_the_thesis_denoising_counts(tmp_path, capsys):
    main(
        [
            "plan",
            "--counts",
            str(DENOISE),
            "--precision",
            "0.4",
            "--studies",
            "20",
            "--max-observers",
            "8",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    truth = scale(read_counts(DENOISE)[1])
    assert "the plan assumes the pilot's scores are the truth" in out
    assert f"l2 {truth[1]:+.2f}" in out and f"lpips_l2 {truth[3]:+.2f}" in out
    table = read_rows(tmp_path / "plan.csv")
    assert [row["design"] for row in table] == list(DESIGNS)
    for row in table:
        line = next(line for line in out.splitlines() if line.startswith(f"{row['design']}: "))
        assert int(row["comparisons"]) == 120 * int(row["observers"])
        if row["reached"] == "True":
            assert float(row["error95"]) <= 0.4
            assert (
                f"{row['observers']} observers × 120 trials = {row['comparisons']} comparisons reach ±0.40 JOD" in line
            )
        else:
            assert float(row["error95"]) > 0.4 and row["observers"] == "8" and "not reached within 8 observers" in line
    # 20 studies of 1680 comparisons (the thesis's 14 observers) reach ±0.4 JOD; 1 observer (120) does not.
    assert any(row["reached"] == "True" for row in table)
    assert all(int(row["observers"]) > 1 for row in table)
    assert (tmp_path / "plan.md").read_text().strip() == out.strip().rsplit("\n", 1)[0]


def test_cli_plans_from_a_pilot_answer_folder(stimuli, tmp_path, capsys):  # noqa: F811 (the fixture)
    responses = tmp_path / "responses"
    study = Study(stimuli, responses, ["o1", "o2"])
    for index, observer in enumerate(["o1", "o2"]):
        for number, trial in enumerate(study.plans[observer]):
            assert study.answer(observer, trial.id, "left" if (number + index) % 3 else "right")[0] == 200
    conditions, counts = observer_counts(load_manifest(stimuli / "manifest.json"), read_folder(responses))[1:]
    truth = scale(counts.sum(axis=0))
    arguments = ["--manifest", str(stimuli / "manifest.json"), "--responses", str(responses)]
    main(
        [
            "plan",
            *arguments,
            "--precision",
            "0.5",
            "--studies",
            "20",
            "--max-observers",
            "3",
            "--trials-per-observer",
            "12",
        ]
    )
    out = capsys.readouterr().out
    assert f"the pilot's scaled JOD ({responses}, 24 answers" in out
    assert "JOD: " + ", ".join(f"{name} {value:+.2f}" for name, value in zip(conditions, truth)) + "." in out
    assert sum(line.startswith(tuple(f"{design}: " for design in DESIGNS)) for line in out.splitlines()) == 3


def test_cli_says_plainly_when_the_limit_is_too_low(capsys):
    main(["plan", "--jod", "0,0.5,1.2", "--precision", "0.1", "--studies", "20", "--max-observers", "2"])
    out = capsys.readouterr().out
    assert out.count("±0.10 JOD not reached within 2 observers × 120 trials = 240 comparisons") == len(DESIGNS)
    assert "assumed JOD scores (--jod 0,0.5,1.2)" in out and "c3 +1.20" in out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--counts", "missing.csv", "--precision", "0.3"], "--counts missing.csv: no such file"),
        (["--jod", "missing.csv", "--precision", "0.3"], "--jod missing.csv: no such file"),
        (["--jod", "0,a,1", "--precision", "0.3"], "--jod 0,a,1: expected numbers separated by commas"),
        (["--jod", "0.5", "--precision", "0.3"], "--jod 0.5: expected at least 2 finite JOD scores"),
        (["--jod", "0,1", "--precision", "0"], "--precision: expected a positive half-width in JOD, got 0.0"),
        (["--jod", "0,1", "--precision", "-0.2"], "--precision: expected a positive half-width in JOD, got -0.2"),
        (["--jod", "0,1", "--precision", "0.3", "--studies", "5"], "--studies: expected at least 20"),
    ],
)
def test_bad_input_gives_a_one_line_error(arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", *arguments])
    text = str(exit_info.value.code)
    assert text.startswith("error: ") and message in text and "\n" not in text
