"""fastMRI's U-net (model.name: fastmri_unet) through the tiny workflow: training, inference and evaluation."""

import csv
import subprocess

import torch
import yaml
from fastmri.models import Unet as FastMRIUnet

from lossbench.train.loop import load_model

from conftest import TINY_CONFIG, snakemake_command


def test_fastmri_unet_trains_infers_and_is_evaluated_on_rgb_and_mri(tmp_path):
    with open(TINY_CONFIG) as handle:
        config = yaml.safe_load(handle)
    config["model"] = {"name": "fastmri_unet", "chans": 4, "num_pool_layers": 2}
    config["losses"] = {"l1": config["losses"]["l1"]}
    # RGB denoising and MRI: in_chans 3 and 1; metrics that need no weights keep it short.
    config["tasks"] = {task: config["tasks"][task] for task in ("denoise", "knee")}
    config["metrics"] = ["l1", "l2", "psnr"]
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    workdir = tmp_path / "run"
    results = workdir / "results" / "demo"
    targets = [f"results/demo/metrics/{task}/l1/seed0.csv" for task in ("denoise", "knee")]
    command = snakemake_command(str(config_path), str(workdir), *targets, cores=2)
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    for task, channels in (("denoise", 3), ("knee", 1)):
        network, spec = load_model(results / "models" / task / "l1" / "seed0" / "model.pt")
        assert type(network) is FastMRIUnet and network.in_chans == channels and spec.model["name"] == "fastmri_unet"
        with open(results / "metrics" / task / "l1" / "seed0.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert rows and all(float(row["psnr"]) > 0 for row in rows)
        assert all(
            torch.isfinite(torch.tensor([float(row[metric]) for row in rows])).all() for metric in config["metrics"]
        )
