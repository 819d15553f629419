"""Observer screening (lossbench.userstudy.screening): leave-one-observer-out likelihood, flags and the table."""

import numpy as np
import pytest
from scipy.special import ndtr

from lossbench.core.io import read_rows
from lossbench.userstudy.counts import THESIS_STUDIES, read_counts, write_counts
from lossbench.userstudy.screening import (
    FLAG_Z,
    observer_fit,
    screen,
    screen_study,
    without_flagged,
    write_screening,
)
from lossbench.userstudy.simulation import observer_counts
from lossbench.userstudy.thurstone import SIGMA, scale

DENOISE = scale(read_counts(THESIS_STUDIES["denoise"].path)[1])


def test_expected_log_likelihood_and_its_spread_are_those_of_careful_answers():
    # Under the others' scale, an observer answering as that scale says: Monte Carlo of their log-likelihood.
    rng = np.random.default_rng(0)
    others = observer_counts(DENOISE, 9, 8, rng).sum(axis=0)
    q = scale(others)
    own = observer_counts(q, 1, 8, rng)[0]
    fit = observer_fit("o", own, others)
    rows, cols = np.triu_indices(6, 1)
    p = ndtr((q[rows] - q[cols]) / SIGMA)
    wins = rng.binomial(8, p, size=(20000, len(p)))
    draws = (wins * np.log(p) + (8 - wins) * np.log(1 - p)).sum(axis=1)
    assert fit.expected == pytest.approx(draws.mean(), abs=0.05)
    assert fit.sd == pytest.approx(draws.std(), rel=0.02)
    assert fit.trials == 120
    assert fit.log_likelihood == pytest.approx(
        np.sum(own[rows, cols] * np.log(p) + own[cols, rows] * np.log(1 - p)), abs=1e-9
    )


def test_an_observer_who_reverses_the_scale_is_flagged_and_a_consistent_one_is_not():
    rng = np.random.default_rng(1)
    counts = observer_counts(DENOISE, 6, 8, rng)
    counts[0] = counts[0].T  # observer a prefers what the others reject
    fits = screen(list("abcdef"), counts)
    assert fits[0].flagged and fits[0].z < -5
    assert not any(fit.flagged for fit in fits[1:])


def test_indistinguishable_conditions_flag_nobody():
    # Equal scores: every answer is a coin flip for everyone, so a random observer is no outlier.
    counts = observer_counts(np.zeros(4), 5, 10, np.random.default_rng(2), random=[0])
    fits = screen(list("abcde"), counts, threshold=3.0)
    assert not any(fit.flagged for fit in fits)


def test_without_flagged_keeps_everyone_else_and_names_who_is_left_out(tmp_path):
    rng = np.random.default_rng(3)
    counts = observer_counts(DENOISE, 5, 8, rng)
    counts[2] = counts[2].T
    names = ["o1", "o2", "o3", "o4", "o5"]
    fits = screen(names, counts)
    kept, kept_counts, left_out = without_flagged(names, counts, fits)
    assert left_out == ["o3"] and kept == ["o1", "o2", "o4", "o5"]
    np.testing.assert_array_equal(kept_counts, counts[[0, 1, 3, 4]])
    csv_path, md_path = write_screening(fits, tmp_path / "screening")
    rows = read_rows(csv_path)
    assert [row["observer"] for row in rows] == names
    assert [row["flagged"] for row in rows] == ["no", "no", "yes", "no", "no"]
    assert "Flagged: o3. The JOD is reported with and without them." in md_path.read_text()


def test_bad_inputs_are_refused_in_one_line():
    counts = observer_counts(DENOISE, 3, 2, np.random.default_rng(4))
    with pytest.raises(ValueError, match="per-observer counts"):
        screen(["a"], counts.sum(axis=0))
    with pytest.raises(ValueError, match="at least 2 observers"):
        screen(["a"], counts[:1])
    with pytest.raises(ValueError, match="2 ids for 3"):
        screen(["a", "b"], counts)
    with pytest.raises(ValueError, match="threshold"):
        screen(["a", "b", "c"], counts, threshold=0.0)
    counts[1, 0, 0] = 1
    with pytest.raises(ValueError, match=r"counts\[1\] \(observer b\)"):
        screen(["a", "b", "c"], counts)


