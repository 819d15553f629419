"""User-study analysis: pwcmp-equivalent JOD scaling, bootstrap, the thesis's data and its qualitative findings."""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtr
from scipy.stats import kendalltau

from lossbench.pipeline import userstudy as pipeline
from lossbench.pipeline.config import validate
from lossbench.pipeline.config_file import ConfigError
from lossbench.report import paper
from lossbench.userstudy import bootstrap, scale, summarize, thurstone
from lossbench.userstudy.agreement import agreement_rows, kendall_tau, published_values
from lossbench.userstudy.counts import (
    DATA,
    THESIS_STUDIES,
    counts_from_probabilities,
    probabilities,
    read_counts,
    thesis_counts_from_paper,
    write_counts,
)
from lossbench.userstudy.report import anchored, read_summary, write_jod_table, write_probability_table, write_summary
from lossbench.userstudy.responses import ObserverFile, observer_counts, read_folder
from lossbench.userstudy.scaling import MIN_OBSERVERS, SIGMA
from lossbench.userstudy.thurstone import _components, _Problem

# Reference JOD values of the pwcmp toolbox: mantiuk/pwcmp at commit
# 07876b296a22b8e5fc25bef320f8cb26dc752b11 (2025-07-06), pw_scale.m unchanged, run on 2026-12-01 in
# GNU Octave 7.3.0 (Debian 12) on the shipped count matrices by tests/data/pwcmp_octave/pwcmp_reference.m.
# Shims for what Octave 7 lacks, beside that script: normcdf/normpdf/norminv from erfc/erfcinv, and
# optimoptions as optimset('GradObj', 'on', 'Display', 'off', TolFun = TolX = 1e-14, MaxIter = 1e5,
# MaxFunEvals = 1e6). At those tolerances fminunc has reached the optimum: TolFun = TolX = 1e-16 moves
# no value by more than 6e-7 JOD. Options: "default" = pw_scale(D) (prior 'gaussian', regularization
# 'mean0'); "prior_none" = pw_scale(D, {'prior', 'none'}); "fix0" = pw_scale(D, {'regularization', 'fix0'}).
# "toolbox_tolerances": pw_scale(D) with fminunc's default tolerances, which stops up to 0.0052 JOD
# short of the optimum. Order: l1, l2, msssim, lpips_l2, flip, adaptive.
PWCMP = {
    "denoise": {
        "default": [-0.099103961, -0.627528657, 0.082242458, 0.701452789, 0.076687030, -0.133749659],
        "prior_none": [-0.104445701, -0.634999211, 0.084877057, 0.715506552, 0.079069678, -0.140008376],
        "fix0": [0.0, -0.528425112, 0.181345858, 0.800556649, 0.175790438, -0.034645916],
        "toolbox_tolerances": [-0.099400519, -0.628256565, 0.085178814, 0.696282802, 0.079327935, -0.133132467],
    },
    "mri": {
        "default": [0.142626818, -0.065316276, 0.434788803, 0.165270164, -0.354238023, -0.323131486],
        "prior_none": [0.144747273, -0.066088002, 0.440036445, 0.167412772, -0.358905906, -0.327202581],
        "fix0": [0.0, -0.207943160, 0.292161890, 0.022643313, -0.496864954, -0.465758395],
        "toolbox_tolerances": [0.142647884, -0.065378366, 0.434786034, 0.165368824, -0.354146297, -0.323278080],
    },
}
# pwcmp on saved actively sampled answer sets (issue 30): the same toolbox, commit, Octave, shims and options as
# PWCMP, run by the same script on 2026-12-07; tests/data/pwcmp_octave/make_active_answers.py wrote the sets with
# the app's active design (seeded). "active_6": 60 comparisons of the 6 denoising losses (every pair asked, 3 of 15
# unanimously); "active_18": 420 comparisons of 6 losses x 3 seeds (18 of 153 pairs never asked, 62 unanimous, the
# graph connected); "active_18_early": the same study after 12 comparisons, every answer unanimous and the graph in
# 6 disconnected parts, which pw_scale (and scale) join by 1 : 1 ties between the parts' best conditions by the ISO
# 20462 estimate. TolFun = TolX = 1e-16 moves no value by more than 1.4e-6 JOD (active_18 fix0). With fminunc's
# default tolerances pwcmp stops up to 0.0141 JOD short of the optimum (active_18 fix0; 0.0020 for the default
# options on active_18_early), so only the default options' "toolbox_tolerances" are recorded, as for PWCMP.
# "active_18_early" has no "prior_none" reference: without the prior, unanimous answers have no finite maximum
# likelihood (the scores diverge) and pw_scale stops where its tolerance does (largest |score| 9.4 JOD at 1e-14, 13.2
# at 1e-16, 8.1 at fminunc's defaults).
# Conditions: the CSV's columns.
# fmt: off
PWCMP_ACTIVE = {
    "active_6": {
        "default": [-0.069030699, -0.371296758, -0.133273924, 1.080950213, -0.141281190, -0.366067641],
        "prior_none": [-0.137900309, -0.417477278, -0.189498984, 1.356075305, -0.181451199, -0.429747535],
        "fix0": [0.0, -0.302266174, -0.064243239, 1.149980654, -0.072250634, -0.297036936],
        "toolbox_tolerances": [-0.069061230, -0.371298180, -0.133303865, 1.081054497, -0.141290038, -0.366101184],
    },
    "active_18": {
        "default": [
            -0.502736665, 0.227160548, -0.309399300, -0.884229619, -0.786148464, -0.385914224,
            -0.453916923, -0.360941381, 0.768140252, 1.696931930, 0.553525057, -0.176901682,
            0.329222008, 0.860943228, 0.577338592, -0.304765303, -0.203556105, -0.644751948,
        ],
        "prior_none": [
            -0.579672325, 0.237558291, -0.343038632, -0.995485235, -0.866688328, -0.443558380,
            -0.525602187, -0.414503438, 0.883442348, 1.926768394, 0.639494656, -0.207779044,
            0.359746565, 0.990990365, 0.657798391, -0.349739314, -0.249909655, -0.719822473,
        ],
        "fix0": [
            0.0, 0.729896039, 0.193336189, -0.381494120, -0.283412954, 0.116820921,
            0.048818470, 0.141794123, 1.270875564, 2.199667215, 1.056260469, 0.325833864,
            0.831957304, 1.363678595, 1.080074021, 0.197970030, 0.299179347, -0.142016342,
        ],
        "toolbox_tolerances": [
            -0.502520541, 0.227205744, -0.309287736, -0.884227532, -0.785869221, -0.385690125,
            -0.453744774, -0.360518185, 0.767632778, 1.696282209, 0.553188315, -0.176734581,
            0.329218272, 0.860642285, 0.576995751, -0.304776240, -0.203147022, -0.644649397,
        ],
    },
    "active_18_early": {
        "default": [
            -0.338435963, -2.369052010, 1.692180195, 1.692179993, 1.692179591, -0.338435963,
            1.692180208, -0.338436007, 1.692179990, 1.692179991, -0.338436038, -0.338435989,
            -2.369052010, -0.338436039, -0.338435988, -2.369052010, -0.338435963, -0.338435988,
        ],
        "fix0": [
            0.0, -2.030616212, 2.030615963, 2.030615971, 2.030615944, -0.000000066,
            2.030615990, -0.000000011, 2.030615967, 2.030615961, -0.000000010, -0.000000082,
            -2.030616223, -0.000000014, -0.000000049, -2.030616135, -0.000000064, -0.000000075,
        ],
        "toolbox_tolerances": [
            -0.336435719, -2.369596144, 1.692167039, 1.692346387, 1.692167039, -0.336435719,
            1.692167039, -0.340036644, 1.692346386, 1.692346386, -0.340036644, -0.338444919,
            -2.369596144, -0.340036644, -0.338444919, -2.369596144, -0.336435719, -0.338444919,
        ],
    },
}
# fmt: on
#: Largest accepted |ours − toolbox| in JOD (the two optima agree to 4e-7; issue 10 asks for 1e-3).
PWCMP_TOLERANCE = 1e-4
#: The saved actively sampled answer sets of PWCMP_ACTIVE.
ACTIVE_ANSWERS = Path(__file__).resolve().parent / "data"
OPTIONS = {"default": {}, "prior_none": {"prior": "none"}, "fix0": {"regularization": "fix0"}}


