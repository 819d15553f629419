"""A user's own loss and the opt-in mix loss through the tiny workflow, added by configuration only."""

import csv
import os
import subprocess
import sys
import textwrap

import yaml

from conftest import REPO, TINY_CONFIG

USER_MODULE = '''
from torch import nn


class HalfL1(nn.Module):
    """Half the mean absolute error: a loss defined outside the package."""

    def forward(self, output, target):
        return 0.5 * (output - target).abs().mean()
'''


def test_a_users_loss_and_mix_get_columns_panels_and_curves(tmp_path):
    (tmp_path / "my_losses.py").write_text(textwrap.dedent(USER_MODULE))
    with open(TINY_CONFIG) as handle:
        config = yaml.safe_load(handle)
    config["tasks"] = {"denoise": config["tasks"]["denoise"]}
    config["figures"] = {name: spec for name, spec in config["figures"].items() if spec["task"] == "denoise"}
    config.pop("userstudy", None)
    config["losses"] = {
        "l1": config["losses"]["l1"],
        "mix": {"lr": 1.0e-3, "params": {"term_params": {"msssim": {"small_images": "reduce_scales"}}}},
        "half_l1": {"module": "my_losses:HalfL1", "lr": 1.0e-3, "label": "Half l1"},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    workdir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile", str(config_path), "--directory", str(workdir), "--cores", "2"]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    tables = workdir / "results" / "demo" / "tables"
    with open(tables / "table_6_1.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header[2:11] == ["input", "l1", "l2", "msssim", "lpips_l2", "flip", "adaptive", "mix", "half_l1"]
    markdown = (tables / "table_6_1.md").read_text()
    assert "Mix (MS-SSIM+l1)" in markdown and "Half l1" in markdown
    with open(tables / "table_6_1_vs_paper.csv", newline="") as handle:
        compared = [row for row in csv.DictReader(handle) if row["model"] in ("mix", "half_l1")]
    assert compared and all(row["paper"] == "" and row["ours"] != "" for row in compared)
    figures = workdir / "results" / "demo" / "figures"
    assert all((figures / f"{name}.png").stat().st_size > 0 for name in config["figures"])
    assert (figures / "curves_denoise.png").stat().st_size > 0
