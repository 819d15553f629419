"""What a configuration's training costs, before it runs: samples, steps, FLOPs and hours per model.

For every (task, loss, seed) of a configuration: training samples per epoch (counted in the data when
they are there, else fastMRI's and ImageNet's published split sizes, with the source stated), steps,
the U-net's FLOPs per training sample (forward and backward, ``torch.utils.flop_counter``), the loss's
cost measured as a ratio to l2's, and the expected hours on this machine's CPU (measured steps) and on a
GPU: from measured images/s when ``bench/train_step.json`` holds a CUDA run, otherwise from a stated
peak throughput and utilisation, labelled as an estimate.

CLI:
    python -m lossbench.pipeline.budget --config config/paper.yaml --out results/budget.md
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import torch
from torch.utils.flop_counter import FlopCounterMode

from lossbench.core.io import markdown_table
from lossbench.data.images import list_images
from lossbench.data.tasks import channels
from lossbench.pipeline.config import load
from lossbench.pipeline.config_file import ConfigError
from lossbench.pipeline.job_settings import run_settings
from lossbench.pipeline.sections import data_owner, dataset
from lossbench.registry import Registry
from lossbench.train.loop import build_loss, build_model
from lossbench.train.run_settings import LossSettings

#: fastMRI's published split sizes (Zbontar et al. 2018, "fastMRI: An Open Dataset and Benchmarks for
#: Accelerated MRI", arXiv:1811.08839, Table 2), by the folder names the dataset ships with.
PUBLISHED_SLICES = {
    "singlecoil_train": 34_742,
    "singlecoil_val": 7_135,
    "multicoil_train": 70_748,  # brain
    "multicoil_val": 21_842,  # brain; the thesis trains on it (§4.2)
}
PUBLISHED_SOURCE = "fastMRI's published split size (Zbontar et al. 2018, arXiv:1811.08839, Table 2)"
#: The GPU assumed when no CUDA run has been measured: NVIDIA A100's FP32 peak (data sheet) at a
#: utilisation typical of a mid-sized U-net with cuDNN convolutions.
ASSUMED_GPU = {"name": "NVIDIA A100", "peak_flops": 19.5e12, "utilisation": 0.35}


@dataclass
class Samples:
    """Training samples per epoch and where the number comes from."""

    count: int | None
    source: str


def training_samples(config: dict[str, Any], task: str, results: Path = Path("results")) -> Samples:
    """Samples per epoch of ``task``'s training set, from the data when present, else published sizes."""
    settings = config["tasks"][task]
    data = dataset(config, task)  # its own, or that of the task its data_from names
    if data["source"] == "synthetic":
        return Samples(data["train"]["volumes"] * data["train"]["slices"], "configured synthetic volumes × slices")
    if data["source"] == "embedded":
        return Samples(len(data["train"]) * settings["crops_per_image"], "configured photographs × crops per image")
    if data["source"] == "imagenet":
        manifest = results / "data" / data_owner(config, task) / "train_manifest.csv"
        if manifest.is_file():
            images = sum(1 for _ in open(manifest)) - 1
            return Samples(images * settings["crops_per_image"], f"{manifest} × crops per image")
        return Samples(
            data["train_images"] * settings["crops_per_image"],
            "configured ImageNet subset (train_images) × crops per image",
        )
    folder = Path(data["train_dir"])
    if data["source"] == "folder":
        if folder.is_dir():
            return Samples(
                len(list_images(folder)) * settings["crops_per_image"], f"images in {folder} × crops per image"
            )
        return Samples(None, f"{folder} does not exist yet")
    files = sorted(folder.glob("*.h5")) if folder.is_dir() else []
    if files:
        slices = 0
        for path in files:
            with h5py.File(path, "r") as handle:
                slices += int(handle["kspace"].shape[0])
        return Samples(slices, f"slices of the {len(files)} volumes in {folder}")
    if folder.name in PUBLISHED_SLICES:
        return Samples(PUBLISHED_SLICES[folder.name], f"{PUBLISHED_SOURCE}, {folder.name}")
    return Samples(None, f"no .h5 files in {folder} and no published size for a folder named {folder.name!r}")


def flops_per_sample(model: torch.nn.Module, sample: torch.Tensor) -> int:
    """FLOPs of one training sample through ``model``: forward and backward."""
    with FlopCounterMode(display=False) as counter:
        model(sample).square().mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _seconds(step, rounds: int = 3, round_seconds: float = 0.2) -> float:
    """Seconds per call of ``step``: the fastest of ``rounds`` rounds, each of as many calls as fill
    ``round_seconds``. A loss call takes a fraction of a millisecond, so a single timed call measures
    the scheduler more than the loss when other jobs share the CPU (it put l2 at 1,600 × itself)."""
    step()  # warm-up: allocator and lazy initialisation
    best = math.inf
    for _ in range(rounds):
        calls, started = 0, time.perf_counter()
        while True:
            step()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= round_seconds:
                break
        best = min(best, elapsed / calls)
    return best


