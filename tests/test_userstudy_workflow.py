"""The user study in the workflow: the thesis's tables and figures, our stimuli, and our study's analysis."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml

from conftest import TINY_CONFIG
from lossbench.data.valset import write_images
from lossbench.userstudy.server import Study
from test_workflow import _snakemake

THESIS_TARGETS = ["table_6_2", "table_6_5", "fig_6_7", "fig_6_8", "fig_6_17", "fig_6_18"]
OWN_TARGETS = ["userstudy_ours_denoise", "userstudy_ours_denoise_jod", "userstudy_ours_denoise_triangle"]
#: Every user-study rule of this configuration; the models' outputs exist already and are not rebuilt.
USERSTUDY_RULES = ["userstudy_analysis_thesis_denoise", "userstudy_analysis_thesis_mri", "userstudy_analysis_ours_denoise", "userstudy_kendall_thesis", "userstudy_kendall_ours", "userstudy_stimuli", "userstudy_counts", "userstudy", *THESIS_TARGETS, *OWN_TARGETS]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A workdir whose validation set and model outputs exist (as if trained), and a config with our own study."""
    workdir = tmp_path_factory.mktemp("userstudy")
    rng = np.random.default_rng(0)
    target = rng.random((3, 20, 30)).astype(np.float32)
    write_images(workdir / "results/data/denoise/val.h5", {"input": [("astronaut", target)], "target": [("astronaut", target)]})
    for loss in ("l1", "l2", "flip"):
        write_images(workdir / f"results/outputs/denoise/{loss}/seed0.h5", {"output": [("astronaut", np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1))]})
    # Our measured Table 6.1 (only what the Kendall τ needs: metric rows, loss columns).
    (workdir / "results/tables").mkdir(parents=True)
    with open(workdir / "results/tables/table_6_1.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["metric", "label", "input", "l1", "l2", "msssim", "lpips_l2", "flip", "adaptive", "best"])
        writer.writerow(["psnr", "PSNR", "20.1", "29.0", "30.0", "", "", "28.0", "", "l2"])
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["userstudy"] = {"bootstrap_samples": 100, "stimuli": {"denoise": ["astronaut"]}, "responses": str(workdir / "responses")}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


@pytest.fixture(scope="module")
def built(study_dir):
    """Stimuli by the pipeline, three observers' answers through the app's logic, then every user-study target."""
    config = study_dir / "config.yaml"
    manifest = study_dir / "results/userstudy/stimuli/denoise/manifest.json"
    _snakemake(study_dir, "--cores", "1", str(manifest.relative_to(study_dir)), "--allowed-rules", "userstudy_stimuli", config=config)
    study = Study(manifest.parent, study_dir / "responses/denoise", ["ann", "ben", "cat"])
    for observer in study.plans:
        for trial in study.plans[observer]:
            # Everyone prefers l2, else the left option.
            assert study.answer(observer, trial.id, "right" if trial.right == "l2" else "left")[0] == 200
    _snakemake(study_dir, "--cores", "2", "userstudy", *THESIS_TARGETS, "--allowed-rules", *USERSTUDY_RULES, config=config)
    return study_dir


def test_thesis_targets_are_regenerated_from_the_shipped_data(built):
    tables, figures = built / "results/tables", built / "results/figures"
    with open(tables / "table_6_2.csv") as handle:
        assert float(next(row for row in csv.DictReader(handle) if row["loser"] == "l2")["l1"]) == 0.6786
    assert "**0.7768**" in (tables / "table_6_2.md").read_text()
    with open(tables / "table_6_5_jod.csv") as handle:
        ranks = {row["condition"]: int(row["rank"]) for row in csv.DictReader(handle)}
    assert ranks["msssim"] == 1
    for figure in ("fig_6_7", "fig_6_8", "fig_6_17", "fig_6_18"):
        assert (figures / f"{figure}.png").stat().st_size > 0 and (figures / f"{figure}.pdf").stat().st_size > 0
    assert "LPIPS" in (tables / "userstudy_kendall_thesis.md").read_text()


def test_our_study_from_stimuli_to_analysis(built):
    tables = built / "results/tables"
    with open(tables / "userstudy_ours_denoise_jod.csv") as handle:
        ranks = {row["condition"]: int(row["rank"]) for row in csv.DictReader(handle)}
    assert ranks["l2"] == 1
    with open(tables / "userstudy_kendall_ours_denoise.csv") as handle:
        rows = list(csv.DictReader(handle))
    # Our PSNR ranks l2 > l1 > flip; the observers put l2 first as well.
    assert [row["metric"] for row in rows] == ["psnr"] and float(rows[0]["tau"]) > 0
    assert (built / "results/figures/userstudy_ours_denoise_triangle.pdf").stat().st_size > 0
    # A new observer's answers rerun the analysis of our study, and nothing else.
    manifest = built / "results/userstudy/stimuli/denoise/manifest.json"
    late = Study(manifest.parent, built / "responses/denoise", ["dan"])
    assert late.answer("dan", late.plans["dan"][0].id, "left")[0] == 200
    dry = _snakemake(built, "--cores", "1", "--dry-run", "userstudy", *THESIS_TARGETS, config=built / "config.yaml")
    jobs = {line.split()[0] for line in dry.stdout.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]}
    assert jobs == {"userstudy_counts", "userstudy_analysis_ours_denoise", "userstudy_kendall_ours", "userstudy", "total"}
