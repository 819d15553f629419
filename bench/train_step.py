"""Training-step throughput: network forward+backward+Adam step per loss, in images per second.

    python bench/train_step.py [--model unet] [--out bench/train_step.json] [--repeats 3] [--threads 2]

``--model`` is a registered network (``model.name``: ``unet``, the thesis's, or ``fastmri_unet``,
``fastmri.models.Unet``); repeat it to time several side by side. Two sizes on RGB denoising crops:
the demo's (config.yaml: width 8, depth 3, residual, 64×64, batch 4) and the thesis's
(config/paper.yaml: width 32, depth 4, 256×256; batch 16 on CUDA, 4 on the CPU to keep the run
short; images/s are per image either way), given to each network under its own keys (fastMRI's
``chans`` and ``num_pool_layers``; the demo's residual skip is the thesis U-net's only). Results of
the first ``--model`` are keyed ``<device>/<size>`` (what the budget reads), those of the others
``<device>/<size>/<model>``. On CUDA the first network's paper size is also timed in the variants of
:data:`CUDA_VARIANTS` (fp32 without TF32, TF32, bfloat16 autocast, channels_last, torch.compile:
``trainer.tf32``, ``autocast``, ``channels_last``, ``compile``), each where the GPU supports it,
with the share of each step that the loss's forward and backward take; the JSON's
``cuda_variants`` and ``gpu`` (its name) feed :func:`lossbench.pipeline.budget.measured_gpu`. The median over
repeats is reported, interleaved across losses so that machine noise affects all alike. Last, the demo's own
CPU steps per task and loss, in their parts, against this core's peak and the previous default
(``demo_steps``, :mod:`_demo_steps`).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from lossbench import losses, models
from lossbench.data.tasks import channels
from lossbench.train.device import MIN_CAPABILITY, DeviceError, check_gpu_features, configure_cuda_kernels

REPO = Path(__file__).resolve().parents[1]

#: name → (width, depth, residual, crop, batch on CPU, batch on CUDA).
SIZES = {"demo": (8, 3, True, 64, 4, 4), "paper": (32, 4, False, 256, 4, 16)}


def model_section(model: str, size: str) -> dict:
    """The ``model`` section of network ``model`` at ``size``: width and depth under the network's own keys."""
    width, depth, residual = SIZES[size][:3]
    spec = models.spec(model)
    section = {"name": model, spec.width_key: width, spec.depth_key: depth}
    if "residual" in spec.schema:
        section["residual"] = residual
    return section


def _step(
    model: torch.nn.Module,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor],
    autocast: bool,
) -> float:
    degraded, clean = batch
    if degraded.is_cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(degraded.device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = loss_fn(model(degraded), clean)
    loss.backward()
    optimizer.step()
    if degraded.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started


def _setups(model: str, size: str, device: torch.device, fast: bool) -> dict[str, tuple]:
    """Loss name → (network, loss, optimiser, batch, autocast) for every loss, with network ``model``."""
    crop, cpu_batch, cuda_batch = SIZES[size][3:]
    batch = cuda_batch if device.type == "cuda" else cpu_batch
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(batch, 3, crop, crop, generator=generator)
    degraded = clean + 25 / 255 * torch.randn(clean.shape, generator=generator)
    layout = torch.channels_last if fast else torch.contiguous_format
    data = (degraded.to(device).contiguous(memory_format=layout), clean.to(device))
    setups = {}
    for name in losses.names():
        torch.manual_seed(0)
        network = models.build(model_section(model, size), 3).to(device, memory_format=layout)
        loss_fn = losses.spec(name).build(losses.spec(name).portable_params, channels("rgb_denoise")).to(device)
        optimizer = torch.optim.Adam(list(network.parameters()) + list(loss_fn.parameters()), lr=1e-4)
        setups[name] = (network, loss_fn, optimizer, data, fast)
    return setups


def measure(model: str, size: str, device: torch.device, repeats: int) -> dict:
    """Median seconds per step and images/s of every loss with network ``model`` at ``size`` on ``device``."""
    setups = _setups(model, size, device, False)
    for setup in setups.values():  # warm-up: allocator, kernels, lazy initialisation
        _step(*setup)
    times = {name: [] for name in setups}
    for _ in range(repeats):
        for name, setup in setups.items():
            times[name].append(_step(*setup))
    batch = next(iter(setups.values()))[3][0].shape[0]
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "model": model_section(model, size),
        "batch": batch,
        "crop": SIZES[size][3],
        "width": SIZES[size][0],
        "depth": SIZES[size][1],
        "seconds_per_step": medians,
        "images_per_second": {name: batch / seconds for name, seconds in medians.items()},
    }


#: CUDA variants of the paper size: each one option away from TF32 (torch's default for convolutions,
#: and config/paper.yaml's), fp32 without it. lossbench.pipeline.budget picks the one a configuration trains with.
CUDA_VARIANTS = {
    "fp32": {"tf32": False, "autocast": False, "channels_last": False, "compile": False},
    "tf32": {"tf32": True, "autocast": False, "channels_last": False, "compile": False},
    "bf16": {"tf32": True, "autocast": True, "channels_last": False, "compile": False},
    "channels_last": {"tf32": True, "autocast": False, "channels_last": True, "compile": False},
    "compile": {"tf32": True, "autocast": False, "channels_last": False, "compile": True},
}


