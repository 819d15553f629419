"""The workflow with two seeds (mean ± std and per-seed tables, training curves) and the learning-rate sweep."""

import csv
import re

import pytest
import yaml

from conftest import TINY_CONFIG
from test_workflow import _snakemake


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The tiny configuration, denoising with l1 only, with seeds [0, 1] and a sweep grid with a diverging rate."""
    root = tmp_path_factory.mktemp("seeds")
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config.update(
        seeds=[0, 1],
        tasks={"denoise": config["tasks"]["denoise"]},
        figures={},
        lr_sweep={"grid": [1.0e-3, 1.0e30], "epochs": 1},
    )
    config["losses"] = {"l1": config["losses"]["l1"]}
    config["metrics"] = ["l1", "l2", "psnr"]  # the cheap ones: the seeds, not the metrics, are tested here
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def test_two_seeds_give_mean_std_and_per_seed_tables_and_curves(workdir):
    _snakemake(
        workdir, "--cores", "2", "table_6_1", "results/demo/figures/curves_denoise.png", config=workdir / "config.yaml"
    )
    tables = workdir / "results" / "demo" / "tables"
    assert "Values are mean ± standard deviation over 2 seeds." in (tables / "table_6_1.md").read_text()
    with open(tables / "table_6_1.csv") as handle:
        rows = {row["metric"]: row for row in csv.DictReader(handle)}
    assert (
        rows["psnr"]["l1_std"] != "" and float(rows["psnr"]["l1_std"]) >= 0
    )  # one epoch: the seeds may agree to 4 decimals
    with open(tables / "table_6_1_per_seed.csv") as handle:
        per_seed = [row for row in csv.DictReader(handle) if row["metric"] == "psnr" and row["model"] == "l1"]
    assert [row["seed"] for row in per_seed] == ["0", "1"]
    values = [float(row["value"]) for row in per_seed]
    assert sum(values) / 2 == pytest.approx(float(rows["psnr"]["l1"]), abs=1e-3)
    assert "| PSNR | mean ± std |" in (tables / "table_6_1_per_seed.md").read_text()
    with open(workdir / "results" / "demo" / "models" / "denoise" / "l1" / "seed1" / "curve.csv") as handle:
        assert float(next(csv.DictReader(handle))["val_psnr"]) > 10
    assert (workdir / "results" / "demo" / "figures" / "curves_denoise.png").stat().st_size > 0


def test_lr_sweep_chooses_the_finite_rate_and_feeds_training(workdir):
    _snakemake(workdir, "--cores", "2", "lr_sweep_denoise", config=workdir / "config.yaml")
    chosen = yaml.safe_load((workdir / "results" / "demo" / "lr_sweep" / "denoise.yaml").read_text())
    assert chosen == {"denoise": {"l1": 1.0e-3}}  # 1e30 diverges
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["learning_rates_file"] = "results/demo/lr_sweep/denoise.yaml"
    config["losses"]["l1"]["lr"] = 5.0e-3
    (workdir / "swept.yaml").write_text(yaml.safe_dump(config))
    # The file's 1e-3 overrides l1's 5e-3 of the configuration: the models stand; without it, l1 retrains.
    result = _snakemake(workdir, "--cores", "1", "--dry-run", "table_6_1", config=workdir / "swept.yaml")
    assert "Nothing to be done" in result.stdout + result.stderr
    del config["learning_rates_file"]
    (workdir / "unswept.yaml").write_text(yaml.safe_dump(config))
    result = _snakemake(workdir, "--cores", "1", "--dry-run", "table_6_1", config=workdir / "unswept.yaml")
    stats = result.stdout.split("Job stats")[1].split("Reasons")[0]
    assert re.search(r"^train\s+2$", stats, re.MULTILINE), stats  # l1, both seeds