def cpu_step_seconds(model: torch.nn.Module, sample: torch.Tensor) -> float:
    """Seconds of one U-net training step on one sample on the CPU: forward, backward and Adam."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(sample).square().mean().backward()
        optimizer.step()

    return _seconds(step)


def loss_seconds(loss_fn: torch.nn.Module, sample: torch.Tensor) -> float:
    """Seconds of the loss's forward and backward on one sample on the CPU."""
    output = sample.clone().requires_grad_(True)
    target = sample.flip(-1)

    def step() -> None:
        loss_fn(output, target).backward()

    return _seconds(step)


def train_step_variant(trainer: dict[str, Any]) -> str:
    """The ``bench/train_step.py`` CUDA variant nearest to ``trainer`` (a configuration's ``trainer``):
    its first speed option that is on (compile, bfloat16 autocast, channels_last), else TF32 or fp32.
    The variants change one option each, so a combination is costed at its first option's speed."""
    for variant, on in (
        ("compile", trainer["compile"]),
        ("bf16", trainer["autocast"] == "bfloat16"),
        ("channels_last", trainer["channels_last"]),
    ):
        if on:
            return variant
    return "tf32" if trainer["tf32"] else "fp32"


def measured_gpu(path: Path, trainer: dict[str, Any]) -> dict[str, Any] | None:
    """The paper-size CUDA measurement of ``bench/train_step.json`` in the variant that ``trainer``
    trains with (:func:`train_step_variant`), if a GPU run recorded it there.

    Returns:
        ``name`` (the GPU), ``variant``, and the variant's ``images_per_second`` per loss, ``width``,
        ``depth`` and ``crop``; None without the file, a GPU run, or that variant's measurement.
    """
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    variant = train_step_variant(trainer)
    result = (report.get("cuda_variants") or {}).get(variant, {})
    if report.get("gpu") is None or "images_per_second" not in result:
        return None
    return {"name": report["gpu"], "variant": variant, **result}


def estimate(
    config: dict[str, Any], results: Path = Path("results"), bench: Path = Path("bench/train_step.json")
) -> list[dict[str, Any]]:
    """One row per (task, loss, seed): samples, steps, FLOPs, loss cost and hours (see the module docstring)."""
    gpu, registry = measured_gpu(bench, config["trainer"]), Registry.from_config(config)
    rows = []
    for task in config["tasks"]:
        rows += _task_rows(config, task, training_samples(config, task, results), gpu, registry)
    return rows


def _loss_timings(
    config: dict[str, Any], task: str, sample: torch.Tensor, registry: Registry
) -> dict[str, tuple[float | None, str]]:
    """Loss → seconds of its forward and backward on ``sample``, or None and why it was not timed."""
    per_loss: dict[str, tuple[float | None, str]] = {}
    for loss in config["losses"]:
        settings = run_settings(config, task, loss, 0, registry)
        try:
            per_loss[loss] = (loss_seconds(build_loss(settings, registry), sample), "")
        except (FileNotFoundError, OSError) as error:
            per_loss[loss] = (None, f"loss not timed: {error}")
    return per_loss


def _gpu_rate(
    gpu: dict[str, Any] | None, loss: str, pixels: int, flops: float, extra: float | None, unet_seconds: float
) -> tuple[float, str]:
    """Training samples per second on a GPU and where the number comes from: measured, or estimated from the FLOPs.

    Args:
        gpu: The measured GPU (:func:`measured_gpu`), or None.
        loss: The loss trained.
        pixels: Values per training sample (crop² × channels).
        flops: The U-net's FLOPs per training sample.
        extra: The loss's seconds over l2's on the CPU (None: not timed).
        unet_seconds: A U-net training step's seconds on the CPU.
    """
    if gpu is not None and loss in gpu["images_per_second"]:
        # Measured at the paper's denoising size; other crops and channels scale with FLOPs.
        rate = gpu["images_per_second"][loss] * (gpu["crop"] ** 2 * 3) / pixels
        return rate, f"measured on {gpu['name']} (bench/train_step.json, variant {gpu['variant']}), scaled to the crop"
    loss_factor = 1.0 if extra is None else 1.0 + extra / unet_seconds
    rate = ASSUMED_GPU["peak_flops"] * ASSUMED_GPU["utilisation"] / flops / loss_factor
    return rate, (
        f"estimate: {ASSUMED_GPU['name']} at {ASSUMED_GPU['peak_flops'] / 1e12:g} TFLOP/s FP32 ×"
        f" {ASSUMED_GPU['utilisation']:.0%} utilisation, loss cost as on this CPU"
    )


