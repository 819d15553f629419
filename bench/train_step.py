"""Training-step throughput: network forward+backward+Adam step per loss, in images per second.

    python bench/train_step.py [--model unet] [--out bench/train_step.json] [--repeats 3] [--threads 2]

``--model`` is a registered network (``model.name``: ``unet``, the thesis's, or ``fastmri_unet``,
``fastmri.models.Unet``); repeat it to time several side by side. Two sizes on RGB denoising crops:
the demo's (config.yaml: width 8, depth 3, residual, 64×64, batch 4) and the thesis's
(config/paper.yaml: width 32, depth 4, 256×256; batch 16 on CUDA, 4 on the CPU to keep the run
short; images/s are per image either way), given to each network under its own keys (fastMRI's
``chans`` and ``num_pool_layers``; the demo's residual skip is the thesis U-net's only). On CUDA
the paper size is also timed with bfloat16 autocast and channels_last (``trainer.autocast``,
``trainer.channels_last``). The median over repeats is reported, interleaved across losses so that
machine noise affects all alike. Results of the first ``--model`` are keyed
``<device>/<size>`` (what the budget reads), those of the others ``<device>/<size>/<model>``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from lossbench import losses, models
from lossbench.train import build_loss

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


def _step(model: torch.nn.Module, loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor], autocast: bool) -> float:
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
        loss_fn = build_loss({"loss": name, "loss_params": losses.spec(name).portable_params, "kind": "denoise"}).to(device)
        optimizer = torch.optim.Adam(list(network.parameters()) + list(loss_fn.parameters()), lr=1e-4)
        setups[name] = (network, loss_fn, optimizer, data, fast)
    return setups


def measure(model: str, size: str, device: torch.device, repeats: int, fast: bool = False) -> dict:
    """Median seconds per step and images/s of every loss with network ``model`` at ``size`` on ``device``."""
    setups = _setups(model, size, device, fast)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", choices=models.names(), help="network to time (repeatable; default: unet)")
    parser.add_argument("--out", default="bench/train_step.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
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
            if device.type == "cuda":
                results[f"cuda/paper/bfloat16_channels_last{suffix}"] = measure(model, "paper", device, args.repeats, fast=True)
    report = {
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "results": results,
    }
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    names = list(next(iter(results.values()))["images_per_second"])
    print(f"{'images/s':18s}" + "".join(f"{key:>28s}" for key in results))
    for name in names:
        print(f"{name:18s}" + "".join(f"{results[key]['images_per_second'][name]:28.1f}" for key in results))


if __name__ == "__main__":
    main()