@pytest.fixture(scope="module")
def thesis():
    """Conditions, counts and a 1000-sample bootstrap summary of each thesis study."""
    result = {}
    for key, study in THESIS_STUDIES.items():
        conditions, counts = read_counts(study.path)
        result[key] = (
            conditions,
            counts,
            summarize(conditions, counts, n_samples=1000, seed=0, observers=study.observers),
        )
    return result


def _index(summary, name):
    return summary.conditions.index(name)


@pytest.mark.parametrize("key", ["denoise", "mri"])
@pytest.mark.parametrize("variant", ["default", "prior_none", "fix0"])
def test_scaling_agrees_with_pwcmp(key, variant):
    _, counts = read_counts(THESIS_STUDIES[key].path)
    jod = scale(counts, **OPTIONS[variant])
    assert np.abs(jod - PWCMP[key][variant]).max() < PWCMP_TOLERANCE
    assert abs(jod.mean()) < 1e-12 if variant != "fix0" else jod[0] == 0.0
    # The toolbox with fminunc's own tolerances stops short of the optimum, but within 0.01 JOD.
    if variant == "default":
        assert np.abs(jod - PWCMP[key]["toolbox_tolerances"]).max() < 0.01


@pytest.mark.parametrize(
    "key, variant", [(key, variant) for key, values in PWCMP_ACTIVE.items() for variant in OPTIONS if variant in values]
)
def test_scaling_of_actively_sampled_answers_agrees_with_pwcmp(key, variant):
    # Issue 30: the JOD of an active design's sparse answers is still pwcmp's (the largest difference is 1.5e-6).
    _, counts = read_counts(ACTIVE_ANSWERS / f"{key.replace('active', 'active_answers')}.csv")
    jod = scale(counts, **OPTIONS[variant])
    assert np.abs(jod - PWCMP_ACTIVE[key][variant]).max() < PWCMP_TOLERANCE
    assert abs(jod.mean()) < 1e-12 if variant != "fix0" else jod[0] == 0.0
    if variant == "default":
        assert np.abs(jod - PWCMP_ACTIVE[key]["toolbox_tolerances"]).max() < 0.01


