"""Variance decomposition and paired significance (lossbench.report.statistics) on synthetic metric tables with known
effects."""

import csv
import math

import numpy as np
import pytest

from lossbench.report import statistics, statistics_tables


def _values(rng, effects, seeds, images, seed_sd, noise_sd, image_sd=1.0):
    """(losses, seeds, images): image difficulty + loss effect + seed offset per run + noise."""
    image = rng.normal(0, image_sd, images)
    return np.array(
        [
            [effect + rng.normal(0, seed_sd) + image + rng.normal(0, noise_sd, images) for _ in range(seeds)]
            for effect in effects
        ]
    )


def test_a_fixed_margin_plus_noise_is_significant_and_the_better_loss_named():
    rng = np.random.default_rng(0)
    values = _values(rng, [0.0, 0.0, -0.5], seeds=3, images=24, seed_sd=0.0, noise_sd=0.2)
    tests = {(t.a, t.b): t for t in statistics.pairwise(["l1", "l2", "msssim"], values)}
    assert tests[("l1", "msssim")].significant() and tests[("l2", "msssim")].significant()
    assert not tests[("l1", "l2")].significant()
    assert tests[("l1", "msssim")].low < 0.5 < tests[("l1", "msssim")].high


def test_an_identical_pair_is_significant_about_five_percent_of_the_time():
    rng = np.random.default_rng(1)
    rejections = sum(
        statistics.paired_test(*_values(rng, [0.0, 0.0], seeds=3, images=20, seed_sd=0.0, noise_sd=0.3))[-1] < 0.05
        for _ in range(200)
    )
    assert 4 <= rejections <= 18, rejections  # 5 % of 200 is 10; a binomial 99 % range is about 3-19


@pytest.mark.parametrize("loss_sd, seed_sd, above_one", [(1.0, 0.1, True), (0.1, 1.0, False)])
def test_the_between_within_ratio_follows_the_larger_source(loss_sd, seed_sd, above_one):
    rng = np.random.default_rng(2)
    values = _values(rng, rng.normal(0, loss_sd, 6), seeds=4, images=30, seed_sd=seed_sd, noise_sd=0.1)
    result = statistics.decompose(values)
    assert (result.ratio > 1) == above_one
    assert (result.p < 0.05) == above_one
    assert sum(result.share(part) for part in ("loss", "seed", "unit", "residual")) == pytest.approx(1.0)


def test_components_are_recovered_on_a_large_design():
    rng = np.random.default_rng(3)
    values = _values(rng, rng.normal(0, 1.0, 40), seeds=10, images=200, seed_sd=0.5, noise_sd=0.3, image_sd=2.0)
    result = statistics.decompose(values)
    assert result.seed == pytest.approx(0.25, rel=0.2)
    assert result.residual == pytest.approx(0.09, rel=0.05)
    assert result.unit == pytest.approx(float(values.mean(axis=(0, 1)).var(ddof=1)), rel=0.05)
    assert result.loss == pytest.approx(1.0, rel=0.5)


def test_one_seed_leaves_seed_variation_unmeasured():
    values = _values(np.random.default_rng(4), [0.0, 1.0], seeds=1, images=10, seed_sd=0.0, noise_sd=0.1)
    result = statistics.decompose(values)
    assert result.seed is None and result.ratio is None and result.share("seed") is None
    assert result.p < 1e-3


def test_holm_adjustment():
    assert statistics.holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)


def test_best_and_its_ties():
    rng = np.random.default_rng(5)
    values = _values(rng, [0.0, 0.01, 2.0], seeds=2, images=20, seed_sd=0.0, noise_sd=0.3)
    assert statistics.not_different_from_best(["a", "b", "c"], values, "a") == {"b"}
    assert statistics.not_different_from_best(["a", "b", "c"], values[:, :, :1], "a") == set()  # one image: no test


def _write(path, images, values):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "psnr", "l2"])
        writer.writerows([image, value, 10 ** (-value / 10)] for image, value in zip(images, values))
    return path


def test_tables_from_metric_files(tmp_path):
    rng = np.random.default_rng(6)
    images = [f"img{i:02d}" for i in range(12)]
    files = {
        loss: [_write(tmp_path / f"{loss}{seed}.csv", images, 25 + shift + rng.normal(0, 0.3, 12)) for seed in range(3)]
        for loss, shift in [("l1", 0.0), ("l2", 2.0)]
    }
    variance = statistics_tables.write_variance("Table 6.1", files, tmp_path / "table_6_1")
    pairs = statistics_tables.write_pairs("Table 6.1", files, tmp_path / "table_6_1", str.upper)
    with open(variance[0]) as handle:
        rows = {row["metric"]: row for row in csv.DictReader(handle)}
    assert rows["psnr"]["seeds"] == "3" and float(rows["psnr"]["share_loss"]) > 0.5
    with open(pairs[0]) as handle:
        psnr = [row for row in csv.DictReader(handle) if row["metric"] == "psnr"][0]
    assert (
        psnr["better"] == "l2"
        and psnr["significant"] == "yes"
        and float(psnr["difference"]) == pytest.approx(-2.0, abs=0.3)
    )
    assert "| PSNR | L1 | L2 |" in pairs[1].read_text()
    assert "not measured" not in variance[1].read_text()


def test_mismatched_images_are_named(tmp_path):
    a = _write(tmp_path / "a.csv", ["x", "y"], [1.0, 2.0])
    b = _write(tmp_path / "b.csv", ["x", "z"], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"b\.csv: its images differ from those of .*a\.csv"):
        statistics.stack({"l1": [a], "l2": [b]}, "psnr")


def test_indistinct_groups_are_maximal_runs():
    def test(a, b, significant):
        return statistics.PairedTest(a, b, 0.0, 0.0, 0.0, 0.0, p_holm=0.01 if significant else 0.5)

    order = ["a", "b", "c", "d"]
    tests = [
        test("a", "b", False),
        test("a", "c", True),
        test("b", "c", False),
        test("a", "d", True),
        test("b", "d", True),
        test("c", "d", True),
    ]
    assert statistics.indistinct_groups(order, tests) == [(0, 1), (1, 2)]


def test_ranking_figure_is_written(tmp_path):
    from lossbench.report.plots import ranking_figure

    rng = np.random.default_rng(7)
    images = [f"img{i}" for i in range(8)]
    files = {
        loss: [_write(tmp_path / f"{loss}{seed}.csv", images, 25 + shift + rng.normal(0, 0.3, 8)) for seed in range(2)]
        for loss, shift in [("l1", 0.0), ("l2", 0.1), ("flip", 3.0)]
    }
    paths = [tmp_path / "ranking.png", tmp_path / "ranking.pdf"]
    ranking_figure(files, paths, "denoise")
    assert all(path.stat().st_size > 1000 for path in paths)
