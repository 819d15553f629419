"""Seeds as conditions (userstudy.seeds): condition names, the stimuli and app with (loss, seed) conditions, and the
JOD spread and between-loss / within-loss ratio (lossbench.userstudy.seeds, lossbench.userstudy.seed_spread)."""

import json
import math

import numpy as np
import pytest

from lossbench.core.io import read_rows
from lossbench.data.valset import write_images
from lossbench.pipeline import userstudy as study_targets
from lossbench.pipeline.config import validate
from lossbench.pipeline.config_file import ConfigError
from lossbench.registry import PACKAGE
from lossbench.userstudy.__main__ import main
from lossbench.userstudy.counts import write_counts
from lossbench.userstudy.report import anchored
from lossbench.userstudy.responses import observer_counts as answer_counts
from lossbench.userstudy.responses import read_folder
from lossbench.userstudy.scaling import from_samples, summarize
from lossbench.userstudy.seed_spread import (
    by_loss,
    decompose_jod,
    loss_summary,
    observer_noise,
    seed_rows,
    write_seed_table,
)
from lossbench.userstudy.seeds import check_losses, condition, conditions, label, members, split
from lossbench.userstudy.server import Study
from lossbench.userstudy.simulation import observer_counts
from lossbench.userstudy.stimuli import Source, make_study_stimuli

LOSSES = ["l1", "l2", "flip"]
CONDITIONS = conditions(LOSSES, [0, 1], "all")


def test_conditions_are_losses_or_loss_seed_pairs_read_back_unambiguously():
    assert conditions(LOSSES, [0, 1], "first") == LOSSES
    assert CONDITIONS == ["l1/seed0", "l1/seed1", "l2/seed0", "l2/seed1", "flip/seed0", "flip/seed1"]
    assert [split(name) for name in ["l2/seed1", "lpips_l2/seed10", "lpips_l2"]] == [
        ("l2", 1),
        ("lpips_l2", 10),
        ("lpips_l2", None),
    ]
    assert condition("msssim", 3) == "msssim/seed3" and not set(CONDITIONS) & set(LOSSES)
    assert members(CONDITIONS, "l2") == [2, 3] and members(LOSSES, "l2") == [] and members(CONDITIONS, "l") == []
    assert label("lpips_l2/seed1", PACKAGE) == "LPIPS+l2/seed1" and label("lpips_l2", PACKAGE) == "LPIPS+l2"
    with pytest.raises(ValueError, match=r"^userstudy.seeds: expected one of first, all, got 'some'$"):
        conditions(LOSSES, [0], "some")
    with pytest.raises(ValueError, match=r"^losses: 'a/b' holds '/'"):
        check_losses(["l1", "a/b"])


def test_the_configuration_accepts_first_and_all_and_names_the_key_of_a_bad_value(tiny_config):
    tiny_config["seeds"] = [0, 1]
    for value in ("first", "all"):
        tiny_config["userstudy"] = {"seeds": value}
        assert validate(tiny_config, "tiny.yaml")["userstudy"]["seeds"] == value
    # Absent, it stays absent (the recorded configuration of a default run is unchanged) and means first.
    tiny_config["userstudy"] = {}
    assert "seeds" not in validate(tiny_config, "tiny.yaml")["userstudy"]
    tiny_config["userstudy"] = {"seeds": "every"}
    with pytest.raises(ConfigError, match=r"^tiny.yaml: userstudy.seeds: 'every' is not one of \['first', 'all'\]$"):
        validate(tiny_config, "tiny.yaml")
    tiny_config["seeds"], tiny_config["userstudy"] = [0], {"seeds": "all"}
    with pytest.raises(
        ConfigError, match=r"^tiny.yaml: userstudy.seeds: all shows every seed's model, but seeds lists 1"
    ):
        validate(tiny_config, "tiny.yaml")


