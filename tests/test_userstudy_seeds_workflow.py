"""userstudy.seeds: all in the workflow: stimuli of every seed's model, simulated observers' answers through the app,
the (loss, seed) scaling and the seed table; and a study of the first seed plans nothing new."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import yaml

from lossbench.core.io import read_rows
from lossbench.data.valset import write_images
from lossbench.userstudy.seeds import conditions
from lossbench.userstudy.server import Study
from lossbench.userstudy.simulation import answer

from conftest import TINY_CONFIG
from test_workflow import _snakemake

LOSSES = ["l1", "l2", "flip"]
SEEDS = [0, 1]
CONDITIONS = conditions(LOSSES, SEEDS, "all")
IMAGES = [f"im{k}" for k in range(8)]
#: True JOD of each (loss, seed), in CONDITIONS' order: two studies of the same stimuli. "spread": each loss's seeds
#: 1.2 JOD apart (a seed SD of 1.2/√2), loss means 0.6 JOD apart; "flat": losses 2 JOD apart, seeds alike.
TRUTH = {"spread": [0.0, 1.2, 0.6, 1.8, 1.2, 2.4], "flat": [0.0, 0.0, 2.0, 2.0, 4.0, 4.0]}
OBSERVERS = [f"o{k:02d}" for k in range(10)]
RULES = [
    "userstudy_stimuli",
    "userstudy_counts",
    "userstudy_seeds",
    "userstudy_kendall_ours",
    "userstudy_self_preference_ours",
    *(f"userstudy_analysis_ours_{study}" for study in TRUTH),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every seed's model of three losses on eight small images, ten simulated observers a study, then the analysis."""
    workdir = tmp_path_factory.mktemp("seeds")
    rng = np.random.default_rng(0)
    targets = [(image, rng.random((3, 10, 12)).astype(np.float32)) for image in IMAGES]
    write_images(workdir / "results/demo/data/denoise/val.h5", {"input": targets, "target": targets})
    for loss in LOSSES:
        for seed in SEEDS:
            noisy = [(image, np.clip(pixels + rng.normal(0, 0.05, pixels.shape), 0, 1)) for image, pixels in targets]
            write_images(workdir / f"results/demo/outputs/denoise/{loss}/seed{seed}.h5", {"output": noisy})
    (workdir / "results/demo/tables").mkdir(parents=True)
    # Our Table 6.1, only what the metrics' comparisons need: PSNR ranks l2 > l1 > flip.
    (workdir / "results/demo/tables/table_6_1.csv").write_text(
        "metric,label,input,l1,l2,msssim,lpips_l2,flip,adaptive,best\npsnr,PSNR,20.1,29.0,30.0,,,28.0,,l2\n"
    )
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["seeds"] = SEEDS
    config["userstudy"] = {
        "bootstrap_samples": 100,
        "seeds": "all",
        "jod_origin": "l1",
        "stimuli": {"denoise": IMAGES},
        "studies": {study: ["denoise"] for study in TRUTH},
        "responses": str(workdir / "responses"),
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    manifests = [f"results/demo/userstudy/stimuli/{study}/manifest.json" for study in TRUTH]
    _snakemake(
        workdir, "--cores", "2", *manifests, "--allowed-rules", "userstudy_stimuli", config=workdir / "config.yaml"
    )
    for study, truth in TRUTH.items():
        app = Study(workdir / f"results/demo/userstudy/stimuli/{study}", workdir / "responses" / study, OBSERVERS)
        answers = np.random.default_rng(len(study))
        for observer, trials in app.plans.items():
            for trial in trials:
                left, right = CONDITIONS.index(trial.left), CONDITIONS.index(trial.right)
                choice = "left" if answer(answers, np.array(truth), left, right) else "right"
                assert app.answer(observer, trial.id, choice)[0] == 200
    outputs = [
        f"results/demo/tables/{name}_{study}{suffix}"
        for study in TRUTH
        for name, suffix in (
            ("userstudy_ours", "_seeds.md"),
            ("userstudy_ours", "_jod.csv"),
            ("userstudy_kendall_ours", ".csv"),
            ("userstudy_self_preference_ours", ".csv"),
        )
    ]
    _snakemake(workdir, "--cores", "2", *outputs, "--allowed-rules", *RULES, config=workdir / "config.yaml")
    return workdir


def test_stimuli_show_every_seeds_model_as_its_own_condition(built):
    manifest = json.loads((built / "results/demo/userstudy/stimuli/spread/manifest.json").read_text())
    assert manifest["conditions"] == CONDITIONS and len(manifest["trials"]) == len(IMAGES) * 15
    assert (
        built / "results/demo/userstudy/stimuli/spread" / manifest["images"]["im0"]["outputs"]["flip/seed1"]
    ).is_file()
    with open(built / "results/demo/tables/userstudy_ours_spread_jod.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["condition"] for row in rows] == CONDITIONS and {row["observers"] for row in rows} == {"10"}
    # jod_origin l1: the mean of l1's seeds at 0, also where the conditions are (loss, seed).
    assert float(rows[0]["jod"]) + float(rows[1]["jod"]) == pytest.approx(0.0, abs=2e-3)
    assert "l1 (mean of its seeds) at 0" in (built / "results/demo/tables/userstudy_ours_spread_jod.md").read_text()


def test_the_seed_table_recovers_the_true_spread_and_the_ratio_tells_losses_from_seeds(built):
    tables = built / "results/demo/tables"
    spread = {row["loss"]: row for row in read_rows(tables / "userstudy_ours_spread_seeds.csv")}
    assert list(spread) == LOSSES and {row["seeds"] for row in spread.values()} == {"2"}
    for row in spread.values():
        # Each loss's seeds 1.2 JOD apart: the SD of two values is their distance / √2.
        assert float(row["seed_sd"]) == pytest.approx(1.2 / math.sqrt(2), abs=0.3)
        assert float(row["seed_range"]) == pytest.approx(1.2, abs=0.4)
        assert float(row["seed_sd_low"]) <= float(row["seed_sd"]) <= float(row["seed_sd_high"])
    # l1's mean at 0 (jod_origin), l2's and flip's means 0.6 and 1.2 JOD above it.
    assert [float(spread[loss]["jod"]) for loss in LOSSES] == pytest.approx([0.0, 0.6, 1.2], abs=0.3)
    (moderate,) = read_rows(tables / "userstudy_ours_spread_seeds_variance.csv")
    (flat,) = read_rows(tables / "userstudy_ours_flat_seeds_variance.csv")
    # The true JOD's ratios. spread: MS_seed = 2 · 0.6² = 0.72, MS_loss = 2 · (0.6² + 0 + 0.6²) / 2 = 0.72, so the loss
    # component (MS_loss − MS_seed) / 2 is 0: these losses differ no more than their seeds. flat: no seed spread, inf.
    assert float(moderate["ratio_between_within"]) < 1.0
    assert float(flat["ratio_between_within"]) > 20 and float(flat["ratio_low"]) > 5
    assert all(float(row["seed_sd"]) < 0.3 for row in read_rows(tables / "userstudy_ours_flat_seeds.csv"))
    text = (tables / "userstudy_ours_spread_seeds.md").read_text()
    assert "3 losses × 2 seeds (training runs), scaled together as 6 (loss, seed) conditions" in text
    assert "the unit of replication is the training run (seed)" in text


def test_the_metrics_are_compared_with_each_losss_mean_over_its_seeds(built):
    losses = built / "results/demo/userstudy/ours_spread/losses"
    assert [row["condition"] for row in read_rows(losses / "jod.csv")] == LOSSES
    (row,) = read_rows(built / "results/demo/tables/userstudy_kendall_ours_spread.csv")
    assert row["metric"] == "psnr" and row["tau"]
    assert (built / "results/demo/tables/userstudy_self_preference_ours_flat.csv").is_file()


def test_the_first_seed_alone_reads_the_first_seeds_models(built, tmp_path):
    config = yaml.safe_load((built / "config.yaml").read_text())
    del config["userstudy"]["seeds"]
    (tmp_path / "first.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    dry = _snakemake(
        built,
        "--cores",
        "1",
        "--dry-run",
        "results/demo/userstudy/stimuli/spread/manifest.json",
        "--allowed-rules",
        "userstudy_stimuli",
        "--forcerun",
        "userstudy_stimuli",
        config=tmp_path / "first.yaml",
    )
    assert "results/demo/outputs/denoise/flip/seed0.h5" in dry.stdout and "seed1.h5" not in dry.stdout
