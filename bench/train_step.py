"""Training-step throughput: U-net forward+backward+Adam step per loss, in images per second.

    python bench/train_step.py [--out bench/train_step.json] [--repeats 3] [--threads 2]

Two model sizes on RGB denoising crops: the demo's (config.yaml: width 8, depth 3, 64×64, batch 4)
and the thesis's (config/paper.yaml: width 32, depth 4, 256×256; batch 16 on CUDA, 4 on the CPU to
keep the run short; images/s are per image either way). As a sanity anchor, ``fastmri.models.Unet``
of the same width and depth is timed with the l2 loss. On CUDA the paper size is also timed with
bfloat16 autocast and channels_last (``trainer.autocast``, ``trainer.channels_last``). The median
over repeats is reported, interleaved across losses so that machine noise affects all alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from fastmri.models import Unet as FastMRIUnet

from lossbench import losses
from lossbench.models import UNet
from lossbench.train import build_loss

#: name → (U-net width, depth, residual, crop, batch on CPU, batch on CUDA).
SIZES = {"demo": (8, 3, True, 64, 4, 4), "paper": (32, 4, False, 256, 4, 16)}


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


def _setups(size: str, device: torch.device, fast: bool) -> dict[str, tuple]:
    """Name → (model, loss, optimiser, batch, autocast) for every loss and the fastMRI anchor."""
    width, depth, residual, crop, cpu_batch, cuda_batch = SIZES[size]
    batch = cuda_batch if device.type == "cuda" else cpu_batch
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(batch, 3, crop, crop, generator=generator)
    degraded = clean + 25 / 255 * torch.randn(clean.shape, generator=generator)
    layout = torch.channels_last if fast else torch.contiguous_format
    data = (degraded.to(device).contiguous(memory_format=layout), clean.to(device))
    setups = {}
    for name in losses.names():
        torch.manual_seed(0)
        model = UNet(3, 3, width=width, depth=depth, residual=residual).to(device, memory_format=layout)
        loss_fn = build_loss({"loss": name, "loss_params": losses.spec(name).portable_params, "kind": "rgb_denoise"}).to(device)
        optimizer = torch.optim.Adam(list(model.parameters()) + list(loss_fn.parameters()), lr=1e-4)
        setups[name] = (model, loss_fn, optimizer, data, fast)
    anchor = FastMRIUnet(3, 3, chans=width, num_pool_layers=depth).to(device, memory_format=layout)
    setups["fastmri_unet_l2"] = (anchor, losses.build("l2").to(device), torch.optim.Adam(anchor.parameters(), lr=1e-4), data, fast)
    return setups


def measure(size: str, device: torch.device, repeats: int, fast: bool = False) -> dict:
    """Median seconds per step and images/s of every setup of ``size`` on ``device``."""
    setups = _setups(size, device, fast)
    for setup in setups.values():  # warm-up: allocator, kernels, lazy initialisation
        _step(*setup)
    times = {name: [] for name in setups}
    for _ in range(repeats):
        for name, setup in setups.items():
            times[name].append(_step(*setup))
    batch = next(iter(setups.values()))[3][0].shape[0]
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "batch": batch,
        "crop": SIZES[size][3],
        "width": SIZES[size][0],
        "depth": SIZES[size][1],
        "seconds_per_step": medians,
        "images_per_second": {name: batch / seconds for name, seconds in medians.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/train_step.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = {}
    for device in devices:
        for size in SIZES:
            results[f"{device.type}/{size}"] = measure(size, device, args.repeats)
        if device.type == "cuda":
            results["cuda/paper/bfloat16_channels_last"] = measure("paper", device, args.repeats, fast=True)
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