def test_active_answers_through_answer_files_scale_as_pwcmp(tmp_path):
    # The saved answers written as the app writes them, one JSON line an answer over 14 observers' files, and read
    # back by the analysis: the pooled counts are the saved ones and their JOD is still pwcmp's.
    conditions, counts = read_counts(ACTIVE_ANSWERS / "active_answers_18.csv")
    answers = [(i, j) for i, j in zip(*np.nonzero(counts)) for _ in range(int(counts[i, j]))]
    trials, files = [], {}
    for index, (i, j) in enumerate(np.random.default_rng(0).permutation(answers)):
        trial = {"id": f"t{index:04d}", "a": conditions[min(i, j)], "b": conditions[max(i, j)]}
        observer = f"o{index % 14:02d}"
        files.setdefault(observer, ObserverFile(tmp_path / f"{observer}.jsonl", observer)).append(
            {"observer": observer, "trial": trial["id"], "chosen": conditions[i], "other": conditions[j]}
        )
        trials.append(trial)
    observers, read_conditions, per_observer = observer_counts(
        {"conditions": conditions, "trials": trials}, read_folder(tmp_path)
    )
    assert len(observers) == 14 and read_conditions == conditions
    assert np.array_equal(per_observer.sum(axis=0), counts)
    assert np.abs(scale(per_observer.sum(axis=0)) - PWCMP_ACTIVE["active_18"]["default"]).max() < PWCMP_TOLERANCE