def test_decomposition_by_hand():
    # JOD of 3 losses × 2 seeds. Loss means 0.5, 2, 4.5, grand mean 7/3.
    values = np.array([[0.0, 1.0], [2.0, 2.0], [4.0, 5.0]])
    # MS_seed = (0.25 + 0.25 + 0 + 0 + 0.25 + 0.25) / (3 · 1) = 1/3;
    # MS_loss = 2 · ((0.5 − 7/3)² + (2 − 7/3)² + (4.5 − 7/3)²) / 2 = 49/6; loss = (49/6 − 1/3) / 2 = 47/12.
    plain = decompose_jod(values)
    assert plain.seed == pytest.approx(1 / 3) and plain.loss == pytest.approx(47 / 12)
    assert plain.ratio == pytest.approx(47 / 4) and plain.noise is None
    # The observers' noise comes off the seed component only (as the metrics' residual): 1/3 − 0.1.
    noisy = decompose_jod(values, noise=0.1)
    assert noisy.seed == pytest.approx(1 / 3 - 0.1) and noisy.loss == pytest.approx(47 / 12)
    assert noisy.ratio == pytest.approx((47 / 12) / (1 / 3 - 0.1))
    # No spread within a loss: an infinite ratio; no spread between losses: 0 (negative estimate set to 0).
    assert decompose_jod(np.array([[0.0, 0.0], [1.0, 1.0]])).ratio == math.inf
    assert decompose_jod(np.array([[0.0, 1.0], [1.0, 0.0]])).loss == 0.0
    assert decompose_jod(values, noise=1.0).seed == 0.0
    with pytest.raises(ValueError, match="at least 2 losses × 2 seeds, got shape"):
        decompose_jod(np.zeros((3, 1)))
    with pytest.raises(ValueError, match="observer noise: expected a finite variance ≥ 0, got -1"):
        decompose_jod(values, noise=-1.0)


def test_observer_noise_by_hand():
    # One loss, two seeds, three bootstrap samples: deviations ∓0.5, ∓1.5, ∓1 from the loss's mean.
    samples = np.array([[[0.0, 1.0]], [[0.0, 3.0]], [[0.0, 2.0]]])
    # Each deviation's variance over the samples: ((0.5)² + (0.5)² + 0) / 2 = 0.25; (0.25 + 0.25) / (S − 1) = 0.5.
    assert observer_noise(samples) == pytest.approx([0.5])


def test_spread_and_interval_by_hand_and_the_loss_means():
    jod = np.array([0.0, 1.0, 2.0, 2.0, 4.0, 5.0])
    samples = np.stack([jod + shift for shift in np.linspace(-0.1, 0.1, 11)])
    samples[:, 1] += np.linspace(-0.2, 0.2, 11)  # l1/seed1 varies across the bootstrap
    summary = from_samples(CONDITIONS, jod, samples, observers=5, resampled="observers")
    rows, variance, words = seed_rows(summary, "mean0")
    by_name = {row["loss"]: row for row in rows}
    assert by_name["l1"]["jod"] == "0.500" and words == "mean 0"  # (0 + 1) / 2: mean0 keeps the scaling's scores
    lowest = {row["loss"]: row["jod"] for row in seed_rows(summary, "lowest_is_1")[0]}
    assert lowest == {"l1": "1.000", "l2": "2.500", "flip": "5.000"}
    assert by_name["l1"]["seed_sd"] == f"{1 / math.sqrt(2):.3f}" and by_name["l1"]["seed_range"] == "1.000"
    assert by_name["l2"]["seed_sd"] == "0.000" and by_name["l2"]["seed_sd_low"] == "0.000"
    # l1's range over the samples runs 0.8 … 1.2 in 0.04 steps: the nearest-sample 2.5 % and 97.5 % points.
    assert (by_name["l1"]["seed_range_low"], by_name["l1"]["seed_range_high"]) == ("0.800", "1.200")
    # Noise: l1's deviations ±(1 + e) / 2, e = linspace(−0.2, 0.2, 11), Var(e) = 0.0016 · 110 / 10 = 0.0176, so
    # 2 · 0.0176 / 4 / (S − 1) = 0.0088; the other losses 0; pooled over the 3 losses 0.0088 / 3.
    assert variance["var_noise"] == "0.0029" and variance["var_seed"] == f"{1 / 3 - 0.0088 / 3:.4f}"
    assert variance["ratio_between_within"] == f"{(47 / 12) / (1 / 3 - 0.0088 / 3):.3f}" == "11.854"
    means = loss_summary(summary)
    assert means.conditions == LOSSES and means.jod == pytest.approx([0.5, 2.0, 4.5])
    assert means.samples[:, 0] == pytest.approx(samples[:, :2].mean(axis=1)) and means.resampled == "observers"
    # A loss name as the origin: its mean over its seeds at 0, in the study's JOD table too.
    assert anchored(summary, "l2")[0].jod == pytest.approx(jod - 2.0)
    assert anchored(summary, "l2")[1] == "l2 (mean of its seeds) at 0"


