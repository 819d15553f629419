"""The demo configuration, scaled down, learns: through Snakemake, its denoising models beat their input by dB.

A regression that stops training from learning (a broken loss gradient, a schedule that sets the rate
to zero, a model that ignores its input) leaves the PSNR at the noisy input's and fails here. The run
takes config.yaml as it is and keeps denoising with two losses, on fewer steps.
"""

import csv
import os
import subprocess

import pytest
import yaml

from lossbench.report.summary import Scale, read_table, summarise

from conftest import REPO, snakemake_command

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
    command = snakemake_command(str(workdir / "config.yaml"), str(workdir), "results/demo/summary.md", cores=2)
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return workdir


@pytest.mark.slow
def test_scaled_demo_denoises_by_several_db(scaled_demo):
    table = read_table(scaled_demo / "results" / "demo" / "tables" / "table_6_1.csv")
    psnr = table["psnr"]
    assert psnr["input"] == pytest.approx(20.17, abs=0.3)
    for loss in ("l2", "adaptive"):
        assert psnr[loss] - psnr["input"] >= MIN_GAIN_DB, (
            f"{loss}: {psnr[loss]:.2f} dB against the input's {psnr['input']:.2f} dB"
        )


@pytest.mark.slow
def test_summary_reports_gains_and_own_metric_winners(scaled_demo):
    text = (scaled_demo / "results" / "demo" / "summary.md").read_text()
    table = read_table(scaled_demo / "results" / "demo" / "tables" / "table_6_1.csv")
    # It opens with what the demo is and what its numbers rest on.
    assert text.startswith("# Summary") and "The embedded demo:" in text.split("## ")[0]
    assert (
        "| denoise | 3 images (3 photographs bundled with scikit-image and matplotlib (astronaut, coffee,"
        " grace_hopper), not Kodak) | 1 | 384 | not tested: n = 3 images, fewer than 5 |" in text
    )
    assert "One seed per model" in text
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


def _table(path, rows):
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_summary_opens_with_the_scale_and_gives_each_miss_its_measured_reason(tmp_path):
    table = _table(
        tmp_path / "table_6_3.csv",
        [
            ["metric", "label", "input", "l1", "l2", "flip", "best"],
            ["l1", "1000·l1", "70.0", "40.0", "41.0", "45.0", "l1"],
            ["psnr", "PSNR", "20.00", "23.00", "23.50", "21.00", "l2"],
            ["flip", "FLIP", "0.3000", "0.2000", "0.1900", "0.2300", "l2"],
        ],
    )
    header = "epoch,step,train_loss,val_loss,val_psnr,val_flip,skipped,seconds\n"

    def rows(flips):
        return [
            dict(zip(header.strip().split(","), f"{epoch},{100 * epoch},0.1,0.1,22,{flip},0,1".split(",")))
            for epoch, flip in enumerate(flips, 1)
        ]

    curves = {
        "table_6_3": {
            "flip": rows([0.30, 0.28, 0.26, 0.24, 0.23]),
            "l2": rows([0.25, 0.21, 0.20, 0.195, 0.19]),
            "l1": rows([0.26, 0.22, 0.21, 0.20, 0.20]),
        }
    }
    scales = {
        "knee": Scale(
            "synthetic fastMRI-format knee volumes (3 volumes × 3 slices), not fastMRI's",
            9,
            3,
            "volumes",
            "slices",
            1,
            500,
            3,
        )
    }
    text = summarise({"table_6_3": table}, {"table_6_3": "knee"}, "A small test study.", scales, curves)
    head, knee = text.split("## knee")
    assert head.index("A small test study.") < head.index("## What these numbers rest on")
    assert (
        "| knee | 9 slices of 3 volumes (synthetic fastMRI-format knee volumes (3 volumes × 3 slices), not fastMRI's) |"
        " 1 | 500 | not tested: n = 3 volumes, fewer than 5 |" in head
    )
    # l1 declares its own metric and wins it; FLIP does not, and the race says whether it was still improving.
    assert "| 1000·l1 | l1 | l1 wins |" in knee and "| FLIP | l2 | FLIP does not win (21.1 % behind) |" in knee
    (miss,) = [line for line in knee.splitlines() if line.startswith("- FLIP")]
    assert (
        "FLIP is 0.0400 behind l2 on FLIP. In the race ([figures/race_knee.png](figures/race_knee.png)), over the last"
        " quarter of its 500 steps its FLIP moved -0.01000, l2's -0.00500: still improving" in miss
    )
    assert "docs/flip_loss.md" in miss
