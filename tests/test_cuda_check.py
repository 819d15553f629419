"""bench/cuda_check.py, the GPU check a session with a GPU runs: its skip without CUDA, its stages on
the CPU at a tiny size, and the verdict that turns its measurements into failures and the exit status."""

import copy
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from lossbench import losses

from conftest import REPO

SCRIPT = REPO / "bench" / "cuda_check.py"


@pytest.fixture(scope="module")
def cuda_check():
    spec = importlib.util.spec_from_file_location("cuda_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_skips_without_cuda_and_its_stages_run_on_the_cpu(tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    if not torch.cuda.is_available():
        skipped = subprocess.run(
            [sys.executable, SCRIPT, "--out", out], capture_output=True, text=True, env=env, timeout=120
        )
        assert skipped.returncode == 0 and "no CUDA device" in skipped.stdout and not out.exists()
    dry = subprocess.run(
        [sys.executable, SCRIPT, "--cpu-dry-run", "--out", out], capture_output=True, text=True, env=env, timeout=300
    )
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["failed"] == [] and "no failures" in dry.stdout
    assert set(report["losses"]) == set(losses.names()) and all(
        "error" not in report[stage] for stage in ("losses", "tf32_scope", "resume", "train_run")
    )
    assert report["tf32_scope"]["flip"]["value_relative_difference"] == 0.0  # the CPU against itself
    resume = report["resume"]
    # U-net width 4, depth 4: 2 convolutions with weight and bias per block (9 blocks), 2 per
    # upsampling (4), the output convolution's 2, and the adaptive loss's 2 parameters.
    assert resume["optimizer_states"] == 9 * 4 + 4 * 2 + 2 + 2
    assert resume["step_devices"] == ["cpu"] and resume["moment_devices"] == ["cpu"]
    assert resume["weights_relative_difference"] == 0.0  # on the CPU a resume continues bit for bit
    # The trained model's inference ran; its kernel flags are compared on CUDA only (no-ops on the CPU).
    run = report["train_run"]
    assert run["inferred_images"] == 1 and run["curve"].count("\n") == 2
    assert run["inference_kernel_flags"] is None and run["model_kernel_flags"][0] is True


GOOD = {
    "device": "cuda:0",
    "losses": {"l2": {"images_per_second_fp32": 100.0, "host_sync_in_step": None}},
    "tf32_scope": {"msssim": {"value_relative_difference": 3e-4, "gradient_relative_difference": 7e-5}},
    "compile": {"unique_graphs": 2},
    "resume": {"step_devices": ["cpu"], "moment_devices": ["cuda:0"], "host_sync_in_resumed_steps": None},
    "train_run": {"inference_kernel_flags": [True, "tf32", "tf32"], "model_kernel_flags": [True, "tf32", "tf32"]},
}


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            ("losses", "l2", "host_sync_in_step"),
            "called a synchronizing CUDA operation",
            "losses.l2: a training step syncs with the host: called a synchronizing",
        ),
        (
            ("tf32_scope", "msssim", "value_relative_difference"),
            0.2,
            "tf32_scope.msssim: value_relative_difference 0.2 above 0.01",
        ),
        (
            ("tf32_scope", "msssim", "gradient_relative_difference"),
            0.05,
            "tf32_scope.msssim: gradient_relative_difference 0.05 above 0.001",
        ),
        (
            ("tf32_scope", "msssim", "gradient_relative_difference"),
            float("nan"),
            "tf32_scope.msssim: gradient_relative_difference nan above",
        ),
        (("compile", "unique_graphs"), 5, "compile: dynamo compiled 5 graphs, expected 2"),
        (
            ("resume", "step_devices"),
            ["cpu", "cuda:0"],
            "resume: Adam's step counters are on cpu, cuda:0 after a resume",
        ),
        (("resume", "moment_devices"), ["cpu"], "resume: Adam's moments are on cpu, expected cuda:0"),
        (
            ("resume", "host_sync_in_resumed_steps"),
            "called a synchronizing CUDA operation",
            "resume: a resumed step syncs with the host",
        ),
        (
            ("train_run", "inference_kernel_flags"),
            [False, "ieee", "ieee"],
            (
                "train_run: inference ran with the kernel flags (cudnn.benchmark, float32 precisions) [False, 'ieee',"
                " 'ieee']"
            ),
        ),
        (("compile",), {"error": "BackendCompilerFailed: triton"}, "compile: BackendCompilerFailed: triton"),
    ],
)
def test_each_defect_is_one_failure_line(cuda_check, path, value, expected):
    assert cuda_check.failures(GOOD) == []
    report = copy.deepcopy(GOOD)
    *parents, key = path
    target = report
    for parent in parents:
        target = target[parent]
    target[key] = value
    found = cuda_check.failures(report)
    assert len(found) == 1 and found[0].startswith(expected), found