def test_unbalanced_or_unseeded_conditions_are_refused():
    with pytest.raises(ValueError, match="'l1' is no \\(loss, seed\\) condition"):
        by_loss(["l1", "l2"])
    with pytest.raises(ValueError, match="loss l2 has 1 seeds, l1 2"):
        by_loss(["l1/seed0", "l1/seed1", "l2/seed0"])
    with pytest.raises(ValueError, match="one seed a loss"):
        by_loss(["l1/seed0", "l2/seed0"])


def _study(truth, seed, observers=12, repeats=8, n_samples=200):
    counts = observer_counts(np.array(truth, dtype=float), observers, repeats, np.random.default_rng(seed))
    return summarize(CONDITIONS, counts, n_samples, seed)


def test_simulated_observers_recover_the_seed_spread_and_tell_loss_from_seed_variation():
    # Each loss's two seeds 1 JOD apart: a seed SD of 1/√2; loss means 0.5, 1.5, 2.5.
    truth = [0, 1, 1, 2, 2, 3]
    rows, spread, _ = seed_rows(_study(truth, seed=0))
    for row in rows:
        assert float(row["seed_sd"]) == pytest.approx(1 / math.sqrt(2), abs=0.2)
        assert float(row["seed_sd_low"]) < float(row["seed_sd"]) < float(row["seed_sd_high"])
        assert float(row["noise_sd"]) < 0.2
    # The ratio of the true JOD: MS_seed = 0.5, MS_loss = 2, loss component (2 − 0.5) / 2 = 0.75, ratio 1.5; three
    # losses of two seeds leave it uncertain (100 such studies: mean 1.59, 90 % within 1.06-2.11); within a factor 2.
    true_ratio = decompose_jod(np.reshape(truth, (3, 2))).ratio
    assert true_ratio == pytest.approx(1.5)
    assert true_ratio / 2 < float(spread["ratio_between_within"]) < true_ratio * 2
    assert float(spread["ratio_low"]) < float(spread["ratio_between_within"]) < float(spread["ratio_high"])
    # Losses 2 JOD apart and seeds alike: the seed component is observer noise at most, the ratio large.
    rows, flat, _ = seed_rows(_study([0, 0, 2, 2, 4, 4], seed=1))
    assert all(float(row["seed_sd"]) < 0.3 for row in rows)
    assert float(flat["ratio_between_within"]) > 20 and float(flat["ratio_low"]) > 5


def test_a_study_of_few_observers_has_no_intervals_and_says_the_noise_is_unmeasured(tmp_path):
    summary = _study([0, 1, 1, 2, 2, 3], seed=2, observers=3)
    paths = write_seed_table(summary, tmp_path / "userstudy_ours_x_seeds", "Study x")
    rows = read_rows(paths[0])
    assert {(row["jod_low"], row["seed_sd_low"], row["noise_sd"], row["resampled"]) for row in rows} == {
        ("", "", "", "none")
    }
    (variance,) = read_rows(paths[1])
    assert variance["var_noise"] == "" and variance["ratio_low"] == "" and variance["ratio_between_within"]
    text = paths[2].read_text()
    assert "the observers' noise is not measured" in text and "3 observers: fewer than the 5" in text
    assert "\\begin{table}" in paths[3].read_text()


