"""User-study analysis: pwcmp-equivalent JOD scaling, bootstrap, the thesis's data and its qualitative findings."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy.special import ndtr
from scipy.stats import kendalltau

from lossbench import paper
from lossbench.userstudy import bootstrap, scale, summarize
from lossbench.userstudy.agreement import agreement_rows, kendall_tau, published_values
from lossbench.userstudy.counts import THESIS_STUDIES, counts_from_probabilities, probabilities, read_counts, thesis_counts_from_paper, write_counts
from lossbench.userstudy.report import read_summary, write_jod_table, write_probability_table, write_summary
from lossbench.userstudy.scaling import SIGMA, _Problem

# Reference JOD values of the pwcmp toolbox (mantiuk/pwcmp pw_scale.m, the version with analytic
# gradients, defaults prior='gaussian', regularization='mean0'), run on 2026-11-26 in GNU Octave 7.3.0
# on the shipped count matrices, with normcdf/normpdf/norminv written with erfc/erfcinv and
# optimoptions replaced by optimset('GradObj', 'on', 'Display', 'off') since Octave 7 lacks both.
# "default": fminunc's default tolerances (what the toolbox does); "tight": TolFun = TolX = 1e-14,
# i.e. the toolbox's exact optimum. Order: l1, l2, msssim, lpips_l2, flip, adaptive.
PWCMP = {
    "denoise": {
        "default": [-0.1043596098, -0.6340604721, 0.0849863979, 0.7141075989, 0.0791816523, -0.1398555671],
        "tight": [-0.1044457007, -0.6349992105, 0.0848770573, 0.7155065524, 0.0790696776, -0.1400083759],
    },
    "mri": {
        "default": [0.1447214255, -0.0660630132, 0.4400210496, 0.1674318423, -0.3589392569, -0.3271720473],
        "tight": [0.1447445324, -0.0660851591, 0.4400382218, 0.1674103340, -0.3589041998, -0.3272037294],
    },
}


@pytest.fixture(scope="module")
def thesis():
    """Conditions, counts and a 1000-sample bootstrap summary of each thesis study."""
    result = {}
    for key, study in THESIS_STUDIES.items():
        conditions, counts = read_counts(study.path)
        result[key] = (conditions, counts, summarize(conditions, counts, n_samples=1000, seed=0))
    return result


def _index(summary, name):
    return summary.conditions.index(name)


@pytest.mark.parametrize("key", ["denoise", "mri"])
def test_scaling_agrees_with_pwcmp(key):
    _, counts = read_counts(THESIS_STUDIES[key].path)
    jod = scale(counts)
    assert np.abs(jod - PWCMP[key]["default"]).max() < 0.01
    assert np.abs(jod - PWCMP[key]["tight"]).max() < 1e-4
    assert abs(jod.mean()) < 1e-12


def test_scaling_recovers_a_known_scale():
    # Many trials drawn from Thurstone Case V with known scores: the estimate converges to them.
    truth = np.array([-1.0, -0.2, 0.4, 0.8])
    truth -= truth.mean()
    rng = np.random.default_rng(1)
    counts = np.zeros((4, 4))
    for i in range(4):
        for j in range(i + 1, 4):
            wins = rng.binomial(20000, ndtr((truth[i] - truth[j]) / SIGMA))
            counts[i, j], counts[j, i] = wins, 20000 - wins
    assert scale(counts) == pytest.approx(truth, abs=0.03)


def test_one_jod_is_75_percent():
    counts = np.array([[0, 75000], [25000, 0]])
    jod = scale(counts)
    assert jod[0] - jod[1] == pytest.approx(1.0, abs=0.01)


def test_gradient_matches_finite_differences():
    _, counts = read_counts(THESIS_STUDIES["mri"].path)
    problem = _Problem.from_counts(counts)
    q = np.random.default_rng(0).normal(0, 0.4, 6)
    value, gradient = problem.objective(q)
    step = 1e-6
    numeric = [(problem.objective(q + step * e)[0] - problem.objective(q - step * e)[0]) / (2 * step) for e in np.eye(6)]
    assert gradient == pytest.approx(numeric, rel=1e-5, abs=1e-5)


def test_unanimous_and_disconnected_designs_are_finite():
    unanimous = np.array([[0, 10, 0], [0, 0, 10], [0, 0, 0]])
    jod = scale(unanimous)
    assert np.all(np.isfinite(jod)) and jod[0] > jod[1] > jod[2]
    # Two components {0, 1} and {2, 3}: their best conditions are tied, as pwcmp does.
    disconnected = np.array([[0, 8, 0, 0], [2, 0, 0, 0], [0, 0, 0, 7], [0, 0, 3, 0]])
    jod = scale(disconnected)
    assert np.all(np.isfinite(jod)) and jod[0] == pytest.approx(jod[2], abs=0.05)


@pytest.mark.parametrize(
    "counts, message",
    [
        (np.ones((2, 3)), "square"),
        (np.array([[0, 1.5], [1, 0]]), "non-negative integers"),
        (np.array([[0, -1], [1, 0]]), "non-negative integers"),
        (np.array([[1, 1], [1, 0]]), "diagonal"),
    ],
)
def test_bad_counts_are_rejected(counts, message):
    with pytest.raises(ValueError, match=message):
        scale(counts)


def test_bootstrap_over_observers_and_over_trials():
    rng = np.random.default_rng(0)
    per_observer = np.zeros((5, 3, 3))
    for k in range(5):
        for i in range(3):
            for j in range(i + 1, 3):
                wins = rng.binomial(4, 0.7)
                per_observer[k, i, j], per_observer[k, j, i] = wins, 4 - wins
    samples = bootstrap(per_observer, n_samples=50, seed=3)
    assert samples.shape == (50, 3) and np.allclose(samples.mean(axis=1), 0, atol=1e-9)
    assert np.array_equal(samples, bootstrap(per_observer, n_samples=50, seed=3))
    assert not np.array_equal(samples, bootstrap(per_observer, n_samples=50, seed=4))
    # A resample of all observers is among the samples' support: identical observers give no spread.
    same = np.repeat(per_observer[:1], 4, axis=0)
    assert np.ptp(bootstrap(same, n_samples=10), axis=0).max() < 1e-9
    totals = bootstrap(per_observer.sum(axis=0), n_samples=50)
    assert totals.shape == (50, 3) and np.ptp(totals, axis=0).min() > 0
    with pytest.raises(ValueError, match="at least 2 observers"):
        bootstrap(per_observer[:1], n_samples=5)


def test_shipped_counts_reproduce_the_published_tables():
    for study in THESIS_STUDIES.values():
        conditions, counts = read_counts(study.path)
        derived_conditions, derived = thesis_counts_from_paper(study)
        assert conditions == derived_conditions and np.array_equal(counts, derived)
        published = paper.table(study.table)
        table = probabilities(counts)
        for r, loser in enumerate(conditions):
            for c, winner in enumerate(conditions):
                assert round(table[r, c], 4) == published[loser][winner]
    _, denoise = read_counts(THESIS_STUDIES["denoise"].path)
    assert np.all((denoise + denoise.T)[~np.eye(6, dtype=bool)] == 112)
    conditions, mri = read_counts(THESIS_STUDIES["mri"].path)
    trials = mri + mri.T
    pair = conditions.index("lpips_l2"), conditions.index("adaptive")
    assert trials[pair] == 58 and mri[pair] == 39  # LPIPS+l2 chosen over Adaptive 39 times of 58
    assert np.sum(trials == 48) == 28


def test_wrong_number_of_trials_is_detected():
    published = paper.table("table_6_5")
    names = list(published)
    table = np.array([[published[r][c] for c in names] for r in names])
    with pytest.raises(ValueError, match="not k/48"):
        counts_from_probabilities(table, np.full((6, 6), 48.0))


def test_per_observer_counts_round_trip(tmp_path):
    counts = np.array([[[0, 2], [1, 0]], [[0, 0], [3, 0]]])
    write_counts(["a", "b"], counts, tmp_path / "c.csv", observers=["x", "y"])
    names, back = read_counts(tmp_path / "c.csv")
    assert names == ["a", "b"] and np.array_equal(back, counts)


def test_denoising_findings_of_section_7_1_3(thesis):
    conditions, counts, s = thesis["denoise"]
    p, order = s.p_values, [s.conditions[i] for i in np.argsort(-s.jod)]
    lpips, l2 = _index(s, "lpips_l2"), _index(s, "l2")
    # "easy to crown LPIPS + l2 the winner. MS-SSIM comes at second place and FLIP is close behind on third"
    assert order[:3] == ["lpips_l2", "msssim", "flip"]
    assert all(p[lpips, j] < 0.025 for j in range(6) if j != lpips)
    # "It is significant that l2 obtains a lower score than any other model"
    assert order[-1] == "l2" and all(p[l2, j] < 0.025 for j in range(6) if j != l2)
    # "the difference between MS-SSIM and FLIP is not significant"; "FLIP is significantly better than Adaptive"
    assert p[_index(s, "msssim"), _index(s, "flip")] >= 0.025
    assert p[_index(s, "flip"), _index(s, "adaptive")] < 0.025
    # "l1 obtains a better score than Adaptive"; "Nor is it clear what ranking l1 should have"
    l1 = _index(s, "l1")
    assert s.jod[l1] > s.jod[_index(s, "adaptive")]
    assert all(p[l1, _index(s, name)] >= 0.025 for name in ("msssim", "flip", "adaptive"))
    # Table 6.2: LPIPS+l2 loses to FLIP more often than to MS-SSIM.
    table = probabilities(counts)
    assert table[lpips, _index(s, "flip")] > table[lpips, _index(s, "msssim")]


def test_mri_findings_of_section_7_2_3(thesis):
    conditions, counts, s = thesis["mri"]
    p = s.p_values
    index = {name: _index(s, name) for name in conditions}
    # "MS-SSIM is the big winner"; "FLIP and Adaptive obtain the lower scores"
    assert s.conditions[int(np.argmax(s.jod))] == "msssim"
    assert {s.conditions[i] for i in np.argsort(s.jod)[:2]} == {"flip", "adaptive"}
    # "the difference between MS-SSIM and LPIPS + l2 is not significant, nor is the difference between l1 and LPIPS + l2"
    assert p[index["msssim"], index["lpips_l2"]] >= 0.025
    assert p[index["l1"], index["lpips_l2"]] >= 0.025
    # "l2 ... being better than both Adaptive and FLIP"; "l1 is performing significantly better than FLIP"
    assert s.jod[index["l2"]] > max(s.jod[index["adaptive"]], s.jod[index["flip"]])
    assert s.jod[index["l1"]] > s.jod[index["flip"]] and p[index["l1"], index["flip"]] < 0.025
    # Table 6.5: "there is now a 50% probability to chose either of them" (FLIP vs Adaptive, FLIP vs l2).
    table = probabilities(counts)
    assert table[index["flip"], index["adaptive"]] == table[index["flip"], index["l2"]] == 0.5


def test_tables_mark_winners_and_ties(thesis, tmp_path):
    conditions, counts, s = thesis["mri"]
    paths = write_probability_table(conditions, counts, tmp_path / "t", "caption")
    md = paths[1].read_text()
    flip_row = next(line for line in md.splitlines() if line.startswith("| FLIP |"))
    assert "**0.7292**" in flip_row and "| 0.5000 |" in flip_row and "**0.5000**" not in md
    assert r"\textbf{0.7292}" in paths[2].read_text()
    with open(paths[0]) as handle:
        rows = {row["loser"]: row for row in csv.DictReader(handle)}
    assert float(rows["lpips_l2"]["adaptive"]) == paper.table("table_6_5")["lpips_l2"]["adaptive"]
    jod_paths = write_jod_table(s, tmp_path / "j", "caption")
    assert "**0.440**" in jod_paths[1].read_text()


def test_summary_round_trips_and_intervals_contain_estimate(thesis, tmp_path):
    _, _, s = thesis["denoise"]
    write_summary(s, tmp_path)
    back = read_summary(tmp_path)
    assert back.conditions == s.conditions
    assert back.jod == pytest.approx(s.jod, abs=1e-6) and back.p_values == pytest.approx(s.p_values, abs=1e-4)
    assert np.all(s.low < s.jod) and np.all(s.jod < s.high)


def test_kendall_tau_matches_scipy_and_rows_use_published_tables(thesis):
    rng = np.random.default_rng(0)
    reference = np.array([1.0, 2.0, 2.0, 5.0, 3.0])
    samples = rng.integers(0, 4, (20, 5)).astype(float)
    ours = kendall_tau(reference, samples)
    theirs = [kendalltau(reference, row).statistic for row in samples]
    assert ours == pytest.approx(theirs, nan_ok=True)
    _, _, s = thesis["denoise"]
    rows = {row["metric"]: row for row in agreement_rows(s, published_values("table_6_1"), "thesis")}
    # LPIPS (lower is better) orders the denoising models most like the observers do.
    assert float(rows["lpips"]["tau"]) == max(float(row["tau"]) for row in rows.values())
    assert float(rows["lpips"]["ci_low"]) <= float(rows["lpips"]["tau"]) <= float(rows["lpips"]["ci_high"])