def test_saved_active_answers_are_sparse():
    # What the references above cover: pairs never asked, unanimous pairs, and a disconnected comparison graph.
    _, counts = read_counts(ACTIVE_ANSWERS / "active_answers_18.csv")
    asked = (counts + counts.T)[np.triu_indices(18, 1)]
    assert counts.sum() == 420 and (asked == 0).sum() == 18 and asked.max() >= 5
    _, early = read_counts(ACTIVE_ANSWERS / "active_answers_18_early.csv")
    assert early.sum() == 12 and _components((early + early.T) > 0).max() == 5


def test_gaussian_prior_has_its_effect():
    # The denoising study has 112 trials per pair: the prior's terms are ~1e-34 and must not vanish.
    _, counts = read_counts(THESIS_STUDIES["denoise"].path)
    assert np.abs(scale(counts) - scale(counts, prior="none")).max() > 0.01
    # Ten times the trials: the likelihoods underflow in linear space but not in log space.
    jod = scale(10 * counts)
    assert np.all(np.isfinite(jod)) and np.abs(jod - scale(10 * counts, prior="none")).max() < 0.01


@pytest.mark.parametrize(
    "options, message",
    [
        ({"prior": "bounded"}, "prior: expected one of gaussian, none"),
        ({"regularization": "fix1"}, "regularization: expected one of mean0, fix0"),
    ],
)
def test_unknown_options_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        scale(np.array([[0, 1], [1, 0]]), **options)


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


@pytest.mark.parametrize("prior", ["gaussian", "none"])
def test_gradient_matches_finite_differences(prior):
    _, counts = read_counts(THESIS_STUDIES["mri"].path)
    problem = _Problem.from_counts(counts[None], prior)
    q = np.random.default_rng(0).normal(0, 0.4, (1, 6))
    value, gradient = problem.objective(q)
    step = 1e-6
    numeric = [
        (problem.objective(q + step * e)[0] - problem.objective(q - step * e)[0])[0] / (2 * step) for e in np.eye(6)
    ]
    assert gradient[0] == pytest.approx(numeric, rel=1e-5, abs=1e-5)


def test_batched_scaling_equals_one_at_a_time():
    _, counts = read_counts(THESIS_STUDIES["denoise"].path)
    samples = bootstrap(counts, n_samples=20, seed=5)
    rng = np.random.default_rng(5)
    upper = np.triu_indices(6, 1)
    trials, share = (counts + counts.T)[upper].astype(int), counts[upper] / (counts + counts.T)[upper]
    for sample in samples:
        wins = rng.binomial(trials, share)
        resampled = np.zeros_like(counts)
        resampled[upper], resampled.T[upper] = wins, trials - wins
        assert sample == pytest.approx(scale(resampled), abs=1e-7)


def test_fallback_solver_reaches_the_same_optimum(monkeypatch):
    # Samples that Newton's method leaves unconverged are finished by BFGS: here all of them.
    _, counts = read_counts(THESIS_STUDIES["mri"].path)
    newton = scale(counts)
    monkeypatch.setattr(thurstone, "_NEWTON_ITERATIONS", 0)
    assert scale(counts) == pytest.approx(newton, abs=1e-6)


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
    same = np.repeat(per_observer[:1], 5, axis=0)
    assert np.ptp(bootstrap(same, n_samples=10), axis=0).max() < 1e-9
    totals = bootstrap(per_observer.sum(axis=0), n_samples=50)
    assert totals.shape == (50, 3) and np.ptp(totals, axis=0).min() > 0
    # Four observers give 35 distinct resamples: too few to resample.
    with pytest.raises(ValueError, match=r"needs at least 5 observers, got 4 \(35 distinct resamples\)"):
        bootstrap(per_observer[:4], n_samples=5)


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


