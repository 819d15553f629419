"""`snakemake statistics` on a tiny two-seed, two-loss denoising run, and what `all` plans with one seed or several."""

import csv
import re

import pytest
import yaml

from conftest import TINY_CONFIG
from test_workflow import _snakemake

#: Five validation photographs: the fewest a test runs on (lossbench.report.statistics.MIN_UNITS).
VAL = ["astronaut", "coffee", "grace_hopper", "motorcycle", "hubble"]


def _config(root, seeds, val=VAL):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    denoise = config["tasks"]["denoise"]
    denoise["data"]["val"] = val
    config.update(seeds=seeds, tasks={"denoise": denoise}, figures={})
    config["losses"] = {"l1": config["losses"]["l1"], "l2": {"lr": 1.0e-3}}
    config["metrics"] = ["l1", "l2", "psnr"]
    path = root / f"config_{len(seeds)}_{len(val)}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("statistics")
    _snakemake(root, "--cores", "2", "statistics", config=_config(root, [0, 1]))
    return root


def test_variance_pairs_and_ranking_are_made(workdir):
    tables, figures = workdir / "results" / "demo" / "tables", workdir / "results" / "demo" / "figures"
    with open(tables / "table_6_1_variance.csv") as handle:
        rows = {row["metric"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"l1", "l2", "psnr"}
    psnr = rows["psnr"]
    assert (psnr["losses"], psnr["seeds"], psnr["unit"], psnr["units"], psnr["images"], psnr["tested"]) == (
        "2",
        "2",
        "image",
        "5",
        "5",
        "yes",
    )
    assert sum(float(psnr[f"share_{part}"]) for part in ("loss", "seed", "unit", "residual")) == pytest.approx(
        1.0, abs=1e-3
    )
    assert psnr["F"] and psnr["p_loss"]
    assert "n = 5 images, 2 seeds" in (tables / "table_6_1_variance.md").read_text()
    assert "between/within" in (tables / "table_6_1_variance.md").read_text()
    assert r"\begin{tabular}" in (tables / "table_6_1_variance.tex").read_text()
    with open(tables / "table_6_1_pairs.csv") as handle:
        pairs = list(csv.DictReader(handle))
    assert [(row["metric"], row["a"], row["b"]) for row in pairs] == [
        ("l1", "l1", "l2"),
        ("l2", "l1", "l2"),
        ("psnr", "l1", "l2"),
    ]
    assert all(row["p_holm"] != "" for row in pairs)
    assert (figures / "ranking_denoise.png").stat().st_size > 0 and (figures / "ranking_denoise.pdf").stat().st_size > 0


def test_all_includes_statistics_only_with_several_seeds(workdir):
    def planned(seeds):
        result = _snakemake(workdir, "--cores", "1", "--dry-run", "--forceall", config=_config(workdir, seeds))
        return result.stdout.split("Job stats")[1].split("Reasons")[0]

    assert re.search(r"^table_statistics\s+1$", planned([0, 1]), re.M)
    one_seed = planned([0])
    assert "table_statistics" not in one_seed and "ranking_figure" not in one_seed


def test_one_seed_says_seed_variation_is_not_measured(workdir):
    _snakemake(
        workdir,
        "--cores",
        "2",
        "results/demo/tables/table_6_1_variance.md",
        "--forcerun",
        "table_statistics",
        config=_config(workdir, [0]),
    )
    text = (workdir / "results" / "demo" / "tables" / "table_6_1_variance.md").read_text()
    assert "seed variation is not measured" in text and "| not measured |" in text


def test_three_validation_images_are_not_tested_and_say_so(tmp_path):
    # The demo's 3 photographs: shares are described, nothing is tested, and every output says why.
    _snakemake(
        tmp_path,
        "--cores",
        "2",
        "statistics",
        "results/demo/tables/table_6_1.md",
        config=_config(tmp_path, [0, 1], VAL[:3]),
    )
    tables, figures = tmp_path / "results" / "demo" / "tables", tmp_path / "results" / "demo" / "figures"
    with open(tables / "table_6_1_pairs.csv") as handle:
        assert {(row["significant"], row["p_holm"], row["better"]) for row in csv.DictReader(handle)} == {
            ("not tested (n = 3 images)", "", "")
        }
    assert "| not tested (n = 3 images) | —" in (tables / "table_6_1_variance.md").read_text()
    main = (tables / "table_6_1.md").read_text()
    assert (
        "†" not in main
        and "No significance marks: n = 3 images, 2 seeds, fewer than the 5 independent images a test needs" in main
    )
    assert (figures / "ranking_denoise.png").stat().st_size > 0
