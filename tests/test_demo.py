"""The demo configuration, scaled down, learns: through Snakemake, its denoising models beat their input by dB.

A regression that stops training from learning (a broken loss gradient, a schedule that sets the rate
to zero, a model that ignores its input) leaves the PSNR at the noisy input's and fails here. The run
takes config.yaml as it is and keeps denoising with two losses, on fewer steps.
"""

import csv
import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from lossbench.summary import read_table, summarise

#: Denoising models must gain at least this much PSNR over the noisy input (σ = 25) after the short run.
MIN_GAIN_DB = 3.0


@pytest.fixture(scope="module")
def scaled_demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["losses"] = {name: config["losses"][name] for name in ("l2", "adaptive")}
    config["tasks"] = {"denoise": config["tasks"]["denoise"]}
    config["tasks"]["denoise"]["training"]["epochs"] = 4
    config["figures"] = {}
    config["userstudy"]["stimuli"] = {}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile", str(workdir / "config.yaml"),
               "--directory", str(workdir), "--cores", "2", "results/demo/summary.md"]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return workdir


@pytest.mark.slow
def test_scaled_demo_denoises_by_several_db(scaled_demo):
    table = read_table(scaled_demo / "results" / "demo" / "tables" / "table_6_1.csv")
    psnr = table["psnr"]
    assert psnr["input"] == pytest.approx(20.17, abs=0.3)
    for loss in ("l2", "adaptive"):
        assert psnr[loss] - psnr["input"] >= MIN_GAIN_DB, f"{loss}: {psnr[loss]:.2f} dB against the input's {psnr['input']:.2f} dB"


@pytest.mark.slow
def test_summary_reports_gains_and_own_metric_winners(scaled_demo):
    text = (scaled_demo / "results" / "demo" / "summary.md").read_text()
    table = read_table(scaled_demo / "results" / "demo" / "tables" / "table_6_1.csv")
    assert text == summarise({"table_6_1": scaled_demo / "results" / "demo" / "tables" / "table_6_1.csv"})
    gain = table["psnr"]["l2"] - table["psnr"]["input"]
    assert f"| l2 | {table['psnr']['l2']:.2f} | {gain:+.2f} |" in text
    assert "| 1000·l2 | " in text and ("l2 wins" in text or "l2 does not win" in text)


def test_summary_names_the_winner_and_how_far_an_own_metric_loss_is_behind(tmp_path):
    path = tmp_path / "table_6_1.csv"
    rows = [
        ["metric", "label", "input", "l1", "l2", "msssim", "lpips_l2", "flip", "adaptive", "best"],
        ["l2", "1000·l2", "9.0", "2.0", "2.1", "2.5", "", "", "", "l1"],
        ["psnr", "PSNR", "20.00", "27.00", "26.50", "26.00", "", "", "", "l1"],
        ["msssim", "MS-SSIM", "0.70", "0.93", "0.92", "0.95", "", "", "", "msssim"],
    ]
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    text = summarise({"table_6_1": path})
    assert "| l1 | 27.00 | +7.00 |" in text and "| MS-SSIM | 26.00 | +6.00 |" in text
    assert "| 1000·l2 | l1 | l2 does not win (5.0 % behind) |" in text
    assert "| MS-SSIM | MS-SSIM | MS-SSIM wins |" in text
    assert "| PSNR | l1 |  |" in text


def test_summary_rejects_a_file_that_is_not_a_table(tmp_path):
    path = tmp_path / "table_6_1.csv"
    path.write_text("image,psnr\nastronaut,20.1\n")
    with pytest.raises(ValueError, match=r"table_6_1.csv: not a lossbench table CSV"):
        summarise({"table_6_1": path})
