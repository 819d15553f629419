"""The compute budget: samples from the data or from published sizes, FLOPs, GPU hours from what
bench/train_step.py writes, and `snakemake budget` without data."""

import importlib.util
import json
import re
import subprocess
import sys

import pytest
import yaml

from lossbench.data.fastmri_synthetic import generate_dataset
from lossbench.models import UNet
from lossbench.pipeline import budget
from lossbench.pipeline.config import validate

from conftest import REPO


def test_unet_flops_scale_with_pixels_and_count_forward_and_backward():
    import torch

    model = UNet(1, 1, width=4, depth=2)
    small = budget.flops_per_sample(model, torch.rand(1, 1, 32, 32))
    large = budget.flops_per_sample(model, torch.rand(1, 1, 64, 64))
    assert large == pytest.approx(4 * small, rel=0.01)
    first_conv = 2 * 32 * 32 * 4 * 1 * 9  # multiply-adds of the first 3×3 convolution, forward only
    assert small > 3 * first_conv


def test_samples_come_from_the_data_or_from_published_sizes(tiny_config, tmp_path):
    config = validate(tiny_config, "tiny.yaml")
    assert budget.training_samples(config, "knee").count == 2  # 1 synthetic volume × 2 slices
    assert budget.training_samples(config, "denoise").count == 4  # 2 photographs × 2 crops
    generate_dataset(tmp_path / "singlecoil_train", "singlecoil", 2, 3, seed=0)
    config["tasks"]["knee"]["data"] = {
        "source": "fastmri",
        "train_dir": str(tmp_path / "singlecoil_train"),
        "val_dir": str(tmp_path),
    }
    found = budget.training_samples(config, "knee")
    assert found.count == 6 and "2 volumes" in found.source
    config["tasks"]["knee"]["data"]["train_dir"] = str(tmp_path / "absent" / "singlecoil_train")
    published = budget.training_samples(config, "knee")
    assert published.count == 34_742 and "Zbontar" in published.source


def test_budget_target_runs_for_the_paper_configuration_without_its_data(tmp_path):
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["tasks"] = {"knee": config["tasks"]["knee"]}  # one task keeps the test short
    config["losses"] = {name: config["losses"][name] for name in ("l1", "l2")}
    config["figures"] = {}
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--cores",
        "1",
        "budget",
        "--configfile",
        str(path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    text = (tmp_path / "results" / "paper" / "budget.md").read_text()
    assert re.search(r"\| knee \| l2 \| 0 \| 34,742 \| 1,000 \| 4,343,000 \| [0-9.]+ \| 1\.0 \|", text), (
        text
    )  # l2 costs 1 × l2
    l1_cost = float(re.search(r"\| knee \| l1 \| 0 \|(?: [^|]+ \|){4} ([0-9.,]+) \|", text).group(1).replace(",", ""))
    assert 0.2 < l1_cost < 5, text  # an elementwise loss costs about what l2 does
    assert "GPU-hours" in text and "estimate" in text


def _train_step_module():
    spec = importlib.util.spec_from_file_location("train_step", REPO / "bench" / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_hours_come_from_the_train_step_variant_the_configuration_trains_with(tiny_config, tmp_path):
    import torch

    # What bench/train_step.py writes for a CUDA variant, measured for real on the CPU at the demo size
    # (only the numbers are not a GPU's); the GPU's name is made up.
    torch.manual_seed(0)
    variant = _train_step_module().measure_variant("fp32", torch.device("cpu"), repeats=1, size="demo")
    assert {"batch", "crop", "width", "depth", "images_per_second", "loss_share_of_step"} <= variant.keys()
    assert all(0 < share < 1 for share in variant["loss_share_of_step"].values())
    bench = tmp_path / "train_step.json"
    bench.write_text(
        json.dumps({"gpu": "Made-up GPU", "cuda_variants": {"fp32": variant, "compile": {"skipped": "no Triton"}}})
    )
    config = validate(tiny_config, "tiny.yaml")
    config["tasks"] = {"denoise": config["tasks"]["denoise"]}
    config["trainer"].update(tf32=False, compile=False, autocast="none", channels_last=False)
    assert budget.measured_gpu(bench, config["trainer"])["name"] == "Made-up GPU"
    rows = budget.estimate(config, tmp_path, bench)
    for row in rows:
        rate = (
            variant["images_per_second"][row["loss"]] * variant["crop"] ** 2 / config["tasks"]["denoise"]["crop"] ** 2
        )
        assert row["gpu_source"] == "measured on Made-up GPU (bench/train_step.json, variant fp32), scaled to the crop"
        assert row["gpu_hours"] == pytest.approx(row["samples"] * row["epochs"] / rate / 3600)
    # A configuration that compiles needs the compile variant, which this GPU could not run: an estimate.
    config["trainer"]["compile"] = True
    assert budget.measured_gpu(bench, config["trainer"]) is None
    assert all(row["gpu_source"].startswith("estimate") for row in budget.estimate(config, tmp_path, bench))
    assert budget.measured_gpu(tmp_path / "absent.json", config["trainer"]) is None