def test_counts_command_never_writes_the_package_data(tmp_path):
    shipped = {
        study.path: (study.path.read_bytes(), study.path.stat().st_mtime_ns) for study in THESIS_STUDIES.values()
    }
    command = [sys.executable, "-m", "lossbench.userstudy.counts"]
    helped = subprocess.run([*command, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--out" in helped.stdout
    checked = subprocess.run([*command, "--check"], capture_output=True, text=True)
    assert checked.returncode == 0 and "equals the counts derived from thesis table_6_2" in checked.stdout
    refused = subprocess.run([*command, "--out", str(DATA)], capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stderr.strip().endswith(
        "refusing to write into the package's data folder; choose another folder"
    )
    assert subprocess.run([*command, "--out", str(tmp_path)], capture_output=True).returncode == 0
    for path in shipped:
        assert (tmp_path / path.name).read_bytes() == shipped[path][0]
    again = subprocess.run([*command, "--out", str(tmp_path)], capture_output=True, text=True)
    assert again.returncode == 1 and "thesis_denoise.csv exists already" in again.stderr
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in shipped} == shipped


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
    # "the difference between MS-SSIM and LPIPS + l2 is not significant, nor is the difference between l1 and LPIPS +
    # l2"
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
    assert "**0.435**" in jod_paths[1].read_text()


def test_jod_origins(thesis):
    _, _, s = thesis["denoise"]
    lowest, words = anchored(s, "lowest_is_1")
    assert (
        words == "lowest-scoring loss, l2, at 1"
        and lowest.jod.min() == pytest.approx(1.0)
        and lowest.jod[_index(s, "l2")] == pytest.approx(1.0)
    )
    assert anchored(s, "mean0")[0].jod == pytest.approx(s.jod) and anchored(s, "mean0")[1] == "mean 0"
    flip, words = anchored(s, "flip")
    assert words == "FLIP at 0" and flip.jod[_index(s, "flip")] == 0.0
    # A shift moves scores and intervals alike and changes no p-value.
    assert flip.high - flip.jod == pytest.approx(s.high - s.jod) and flip.p_values == pytest.approx(s.p_values)
    with pytest.raises(ValueError, match="jod_origin: expected lowest_is_1, mean0 or one of the study's losses"):
        anchored(s, "lowest")


@pytest.mark.parametrize(
    "userstudy, message",
    [
        (
            {"jod_origin": "lowest"},
            (
                r"tiny\.yaml: userstudy\.jod_origin: expected lowest_is_1, mean0 or a configured loss \(l1, l2, flip\),"
                r" got 'lowest'"
            ),
        ),
        (
            {"stimuli": {"knee": ["a"]}},
            r"tiny\.yaml: userstudy\.studies\.mri: task brain has no images under userstudy\.stimuli",
        ),
        ({"studies": {"mri": ["liver"]}}, r"tiny\.yaml: userstudy\.studies\.mri\.0: 'liver' is not one of"),
    ],
)
def test_bad_userstudy_config_is_rejected_in_one_line(tiny_config, userstudy, message):
    tiny_config["userstudy"] = userstudy
    with pytest.raises(ConfigError, match=message):
        validate(tiny_config, "tiny.yaml")


def test_default_studies_follow_the_thesis(tiny_config):
    # One MRI study of knee and brain images; tasks without stimuli make no study.
    tiny_config["userstudy"] = {"stimuli": {"knee": ["a", "b"], "brain": ["c", "d"]}}
    config = validate(tiny_config, "tiny.yaml")
    assert config["userstudy"]["jod_origin"] == "lowest_is_1"
    assert pipeline.study_tasks(config) == {"mri": ["knee", "brain"]}
    config["userstudy"]["studies"] = {"knee": ["knee"], "brain": ["brain"]}
    assert pipeline.study_tasks(config) == {"knee": ["knee"], "brain": ["brain"]}


def test_summary_round_trips_and_intervals_contain_estimate(thesis, tmp_path):
    _, _, s = thesis["denoise"]
    write_summary(s, tmp_path)
    back = read_summary(tmp_path)
    assert back.conditions == s.conditions and (back.observers, back.resampled) == (14, "trials")
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


def test_chance_p_value_is_exact_over_all_orderings():
    from lossbench.userstudy.agreement import chance_p_value

    metric = np.arange(5.0)
    assert chance_p_value(metric, metric) == pytest.approx(1 / 120)  # only the identical ordering has τ = 1
    assert chance_p_value(metric, -metric) == 1.0
    swapped = np.array([1.0, 0.0, 2.0, 3.0, 4.0])  # τ = 0.8: the identity and the 4 adjacent swaps reach it
    assert chance_p_value(metric, swapped) == pytest.approx(5 / 120)


def test_agreement_rows_say_whether_the_thesis_metrics_agree_beyond_chance(thesis):
    _, _, s = thesis["denoise"]
    rows = {row["metric"]: row for row in agreement_rows(s, published_values("table_6_1"), "thesis")}
    assert all(0 < float(row["p_chance"]) <= 1 for row in rows.values())
    assert float(rows["lpips"]["p_chance"]) < float(rows["psnr"]["p_chance"])


def test_ranking_triangle_has_a_legend_below_the_axes(monkeypatch):
    from lossbench.userstudy import report

    saved = []
    monkeypatch.setattr(report, "save_figure", lambda figure, paths: saved.append(figure))
    conditions, counts = read_counts(THESIS_STUDIES["denoise"].path)
    report.ranking_triangle(summarize(conditions, counts, 20, 0), ["unused.png"], "Thesis user study, denoising")
    (legend,) = saved[0].legends
    assert [text.get_text() for text in legend.get_texts()] == [
        "significant (p < 0.025, one-sided)",
        "not significant",
        "loss at its JOD; edge labels: JOD difference",
    ]
    saved[0].canvas.draw()
    axes_box, legend_box = saved[0].axes[0].get_window_extent(), legend.get_window_extent()
    assert legend_box.y1 < axes_box.y0, "the legend overlaps the axes"


def test_analyse_command_puts_table_and_figures_at_one_origin_named_in_caption_and_axes(tmp_path, monkeypatch):
    from lossbench.registry import PACKAGE
    from lossbench.userstudy import report
    from lossbench.userstudy.__main__ import main

    saved = []
    monkeypatch.setattr(report, "save_figure", lambda figure, paths: saved.append(figure))
    counts = str(THESIS_STUDIES["denoise"].path)
    main(["analyse", "--counts", counts, "--observers", "14", "--out", str(tmp_path / "lowest"), "--samples", "20"])
    with open(tmp_path / "lowest" / "jod_table.csv") as handle:
        lowest = min(csv.DictReader(handle), key=lambda row: float(row["jod"]))
    assert float(lowest["jod"]) == 1.0
    assert (
        f"JOD scores (lowest-scoring loss, {PACKAGE.loss_label(lowest['condition'])}, at 1;"
        in (tmp_path / "lowest" / "jod_table.md").read_text()
    )
    jod_figure, triangle = saved
    assert ", at 1)" in jod_figure.axes[0].get_ylabel() and ", at 1)" in triangle.axes[0].get_xlabel()
    saved.clear()
    main(
        [
            "analyse",
            "--counts",
            counts,
            "--observers",
            "14",
            "--out",
            str(tmp_path / "mean"),
            "--samples",
            "20",
            "--jod-origin",
            "mean0",
        ]
    )
    with open(tmp_path / "mean" / "jod_table.csv") as handle:
        assert abs(sum(float(row["jod"]) for row in csv.DictReader(handle))) < 0.01
    assert "JOD scores (mean 0;" in (tmp_path / "mean" / "jod_table.md").read_text()
    assert all("(mean 0)" in label for label in (saved[0].axes[0].get_ylabel(), saved[1].axes[0].get_xlabel()))
    with pytest.raises(
        SystemExit,
        match=r"^error: --jod-origin: expected lowest_is_1, mean0 or one of the study's losses \(.*\), got 'lowest'$",
    ):
        main(
            [
                "analyse",
                "--counts",
                counts,
                "--observers",
                "14",
                "--out",
                str(tmp_path / "bad"),
                "--jod-origin",
                "lowest",
            ]
        )
    assert not (tmp_path / "bad").exists()


# --- Studies of too few observers to resample (issue 26) ---

LOSSES = ["l1", "l2", "msssim", "lpips_l2", "flip", "adaptive"]


def _random_observers(observers: int, images: int = 3, seed: int = 0) -> np.ndarray:
    """Per-observer counts of observers choosing at random: each of the 15 pairs of six losses once per image (45
    answers)."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((observers, 6, 6))
    upper = np.triu_indices(6, 1)
    for matrix in counts:
        wins = rng.binomial(images, 0.5, len(upper[0]))
        matrix[upper], matrix[upper[1], upper[0]] = wins, images - wins
    return counts


@pytest.mark.parametrize("observers", [1, 2, 4, 5])
def test_intervals_and_p_values_need_five_observers(observers, caplog):
    counts = _random_observers(observers)
    with caplog.at_level(logging.WARNING, logger="lossbench.userstudy.scaling"):
        s = summarize(LOSSES, counts, n_samples=50)
    assert s.observers == observers and s.jod == pytest.approx(scale(counts.sum(axis=0)))
    if observers < MIN_OBSERVERS:
        assert s.resampled is None and s.samples.shape == (0, 6)
        assert np.isnan(s.low).all() and np.isnan(s.high).all() and np.isnan(s.p_values).all()
        assert f"{observers} observer" in caplog.text and "fewer than the 5 that resampling needs" in caplog.text
    else:
        assert s.resampled == "observers" and s.samples.shape == (50, 6) and caplog.text == ""
        assert np.isfinite(s.p_values).all() and np.all(s.low <= s.jod) and np.all(s.jod <= s.high)


def test_pooled_counts_are_resampled_only_with_their_observer_count_known_and_large_enough():
    pooled = _random_observers(2).sum(axis=0)
    assert summarize(LOSSES, pooled, n_samples=20, observers=2).resampled is None
    thesis = summarize(LOSSES, read_counts(THESIS_STUDIES["denoise"].path)[1], n_samples=20, observers=14)
    assert thesis.resampled == "trials" and thesis.observers == 14 and np.isfinite(thesis.p_values).all()
    with pytest.raises(ValueError, match=r"^observers: 3 given, but the counts hold 2 observers' matrices$"):
        summarize(LOSSES, _random_observers(2), observers=3)


def test_two_observers_files_state_it_and_hold_no_interval_or_p_value(tmp_path):
    s = summarize(LOSSES, _random_observers(2), n_samples=50)
    write_summary(s, tmp_path)
    with open(tmp_path / "p_values.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == LOSSES and len(rows) == 7 and all(cell == "" for row in rows[1:] for cell in row)
    back = read_summary(tmp_path)
    assert (
        back.resampled is None
        and back.observers == 2
        and back.jod == pytest.approx(s.jod, abs=1e-6)
        and np.isnan(back.p_values).all()
    )
    csv_path, md_path, tex_path = write_jod_table(s, tmp_path / "jod", "JOD scores.")
    with open(csv_path) as handle:
        table = list(csv.DictReader(handle))
    assert {(row["ci_low"], row["ci_high"], row["observers"], row["resampled"]) for row in table} == {
        ("", "", "2", "none")
    }
    warning = (
        "2 observers: fewer than the 5 that resampling needs (3 distinct resamples), so no confidence intervals and no"
        " significance tests."
    )
    for path in (md_path, tex_path):
        assert warning in path.read_text() and "CI" not in path.read_text()
    rows = agreement_rows(s, published_values("table_6_1"), "thesis")
    assert rows and all(row["ci_low"] == row["ci_high"] == "" for row in rows)


def test_jod_figures_state_their_observers(monkeypatch, thesis):
    from lossbench.userstudy import report

    saved = []
    monkeypatch.setattr(report, "save_figure", lambda figure, paths: saved.append(figure))
    few = summarize(LOSSES, _random_observers(2), n_samples=20)
    _, _, thesis_summary = thesis["denoise"]
    for s in (few, thesis_summary):
        report.jod_plot(s, ["unused.png"], "A study")
        report.ranking_triangle(s, ["unused.png"], "A study")
    few_jod, few_triangle, thesis_jod, thesis_triangle = saved
    for figure in (few_jod, few_triangle):
        assert "2 observers: fewer than the 5 that resampling needs" in figure.axes[0].get_title()
    assert not few_jod.axes[0].containers  # no error bars
    (legend,) = few_triangle.legends
    assert [text.get_text() for text in legend.get_texts()] == [
        "not tested (too few observers)",
        "loss at its JOD; edge labels: JOD difference",
    ]
    for figure in (thesis_jod, thesis_triangle):
        assert "14 observers; 95 % intervals and p-values resample each pair's trials" in figure.axes[0].get_title()
    assert len(thesis_jod.axes[0].containers) == 1


def test_analyse_command_with_two_observers_warns_and_gives_no_p_values(tmp_path, capsys):
    from lossbench.userstudy.__main__ import main

    write_counts(LOSSES, _random_observers(2), tmp_path / "two.csv", observers=["ann", "ben"])
    main(["analyse", "--counts", str(tmp_path / "two.csv"), "--out", str(tmp_path / "out"), "--samples", "20"])
    captured = capsys.readouterr()
    assert "2 observers: fewer than the 5 that resampling needs" in captured.out + captured.err
    assert "2 observers: fewer than the 5" in (tmp_path / "out" / "jod_table.md").read_text()
    with open(tmp_path / "out" / "p_values.csv") as handle:
        assert all(cell == "" for row in list(csv.reader(handle))[1:] for cell in row)
    with pytest.raises(
        SystemExit,
        match=(
            r"^error: --counts .*thesis_denoise\.csv: pooled counts \(no observer column\) need --observers K, how many"
            r" observers gave them$"
        ),
    ):
        main(["analyse", "--counts", str(THESIS_STUDIES["denoise"].path), "--out", str(tmp_path / "pooled")])


def test_only_our_studies_with_answers_are_analysed_and_the_others_named(tiny_config, tmp_path):
    tiny_config["userstudy"] = {
        "stimuli": {"denoise": ["astronaut"], "knee": ["a"], "brain": ["b"]},
        "responses": str(tmp_path),
    }
    config = validate(tiny_config, "tiny.yaml")
    assert pipeline.own_studies(config) == [] and [row["answer_files"] for row in pipeline.study_status(config)] == [
        "0",
        "0",
    ]
    (tmp_path / "denoise").mkdir()
    (tmp_path / "denoise" / "ann.jsonl").write_text("{}\n")
    (tmp_path / "mri").mkdir()  # a folder without answer files is no study with answers
    assert pipeline.own_studies(config) == ["ours_denoise"]
    denoise, mri = pipeline.study_status(config)
    assert (denoise["study"], denoise["answer_files"], denoise["status"].split(":")[0]) == ("denoise", "1", "analysed")
    assert (mri["study"], mri["tasks"], mri["status"]) == (
        "mri",
        "knee + brain",
        f"not analysed: no answers (no <observer>.jsonl in {tmp_path / 'mri'})",
    )
    assert "userstudy_ours_mri" not in " ".join(pipeline.targets(config)) and any(
        path.endswith("tables/userstudy_ours_studies.md") for path in pipeline.targets(config)
    )
    config["userstudy"]["responses"] = None  # no own study to analyse, and none to name
    assert pipeline.own_studies(config) == pipeline.study_status(config) == pipeline.status_files(config) == []