def _task_rows(
    config: dict[str, Any], task: str, samples: Samples, gpu: dict[str, Any] | None, registry: Registry
) -> list[dict[str, Any]]:
    """The rows of :func:`estimate` of one task: its losses' costs, measured on a sample of its crop."""
    training, crop = config["tasks"][task]["training"], config["tasks"][task]["crop"]
    settings = run_settings(config, task, next(iter(config["losses"])), 0, registry)
    sample = torch.rand(1, channels(settings.kind), crop, crop, generator=torch.Generator().manual_seed(0))
    per_loss = _loss_timings(config, task, sample, registry)
    torch.manual_seed(0)
    flops = flops_per_sample(build_model(settings), sample)
    unet_seconds = cpu_step_seconds(build_model(settings), sample)
    # The reference of the loss-cost column: l2's own timing when it is one of the losses, so that its ratio is 1.
    l2_seconds = per_loss.get("l2", (None, ""))[0] or loss_seconds(
        build_loss(replace(settings, loss=LossSettings("l2", {}))), sample
    )
    epochs, count = training["epochs"], samples.count
    rows = []
    for loss in config["losses"]:
        seconds, note = per_loss[loss]
        extra = None if seconds is None else max(0.0, seconds - l2_seconds)
        rate, gpu_source = _gpu_rate(gpu, loss, crop**2 * channels(settings.kind), flops, extra, unet_seconds)
        known = count is not None
        row = {
            "samples": count,
            "samples_source": samples.source,
            "epochs": epochs,
            "steps": epochs * math.ceil(count / training["batch_size"]) if known else None,
            "gflops_per_sample": flops / 1e9,
            "loss_cost_vs_l2": None if seconds is None else seconds / l2_seconds,
            "cpu_hours": (unet_seconds + extra) * count * epochs / 3600 if known and extra is not None else None,
            "gpu_hours": count * epochs / rate / 3600 if known else None,
            "gpu_source": gpu_source,
            "note": note,
        }
        rows += [{"task": task, "loss": loss, "seed": seed, **row} for seed in config["seeds"]]
    return rows


def _number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def to_markdown(rows: list[dict[str, Any]], source: str) -> str:
    """The budget as Markdown: one row per training job, then the totals and every source named."""
    header = ["task", "loss", "seed", "samples/epoch", "epochs", "steps", "GFLOPs/sample (U-net fwd+bwd)"]
    header += ["loss cost × l2", "CPU hours", "GPU hours"]
    body = [
        [
            row["task"],
            row["loss"],
            row["seed"],
            _number(row["samples"]),
            f"{row['epochs']:,}",
            _number(row["steps"]),
            f"{row['gflops_per_sample']:.1f}",
            _number(row["loss_cost_vs_l2"]),
            _number(row["cpu_hours"]),
            _number(row["gpu_hours"]),
        ]
        for row in rows
    ]
    lines = [
        f"# Compute budget of {source}",
        "",
        f"Measured on this machine's CPU with {torch.get_num_threads()} threads (torch {torch.__version__}).",
        "",
        markdown_table(header, body, "ll" + "r" * 8),
    ]
    known = [row for row in rows if row["gpu_hours"] is not None]
    total_gpu = sum(row["gpu_hours"] for row in known)
    total_cpu = sum(row["cpu_hours"] for row in rows if row["cpu_hours"] is not None)
    lines += [
        "",
        f"**Total: {len(rows)} trainings, {total_gpu:,.0f} GPU-hours ({total_gpu / 24:,.1f} GPU-days), {total_cpu:,.0f}"
        " CPU-hours on this machine**"
        + ("" if len(known) == len(rows) else f" (for the {len(known)} trainings whose data size is known)")
        + ".",
        "",
        "Sources:",
    ]
    sources = sorted(
        {f"{row['task']}: samples from {row['samples_source']}" for row in rows}
        | {f"GPU hours: {row['gpu_source']}" for row in rows}
        | {f"{row['task']}/{row['loss']}: {row['note']}" for row in rows if row["note"]}
    )
    lines += [f"- {entry}" for entry in sources]
    lines += [
        "",
        "Training only: validation, inference and evaluation are not included; the CPU hours assume one job at a time.",
    ]
    return "\n".join(lines) + "\n"


def write_budget(
    config: dict[str, Any],
    out: str | Path,
    source: str,
    results: str | Path = "results",
    bench: str | Path = "bench/train_step.json",
) -> Path:
    """Estimate the configuration's training cost and write it as Markdown to ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_markdown(estimate(config, Path(results), Path(bench)), source))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lossbench.pipeline.budget", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML configuration (e.g. config/paper.yaml)")
    parser.add_argument("--out", default="results/budget.md")
    parser.add_argument("--results", default="results", help="results folder holding checked data, if any")
    parser.add_argument("--bench", default="bench/train_step.json", help="train_step benchmark with a CUDA run, if any")
    args = parser.parse_args(argv)
    try:
        config = load(args.config, require_data=False)
    except ConfigError as error:
        parser.exit(2, f"Configuration error: {error}\n")
    print(write_budget(config, args.out, args.config, args.results, args.bench).read_text())


if __name__ == "__main__":
    main()