def test_a_random_observer_among_ten_is_flagged_and_careful_ones_rarely():
    # The thesis's denoising study: its JODs, each observer answering all 15 pairs for 8 images (120 trials); 100
    # studies take ~3 s. bench/userstudy_screening.py runs 600.
    rng = np.random.default_rng(5)
    studies = 100
    random_flagged = careful_flagged = any_careful_flagged = 0
    for _ in range(studies):
        fits = screen([f"o{k}" for k in range(10)], observer_counts(DENOISE, 10, 8, rng, random=[0]), FLAG_Z)
        random_flagged += fits[0].flagged
        careful = sum(fit.flagged for fit in fits[1:])
        careful_flagged += careful
        any_careful_flagged += careful > 0
    assert random_flagged / studies >= 0.8
    assert careful_flagged / (9 * studies) <= 0.1
    assert any_careful_flagged / studies <= 0.1


def test_analyse_reports_the_jod_with_and_without_flagged_observers(tmp_path, capsys):
    from lossbench.userstudy.__main__ import main

    conditions = read_counts(THESIS_STUDIES["denoise"].path)[0]
    counts = observer_counts(DENOISE, 6, 8, np.random.default_rng(6))
    counts[3] = counts[3].T
    names = ["ann", "ben", "cat", "dan", "eve", "fay"]
    write_counts(conditions, counts, tmp_path / "six.csv", observers=names)
    out = tmp_path / "out"
    main(["analyse", "--counts", str(tmp_path / "six.csv"), "--out", str(out), "--samples", "20"])
    printed = capsys.readouterr().out
    assert "screening: flagged dan (z < -2.5;" in printed
    assert [row["flagged"] for row in read_rows(out / "screening.csv")] == ["no", "no", "no", "yes", "no", "no"]
    # The study's result keeps every observer; the JOD without the flagged one is beside it.
    assert {row["observers"] for row in read_rows(out / "jod.csv")} == {"6"}
    assert {row["observers"] for row in read_rows(out / "without_flagged" / "jod.csv")} == {"5"}
    np.testing.assert_allclose(
        [float(row["jod"]) for row in read_rows(out / "without_flagged" / "jod.csv")],
        scale(counts[[0, 1, 2, 4, 5]].sum(axis=0)),
        atol=1e-6,
    )
    assert "without the flagged observers dan" in (out / "without_flagged" / "jod_table.md").read_text()
    # Nobody flagged: the table says so, and there is no second JOD.
    careful = [name for name in names if name != "dan"]
    write_counts(conditions, counts[[0, 1, 2, 4, 5]], tmp_path / "five.csv", observers=careful)
    main(["analyse", "--counts", str(tmp_path / "five.csv"), "--out", str(tmp_path / "five"), "--samples", "20"])
    assert "screening: no observer flagged (z < -2.5)" in capsys.readouterr().out
    assert "No observer is flagged." in (tmp_path / "five" / "screening.md").read_text()
    assert not (tmp_path / "five" / "without_flagged").exists()


def test_two_observers_are_too_few_to_screen_and_both_are_kept(tmp_path):
    counts = observer_counts(DENOISE, 2, 8, np.random.default_rng(7))
    fits, kept, kept_counts, left_out = screen_study(["a", "b"], counts)
    assert (fits, kept, left_out) == ([], ["a", "b"], []) and kept_counts is counts
    csv_path, md_path = write_screening(fits, tmp_path / "screening", observers=2)
    assert read_rows(csv_path) == []
    assert md_path.read_text().startswith("Observer screening: 2 observer(s), too few to screen (at least 3 needed).")