def test_stimuli_app_and_answers_carry_loss_seed_conditions(tmp_path):
    rng = np.random.default_rng(0)
    target = rng.random((3, 8, 10)).astype(np.float32)
    write_images(tmp_path / "val.h5", {"input": [("im", target)], "target": [("im", target)]})
    outputs = {}
    for name in CONDITIONS:
        loss, seed = split(name)
        path = tmp_path / f"outputs/{loss}/seed{seed}.h5"
        write_images(path, {"output": [("im", np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1))]})
        outputs[name] = path
    stimuli = tmp_path / "stimuli"
    make_study_stimuli("x", [Source("denoise", tmp_path / "val.h5", outputs, ["im"])], stimuli, viewing={"ppd": 40})
    manifest = json.loads((stimuli / "manifest.json").read_text())
    assert manifest["conditions"] == CONDITIONS and len(manifest["trials"]) == 15
    assert manifest["images"]["im"]["outputs"]["l2/seed1"] == "images/im/l2/seed1.png"
    study = Study(stimuli, tmp_path / "responses", ["ann"])
    for trial in study.plans["ann"]:
        state = study.state("ann")
        assert state["trial"]["left"] == f"/stimuli/{manifest['images']['im']['outputs'][trial.left]}"
        assert study.read_stimulus(state["trial"]["left"].removeprefix("/stimuli/"))[:4] == b"\x89PNG"
        assert study.answer("ann", trial.id, "right" if trial.right.startswith("l2/") else "left")[0] == 200
    observers, names, counts = answer_counts(manifest, read_folder(tmp_path / "responses"))
    assert observers == ["ann"] and names == CONDITIONS and counts.sum() == 15
    # Every answer with an l2 model chose it: l2's seeds lost only to each other.
    l2 = [CONDITIONS.index("l2/seed0"), CONDITIONS.index("l2/seed1")]
    assert counts[0][:, l2].sum() == 1


def test_only_all_adds_the_seed_analysis_to_the_targets(tiny_config):
    tiny_config["seeds"] = [0, 1]
    tiny_config["userstudy"] = {"stimuli": {"denoise": [0]}, "responses": None}
    first = validate(tiny_config, "tiny.yaml")
    assert study_targets.stimulus_seeds(first) == [0] and study_targets.conditions(first) == list(first["losses"])
    assert study_targets.scores(first) == "userstudy/{study}"
    tiny_config["userstudy"]["seeds"] = "all"
    every = validate(tiny_config, "tiny.yaml")
    assert study_targets.stimulus_seeds(every) == [0, 1] and study_targets.conditions(every)[:2] == [
        "l1/seed0",
        "l1/seed1",
    ]
    assert study_targets.scores(every) == "userstudy/{study}/losses"
    assert study_targets.seed_files("ours_denoise", "r") == [
        "r/tables/userstudy_ours_denoise_seeds.csv",
        "r/tables/userstudy_ours_denoise_seeds_variance.csv",
        "r/tables/userstudy_ours_denoise_seeds.md",
        "r/tables/userstudy_ours_denoise_seeds.tex",
    ]


def test_analyse_writes_the_seed_table_for_loss_seed_counts(tmp_path):
    counts = observer_counts(np.array([0.0, 0.0, 2.0, 2.0, 4.0, 4.0]), 6, 4, np.random.default_rng(3))
    write_counts(CONDITIONS, counts, tmp_path / "counts.csv", [f"o{k}" for k in range(6)])
    out = tmp_path / "out"
    main(
        [
            "analyse",
            "--counts",
            str(tmp_path / "counts.csv"),
            "--out",
            str(out),
            "--samples",
            "50",
            "--jod-origin",
            "l2",
        ]
    )
    assert [row["loss"] for row in read_rows(out / "seeds.csv")] == LOSSES
    assert next(row["jod"] for row in read_rows(out / "seeds.csv") if row["loss"] == "l2") == "0.000"
    assert [row["condition"] for row in read_rows(out / "losses/jod.csv")] == LOSSES
    assert "l2 (mean of its seeds) at 0" in (out / "jod_table.md").read_text()
    with pytest.raises(SystemExit, match=r"--jod-origin: expected .* losses \(l1, l2, flip\), got 'l3'$"):
        main(["analyse", "--counts", str(tmp_path / "counts.csv"), "--out", str(out), "--jod-origin", "l3"])
