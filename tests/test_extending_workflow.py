"""A user's own loss and metric, the opt-in mix loss and the JPEG-deblocking task through the tiny workflow, added by
configuration only."""

import csv
import os
import subprocess
import sys
import textwrap

import yaml

from conftest import REPO, TINY_CONFIG, snakemake_command

#: The JPEG-deblocking task on the denoising task's photographs (no thesis table: table_jpeg).
JPEG_TASK = {
    "kind": "rgb_jpeg",
    "data_from": "denoise",
    "quality": 10,
    "crop": 32,
    "crops_per_image": 2,
    "training": {"epochs": 1, "batch_size": 4},
}

USER_MODULE = '''
from torch import nn


class HalfL1(nn.Module):
    """Half the mean absolute error: a loss defined outside the package."""

    def forward(self, output, target):
        return 0.5 * (output - target).abs().mean()


def max_error(output, target, power=1.0):
    """The largest absolute error of each image, to the power: a metric defined outside the package."""
    return (output - target).abs().flatten(1).amax(dim=1) ** power
'''


def test_a_users_loss_and_metric_mix_and_the_jpeg_task_get_tables_columns_rows_panels_and_curves(tmp_path):
    (tmp_path / "my_losses.py").write_text(textwrap.dedent(USER_MODULE))
    with open(TINY_CONFIG) as handle:
        config = yaml.safe_load(handle)
    config["tasks"] = {"denoise": config["tasks"]["denoise"], "jpeg": JPEG_TASK}
    config["figures"] = {name: spec for name, spec in config["figures"].items() if spec["task"] == "denoise"}
    config["figures"]["fig_jpeg_1"] = {
        "task": "jpeg",
        "image": "astronaut",
        "crop_figure": "fig_jpeg_2",
        "box": [10, 10, 40, 40],
    }
    config.pop("userstudy", None)
    config["losses"] = {
        "l1": config["losses"]["l1"],
        "mix": {"lr": 1.0e-3, "params": {"term_params": {"msssim": {"small_images": "reduce_scales"}}}},
        "half_l1": {"module": "my_losses:HalfL1", "lr": 1.0e-3, "label": "Half l1"},
    }
    config["own_metrics"] = {
        "max_error": {
            "module": "my_losses:max_error",
            "direction": "lower",
            "label": "Max error",
            "params": {"power": 2.0},
        }
    }
    config["metrics"] = [*config["metrics"], "max_error"]
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    workdir = tmp_path / "run"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    command = snakemake_command(str(config_path), str(workdir), cores=2)
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    tables = workdir / "results" / "demo" / "tables"
    for table in ("table_6_1", "table_jpeg"):
        with open(tables / f"{table}.csv", newline="") as handle:
            header = next(csv.reader(handle))
        assert header[2:11] == ["input", "l1", "l2", "msssim", "lpips_l2", "flip", "adaptive", "mix", "half_l1"]
        markdown = (tables / f"{table}.md").read_text()
        assert "Mix (MS-SSIM+l1)" in markdown and "Half l1" in markdown
        # The own metric: the last row of every table, in every format, with a value for every model.
        with open(tables / f"{table}.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [row["metric"] for row in rows][-2:] == ["flip", "max_error"] and all(
            rows[-1][column] for column in ("input", "l1", "mix", "half_l1")
        )
        assert "| Max error ↓ |" in markdown and r"Max error $\downarrow$ &" in (tables / f"{table}.tex").read_text()
        assert "| Max error | 0 |" in (tables / f"{table}_per_seed.md").read_text()
    jpeg = (tables / "table_jpeg.md").read_text()
    assert (
        "| Metric | JPEG |" in jpeg
        and "JPEG deblocking at quality 10" in jpeg
        and "(task jpeg; not in the thesis)" in jpeg
    )
    assert (
        not list(tables.glob("table_jpeg_vs_paper*"))
        and (tables / "table_jpeg.tex").is_file()
        and (tables / "table_jpeg_per_seed.md").is_file()
    )
    with open(tables / "table_6_1_vs_paper.csv", newline="") as handle:
        compared = [row for row in csv.DictReader(handle) if row["model"] in ("mix", "half_l1")]
    assert compared and all(row["paper"] == "" and row["ours"] != "" for row in compared)
    with open(tables / "table_6_1_vs_paper.csv", newline="") as handle:
        own_metric = [row for row in csv.DictReader(handle) if row["metric"] == "max_error"]
    assert {row["model"] for row in own_metric if row["ours"]} == {"input", "l1", "mix", "half_l1"} and all(
        row["paper"] == "" for row in own_metric
    )
    assert "| Max error |" in (workdir / "results" / "demo" / "summary.md").read_text()
    # The statistics (built with one seed too on request): the own metric is ranked and compared like the thesis's.
    result = subprocess.run([*command, "statistics"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Max error" in (workdir / "results" / "demo" / "tables" / "table_6_1_pairs.md").read_text()
    assert (workdir / "results" / "demo" / "figures" / "ranking_jpeg.png").stat().st_size > 0
    figures = workdir / "results" / "demo" / "figures"
    assert all((figures / f"{name}.png").stat().st_size > 0 for name in config["figures"])
    assert (figures / "curves_denoise.png").stat().st_size > 0 and (figures / "curves_jpeg.png").stat().st_size > 0
    # The JPEG task read the denoising task's photographs: no copy of them was made.
    assert sorted(path.name for path in (workdir / "results" / "demo" / "data").iterdir() if path.is_dir()) == [
        "denoise",
        "jpeg",
    ]
    assert not list((workdir / "results" / "demo" / "data" / "jpeg").glob("*_images"))


def test_the_plan_of_the_tiny_config_with_the_jpeg_task_compares_only_the_thesis_tables(tmp_path):
    with open(TINY_CONFIG) as handle:
        config = yaml.safe_load(handle)
    config["tasks"]["jpeg"] = JPEG_TASK
    config["losses"]["l2"]["lr"]["jpeg"] = 1.0e-3
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(config_path),
        "--directory",
        str(tmp_path),
        "--dry-run",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    planned = {word.rstrip(",") for word in result.stdout.split() if word.startswith("results/demo/tables/")}
    assert {
        f"results/demo/tables/table_jpeg{suffix}" for suffix in (".csv", ".md", ".tex", "_per_seed.csv", "_per_seed.md")
    } <= planned
    assert {f"results/demo/tables/{table}_vs_paper.md" for table in ("table_6_1", "table_6_3", "table_6_4")} <= planned
    assert not [
        path
        for path in planned
        if path.startswith("results/demo/tables/table_jpeg_vs_paper")
        or path.startswith("results/demo/tables/table_jpeg_fastmri")
    ]