def unsupported(settings: dict[str, bool], device: torch.device) -> str | None:
    """Why the GPU cannot run a variant's ``settings`` (one line), or None."""
    try:
        check_gpu_features(device, "bfloat16" if settings["autocast"] else "none", settings["compile"])
    except DeviceError as error:
        return str(error)
    if settings["tf32"] and device.type == "cuda" and torch.cuda.get_device_capability(device) < MIN_CAPABILITY:
        return f"TF32 needs compute capability {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} or newer"
    return None


def _loss_seconds(loss_fn: torch.nn.Module, output: torch.Tensor, clean: torch.Tensor, autocast: bool) -> float:
    """Seconds of the loss's forward and backward alone, on a detached U-net output."""
    if output.is_cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.autocast(output.device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = loss_fn(output, clean)
    loss.backward()
    if output.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measure_variant(
    name: str, device: torch.device, repeats: int, size: str = "paper", model: str = models.DEFAULT
) -> dict:
    """Images/s of every loss with network ``model`` at ``size`` in CUDA variant ``name``, and the loss's share of each
    step.

    Returns:
        ``batch``, ``crop``, ``width``, ``depth``, the variant's ``settings``, ``seconds_per_step``,
        ``images_per_second`` and ``loss_share_of_step`` per setup; or ``settings`` and ``skipped``
        (why the GPU cannot run it) or ``error`` (the first line of what failed, e.g. compile).
    """
    settings = CUDA_VARIANTS[name]
    reason = unsupported(settings, device)
    if reason is not None:
        return {"settings": settings, "skipped": reason}
    configure_cuda_kernels(device, tf32=settings["tf32"], benchmark=True)
    torch._dynamo.reset()
    setups = {}
    for key, (network, loss_fn, optimizer, data, _) in _setups(model, size, device, settings["channels_last"]).items():
        setups[key] = (
            torch.compile(network) if settings["compile"] else network,
            loss_fn,
            optimizer,
            data,
            settings["autocast"],
        )
    try:
        for setup in setups.values():  # warm-up: compilation, cuDNN autotuning, allocator
            _step(*setup)
        steps, loss_only = {key: [] for key in setups}, {key: [] for key in setups}
        for _ in range(repeats):
            for key, (forward, loss_fn, optimizer, (degraded, clean), autocast) in setups.items():
                steps[key].append(_step(forward, loss_fn, optimizer, (degraded, clean), autocast))
                # The uncompiled module: the same output, without a compile for no-grad mode.
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    output = getattr(forward, "_orig_mod", forward)(degraded)
                loss_only[key].append(_loss_seconds(loss_fn, output.detach().requires_grad_(), clean, autocast))
    except Exception as error:  # e.g. torch.compile without a working Triton: a result of this GPU
        return {
            "settings": settings,
            "error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
        }
    batch = next(iter(setups.values()))[3][0].shape[0]
    medians = {key: statistics.median(values) for key, values in steps.items()}
    width, depth, _, crop, *_ = SIZES[size]
    return {
        "model": model_section(model, size),
        "batch": batch,
        "crop": crop,
        "width": width,
        "depth": depth,
        "settings": settings,
        "seconds_per_step": medians,
        "images_per_second": {key: batch / seconds for key, seconds in medians.items()},
        "loss_share_of_step": {key: statistics.median(loss_only[key]) / medians[key] for key in setups},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", action="append", choices=models.names(), help="network to time (repeatable; default: unet)"
    )
    parser.add_argument("--out", default="bench/train_step.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--demo-repeats", type=int, default=30, help="steps per variant of the demo's CPU steps (0: not timed)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    chosen = args.model or [models.DEFAULT]
    results = {}
    for device in devices:
        for position, model in enumerate(chosen):
            suffix = "" if position == 0 else f"/{model}"
            for size in SIZES:
                results[f"{device.type}/{size}{suffix}"] = measure(model, size, device, args.repeats)
    report = {
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "results": results,
    }
    if torch.cuda.is_available():
        report["cuda_variants"] = {
            name: measure_variant(name, torch.device("cuda"), args.repeats, model=chosen[0]) for name in CUDA_VARIANTS
        }
    if args.demo_repeats:
        # Here, not at the top: bench/ is on the path when this file runs as a script, not when a test loads it.
        import _demo_steps

        # Last, with one thread of its own: the demo's jobs each train on one.
        report["demo_steps"] = _demo_steps.measure(REPO / "config.yaml", ["denoise", "knee"], args.demo_repeats)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    names = list(next(iter(results.values()))["images_per_second"])
    print(f"{'images/s':18s}" + "".join(f"{key:>28s}" for key in results))
    for name in names:
        print(f"{name:18s}" + "".join(f"{results[key]['images_per_second'][name]:28.1f}" for key in results))
    for variant, result in report.get("cuda_variants", {}).items():
        print(
            f"cuda/paper/{variant}: "
            + (
                ", ".join(
                    f"{key} {result['images_per_second'][key]:.1f} images/s (loss"
                    f" {result['loss_share_of_step'][key]:.0%})"
                    for key in result["images_per_second"]
                )
                if "images_per_second" in result
                else result.get("skipped") or result["error"]
            )
        )


if __name__ == "__main__":
    main()
