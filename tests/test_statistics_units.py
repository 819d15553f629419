"""The statistics' unit of analysis: MRI slices are averaged per volume, and nothing is tested on fewer than MIN_UNITS
units.

The simulations draw per-slice metric values whose slices share a loss × volume effect, as slices of
one MRI volume do (one anatomy, contrast and noise level), write them as the per-image CSVs the
workflow writes, and run them through the same functions the tables use.
"""

import csv

import numpy as np
import pytest

from lossbench.data.kinds.mri import VOLUME
from lossbench.data.taskspec import PER_IMAGE
from lossbench.metrics import MetricInfo
from lossbench.report import statistics, statistics_tables

INFOS = {"psnr": MetricInfo("PSNR", higher_is_better=True, decimals=2)}


def _write(path, values):
    """A per-image CSV of ``values`` (volumes, slices) with the workflow's slice ids."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "psnr"])
        for volume, row in enumerate(values):
            for slice_num, value in enumerate(row):
                writer.writerow([f"file{volume:04d}_s{slice_num:03d}", f"{value:.8g}"])
    return path


def _study(tmp_path, rng, volumes, slices, interaction_sd, effect, noise_sd=1.0):
    """Two losses' per-slice values: a volume's difficulty, a loss × volume effect shared by its slices, slice noise."""
    difficulty = rng.normal(30.0, 2.0, (volumes, 1))
    models = {}
    for loss, shift in (("a", 0.0), ("b", effect)):
        values = (
            difficulty
            + shift
            + rng.normal(0, interaction_sd, (volumes, 1))
            + rng.normal(0, noise_sd, (volumes, slices))
        )
        models[loss] = [_write(tmp_path / f"{loss}.csv", values)]
    return models


def _rejects(models, unit):
    (row,) = statistics_tables.pair_rows(models, INFOS, unit)
    return row["significant"] == "yes", row["better"]


def test_correlated_slices_keep_the_paired_test_at_its_nominal_level(tmp_path):
    # The null: 6 volumes × 12 slices, no difference between the losses on average, a loss ×
    # volume effect as large as the slice noise. Per volume, 400 runs stay within 2.5-7.5 % false
    # positives (binomial 99 % range around 5 %: 2.3-7.8 %); counting slices rejects in most runs.
    rng = np.random.default_rng(26)
    by_volume = by_slice = 0
    for _ in range(400):
        models = _study(tmp_path, rng, volumes=6, slices=12, interaction_sd=1.0, effect=0.0)
        by_volume += _rejects(models, VOLUME)[0]
        by_slice += _rejects(models, PER_IMAGE)[0]
    assert 0.025 <= by_volume / 400 <= 0.075, by_volume
    assert by_slice / 400 > 0.3, by_slice


def test_a_real_effect_of_half_the_slice_noise_is_still_found(tmp_path):
    # 0.5 slice-noise SD lower PSNR for loss b in every volume; 12 volumes × 12 slices with a
    # smaller loss × volume effect: the per-volume test has about 83 % power here (simulated).
    rng = np.random.default_rng(27)
    found = 0
    for _ in range(200):
        models = _study(tmp_path, rng, volumes=12, slices=12, interaction_sd=0.25, effect=-0.5)
        significant, better = _rejects(models, VOLUME)
        found += significant and better == "a"
    assert found / 200 >= 0.7, found


def test_slices_are_averaged_per_volume(tmp_path):
    values = np.arange(12, dtype=float).reshape(3, 4)
    models = {"a": [_write(tmp_path / "a.csv", values)], "b": [_write(tmp_path / "b.csv", values + 1)]}
    losses, stacked = statistics.stack(models, "psnr", unit=VOLUME)
    assert losses == ["a", "b"] and stacked.shape == (2, 1, 3)
    assert stacked[0, 0].tolist() == pytest.approx([1.5, 5.5, 9.5])
    assert statistics.sample_note(models, VOLUME) == "n = 3 volumes (12 slices averaged per volume), 1 seed"


def test_fewer_than_the_minimum_units_are_not_tested(tmp_path):
    # 4 volumes, a huge and consistent difference: still not tested, and said so.
    rng = np.random.default_rng(5)
    models = _study(tmp_path, rng, volumes=4, slices=10, interaction_sd=0.0, effect=-5.0, noise_sd=0.1)
    (row,) = statistics_tables.pair_rows(models, INFOS, VOLUME)
    assert (
        row["significant"] == "not tested (n = 4 volumes)"
        and row["better"] == ""
        and row["p"] == ""
        and row["ci_low"] == ""
    )
    assert (
        statistics.not_different_from_best(["a", "b"], statistics.stack(models, "psnr", unit=VOLUME)[1], "a") == set()
    )
    (variance,) = statistics_tables.variance_rows(models, INFOS, VOLUME)
    assert (
        variance["tested"] == "no"
        and variance["p_loss"] == ""
        and variance["units"] == "4"
        and variance["images"] == "40"
    )
    # The same slices counted as 40 images would have been "tested".
    assert statistics_tables.pair_rows(models, INFOS, PER_IMAGE)[0]["significant"] == "yes"


def test_the_statistics_tables_state_their_n_and_seeds(tmp_path):
    rng = np.random.default_rng(6)
    models = _study(tmp_path, rng, volumes=3, slices=3, interaction_sd=0.5, effect=0.0)
    prefix = tmp_path / "table_6_3"
    variance_md = statistics_tables.write_variance("Table 6.3", models, prefix, INFOS, VOLUME)[1].read_text()
    pairs_md = statistics_tables.write_pairs("Table 6.3", models, prefix, str, INFOS, VOLUME)[1].read_text()
    assert (
        "n = 3 volumes (9 slices averaged per volume), 1 seed" in variance_md
        and "not tested (n = 3 volumes)" in variance_md
    )
    assert (
        "n = 3 volumes (9 slices averaged per volume), 1 seed" in pairs_md
        and "| not tested (n = 3 volumes) |" in pairs_md
    )
