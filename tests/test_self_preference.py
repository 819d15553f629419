"""Self-preference and metric → JOD calibration: known answers, intervals that cover, and the thesis's data."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import ndtr
from scipy.stats import kendalltau, spearmanr

from lossbench.report import paper
from lossbench.userstudy.agreement import (
    SAMPLED_ORDERINGS,
    agreement_rows,
    chance_p_value,
    spearman_rho,
)
from lossbench.userstudy.calibration import (
    constant_rmse,
    fit,
    isotonic,
    loo_predictions,
    loo_rmse,
    self_preference_gap,
)
from lossbench.userstudy.counts import THESIS_STUDIES, read_counts
from lossbench.userstudy.scaling import SIGMA, from_samples, scale, summarize
from lossbench.userstudy.self_preference import csv_rows, preferences, write_table

LOSSES = ["l1", "l2", "msssim", "lpips_l2", "flip", "adaptive"]
#: True JOD of a synthetic study of the six losses.
TRUE_JOD = np.array([-0.6, -0.1, 0.1, 0.7, 0.05, -0.15])


def _study(jod: np.ndarray, samples: np.ndarray | None = None):
    """A summary of the six losses with the given JOD (and bootstrap samples: resampled trials)."""
    if samples is None:
        return from_samples(LOSSES, jod, np.empty((0, len(LOSSES))), observers=3, resampled=None)
    return from_samples(LOSSES, jod, samples, observers=14, resampled="trials")


def test_a_metric_built_to_favour_its_own_model_by_delta_shows_delta():
    own = LOSSES.index("flip")
    for delta in (0.4, -0.25):
        # Affine in JOD for every model, the own one seen delta JOD better than the observers saw it.
        shifted = TRUE_JOD + delta * (np.arange(6) == own)
        x = 3.0 + 0.2 * shifted
        assert self_preference_gap(x, TRUE_JOD, own)[0] == pytest.approx(delta, abs=1e-12)
        # Within the other models' JOD range, the isotonic map reads the same.
        assert self_preference_gap(x, TRUE_JOD, own, "isotonic")[0] == pytest.approx(delta, abs=1e-12)
        # Through a lower-is-better metric (FLIP), the registry's direction turns it round.
        (found,) = preferences(_study(TRUE_JOD), {"flip": dict(zip(LOSSES, 1.0 - 0.2 * shifted))}, "synthetic")
        assert (found.metric, found.loss, found.gap) == ("flip", "flip", pytest.approx(delta, abs=1e-12))
    # The own model overrated most of all: its leave-one-out residual ranks first, the others' are not zero.
    assert found.residual_rank == 6 and found.others_rmse > 0  # delta < 0: underrated the most
    x = 3.0 + 0.2 * (TRUE_JOD + 0.4 * (np.arange(6) == own))
    assert np.argmax(loo_predictions(x, TRUE_JOD)[0] - TRUE_JOD) == own


def test_a_metric_affine_in_jod_has_zero_gap_and_zero_loo_error():
    x = -2.0 + 5.0 * TRUE_JOD
    assert loo_rmse(x, TRUE_JOD)[0] == pytest.approx(0.0, abs=1e-12)
    # MS-SSIM: higher is better; l1 and LPIPS: lower is better, so the same ranking from 10 − x.
    values = {"l1": dict(zip(LOSSES, 10.0 - x)), "msssim": dict(zip(LOSSES, x)), "lpips": dict(zip(LOSSES, 10.0 - x))}
    found = preferences(_study(TRUE_JOD), values, "synthetic")
    assert [p.metric for p in found] == ["l1", "msssim", "lpips"]
    assert all(p.gap == pytest.approx(0.0, abs=1e-12) and p.others_rmse < 1e-12 for p in found)
    assert all(p.metric_rank == p.observer_rank for p in found)
    # The isotonic map cannot reach beyond the others' range: exact inside it, not for the best and worst model.
    residuals = loo_predictions(x, TRUE_JOD, "isotonic")[0] - TRUE_JOD
    inside = (TRUE_JOD > TRUE_JOD.min()) & (TRUE_JOD < TRUE_JOD.max())
    assert np.abs(residuals[inside]).max() < 1e-12 and np.abs(residuals[~inside]).min() > 0.1


def test_a_nonlinear_monotone_metric_ranks_exactly_but_the_affine_map_misses_its_curvature():
    x = np.exp(3.0 * TRUE_JOD)
    rows = agreement_rows(_study(TRUE_JOD), {"msssim": dict(zip(LOSSES, x))}, "synthetic")
    (row,) = rows
    assert (row["tau"], row["rho"]) == ("1.000", "1.000")
    assert float(row["p_chance"]) == float(row["rho_p_chance"]) == pytest.approx(1 / 720, abs=1e-4)
    assert float(row["loo_rmse"]) > 0.05


def test_an_unrelated_metric_gets_the_constant_map():
    # Ranked against the observers: the slope would be negative, so the map is the others' mean.
    x = -TRUE_JOD
    intercept, slope = fit(x, TRUE_JOD)
    assert slope[0] == 0.0 and intercept[0] == pytest.approx(TRUE_JOD.mean())
    assert loo_rmse(x, TRUE_JOD)[0] == pytest.approx(constant_rmse(TRUE_JOD)[0])
    own = 3
    others = np.delete(TRUE_JOD, own).mean()
    assert self_preference_gap(x, TRUE_JOD, own)[0] == pytest.approx(others - TRUE_JOD[own])
    # The table marks such a gap: it says where the observers put the own model, not what the metric says.
    (flat,) = preferences(_study(TRUE_JOD), {"lpips": dict(zip(LOSSES, TRUE_JOD))}, "synthetic")
    (rising,) = preferences(_study(TRUE_JOD), {"lpips": dict(zip(LOSSES, -TRUE_JOD))}, "synthetic")
    assert flat.flat and not rising.flat and csv_rows([flat, rising])[0]["flat_map"] == "yes"


def test_maps_agree_with_independent_computations():
    rng = np.random.default_rng(3)
    x = np.sort(rng.random(6))
    jod = 2.0 * x + rng.normal(0, 0.05, (5, 6))
    # Every leave-one-out slope is positive here: the affine map is numpy's least-squares line.
    expected = np.empty_like(jod)
    for b, row in enumerate(jod):
        for i in range(6):
            keep = np.arange(6) != i
            expected[b, i] = np.polyval(np.polyfit(x[keep], row[keep], 1), x[i])
    assert loo_predictions(x, jod) == pytest.approx(expected, abs=1e-12)
    assert loo_rmse(x, jod) == pytest.approx(np.sqrt(np.mean((expected - jod) ** 2, axis=1)), abs=1e-12)
    # Pool-adjacent-violators by hand: [1, 3, 2, 4] → [1, 2.5, 2.5, 4]; ties in x are one point at their mean.
    assert isotonic(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4]), 2.5)[0] == pytest.approx(2.5)
    assert isotonic(np.array([1.0, 2, 2, 4]), np.array([1.0, 3, 1, 4]), 2.0)[0] == pytest.approx(2.0)
    assert isotonic(np.array([1.0, 2, 3]), np.array([1.0, 2, 3]), 9.0)[0] == 3.0  # flat beyond the range


def test_spearman_and_its_chance_p_value():
    rng = np.random.default_rng(0)
    reference = np.array([1.0, 2.0, 2.0, 5.0, 3.0, 0.5])
    samples = rng.integers(0, 4, (30, 6)).astype(float)
    theirs = [spearmanr(reference, row).statistic for row in samples]
    assert spearman_rho(reference, samples) == pytest.approx(theirs, nan_ok=True)
    metric = np.arange(5.0)
    assert chance_p_value(metric, metric, spearman_rho) == pytest.approx(1 / 120)
    assert chance_p_value(metric, -metric, spearman_rho) == 1.0
    # Nine models: a sample of orderings, counting the observed one, never p = 0.
    nine = np.arange(9.0)
    assert chance_p_value(nine, nine) == pytest.approx(1 / (1 + SAMPLED_ORDERINGS))
    assert chance_p_value(nine, -nine, spearman_rho) == 1.0
    assert kendalltau(reference, reference).statistic == pytest.approx(1.0)


def test_too_few_models_are_refused_or_left_empty():
    with pytest.raises(ValueError, match="at least 4 conditions"):
        loo_rmse(np.arange(3.0), np.arange(3.0))
    with pytest.raises(ValueError, match="at least 3 conditions"):
        fit(np.arange(2.0), np.arange(2.0))
    with pytest.raises(ValueError, match="expected 6 conditions per row"):
        fit(np.arange(6.0), np.arange(5.0))
    three = from_samples(
        ["l1", "l2", "flip"], np.array([0.0, 0.3, -0.3]), np.empty((0, 3)), observers=2, resampled=None
    )
    (row,) = agreement_rows(three, {"psnr": {"l1": 1.0, "l2": 2.0, "flip": 0.5}}, "three")
    assert row["tau"] == "1.000" and row["loo_rmse"] == row["isotonic_rmse"] == "" and row["ci_low"] == ""
    assert preferences(three, {"l1": {"l1": 1.0, "l2": 2.0, "flip": 0.5}}, "three") == []


def _simulated_study(rng: np.random.Generator, seed: int, samples: int = 150):
    """A thesis-sized study (112 trials per pair) of observers who see :data:`TRUE_JOD`, pooled counts."""
    p = ndtr((TRUE_JOD[:, None] - TRUE_JOD[None, :]) / SIGMA)
    upper = np.triu_indices(6, 1)
    counts = np.zeros((6, 6))
    wins = rng.binomial(112, p[upper])
    counts[upper], counts.T[upper] = wins, 112 - wins
    return summarize(LOSSES, counts, samples, seed, observers=14)


def test_gap_intervals_cover_the_built_in_preference():
    rng = np.random.default_rng(1)
    own, delta, studies = LOSSES.index("lpips_l2"), 0.5, 40
    x = 2.0 + 0.1 * (TRUE_JOD + delta * (np.arange(6) == own))
    values = {"msssim": dict(zip(LOSSES, x))}
    covered, excludes_zero, gaps = 0, 0, []
    for seed in range(studies):
        summary = _simulated_study(rng, seed)
        interval = self_preference_gap(x, summary.samples, own)
        low, high = np.percentile(interval, [2.5, 97.5])
        covered += low <= delta <= high
        excludes_zero += not low <= 0.0 <= high
        gaps.append(self_preference_gap(x, summary.jod, own)[0])
        # The rows carry the same interval as the percentiles of the samples.
        (row,) = agreement_rows(summary, values, "simulated")
        assert float(row["rmse_ci_low"]) <= float(row["rmse_ci_high"])
    # 95 % intervals: at least 34 of 40 (a binomial(40, 0.95) falls below that with probability 0.006).
    assert covered >= 34
    # The intervals are not wide enough to hold everything: most exclude "no preference".
    assert excludes_zero >= 30
    assert np.mean(gaps) == pytest.approx(delta, abs=0.1)


@pytest.fixture(scope="module")
def thesis_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("self_preference")
    subprocess.run(
        [sys.executable, "-m", "lossbench.userstudy.self_preference", "--out", str(out), "--samples", "200"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out


def test_thesis_data_self_preference_table_and_figure(thesis_run):
    with open(thesis_run / "self_preference.csv") as handle:
        rows = {(row["source"].split(":")[0], row["metric"]): row for row in csv.DictReader(handle)}
    tasks = ["thesis_denoise, denoise", "thesis_mri, knee", "thesis_mri, brain"]
    assert set(rows) == {(task, m) for task in tasks for m in ("l1", "l2", "msssim", "lpips", "flip")}
    assert {row["resampled"] for row in rows.values()} == {"trials"}
    # Recomputed here with numpy's least squares: the l2 model of Table 6.1, best by l2, last by the observers.
    conditions, counts = read_counts(THESIS_STUDIES["denoise"].path)
    jod = scale(counts)
    l2 = -np.array([paper.table("table_6_1")["l2"][c] for c in conditions])
    own = conditions.index("l2")
    keep = np.arange(6) != own
    slope, intercept = np.polyfit(l2[keep], jod[keep], 1)
    assert slope > 0
    row = rows[("thesis_denoise, denoise", "l2")]
    assert float(row["gap"]) == pytest.approx(intercept + slope * l2[own] - jod[own], abs=1e-3)
    assert (row["metric_rank"], row["observer_rank"]) == ("1", "6")
    assert 0 < float(row["ci_low"]) <= float(row["gap"]) <= float(row["ci_high"])
    for row in rows.values():
        assert float(row["ci_low"]) <= float(row["gap"]) <= float(row["ci_high"])
        assert float(row["bounded_ci_low"]) <= float(row["bounded_gap"]) <= float(row["bounded_ci_high"])
    markdown = (thesis_run / "self_preference.md").read_text()
    assert "14 observers; 95 % intervals and p-values resample each pair's trials" in markdown
    assert "Assumes JOD affine in the metric" in markdown
    assert (thesis_run / "self_preference.png").stat().st_size > 10_000


def test_thesis_data_agreement_has_tau_rho_and_loo_error_for_every_metric(thesis_run):
    with open(thesis_run / "agreement.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 6
    for row in rows:
        for low, value, high in (("ci_low", "tau", "ci_high"), ("rho_ci_low", "rho", "rho_ci_high")):
            assert -1 <= float(row[low]) <= float(row[value]) <= float(row[high]) <= 1
        assert 0 < float(row["loo_rmse"]) and 0 < float(row["isotonic_rmse"])
    # LPIPS ranks the denoising models most like the observers, by τ and by ρ.
    denoise = {row["metric"]: row for row in rows if row["source"].startswith("thesis_denoise")}
    assert max(denoise, key=lambda m: float(denoise[m]["rho"])) == "lpips"
    assert max(denoise, key=lambda m: float(denoise[m]["tau"])) == "lpips"


def test_table_without_any_own_metric_says_so(tmp_path):
    csv_path, md_path = write_table([], tmp_path / "none", "Nothing here.")
    assert csv_rows([]) == [] and csv_path.read_text().startswith("source,metric,loss")
    assert "nothing to measure" in md_path.read_text()


def test_a_metric_that_predicts_jod_is_also_compared_in_jod_directly(tmp_path):
    from dataclasses import replace

    from lossbench import metrics
    from lossbench.core.specs import MetricInfo
    from lossbench.registry import Registry
    from lossbench.userstudy.agreement import write_agreement

    # A JOD-predicting metric (as ColorVideoVDP) is a spec whose unit is JOD; its computation is not needed here.
    predictor = replace(metrics.SPECS["psnr"], name="jod_predictor", info=MetricInfo("JOD predictor", True, unit="JOD"))
    registry = Registry(metrics={**metrics.SPECS, "jod_predictor": predictor})
    samples = TRUE_JOD + np.random.default_rng(0).normal(0, 0.1, (50, 6))
    study = _study(TRUE_JOD, samples)
    # An offset is no error (JOD has no origin); a stretched scale is, by the stretch.
    values = {"jod_predictor": dict(zip(LOSSES, 7.0 + TRUE_JOD)), "psnr": dict(zip(LOSSES, 30 + TRUE_JOD))}
    exact, psnr = agreement_rows(study, values, "synthetic", registry=registry)
    assert float(exact["direct_rmse"]) == 0.0 and float(exact["direct_ci_high"]) > 0 and psnr["direct_rmse"] == ""
    (stretched,) = agreement_rows(
        study, {"jod_predictor": dict(zip(LOSSES, 2.0 * TRUE_JOD))}, "synthetic", registry=registry
    )
    expected = np.sqrt(np.mean((TRUE_JOD - TRUE_JOD.mean()) ** 2))
    assert float(stretched["direct_rmse"]) == pytest.approx(expected, abs=1e-3)
    _, md_path = write_agreement([exact, psnr], tmp_path / "agreement", "Agreement.", registry)
    assert "In JOD directly: RMSE" in md_path.read_text()
    _, md_path = write_agreement([psnr], tmp_path / "without", "Agreement.", registry)
    assert "In JOD directly" not in md_path.read_text()
