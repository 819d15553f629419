"""Forward+backward time of every loss, as a ratio to l2, on an RGB and a grayscale batch.

    python bench/losses.py [--out bench/losses.json] [--repeats 7] [--threads 2]

Each loss is timed on (4, 3, 256, 256) (denoising) and (4, 1, 320, 320) (MRI, FLIP in its thesis
grayscale mode) with the same inputs; the median over repeats is reported, interleaved across
losses so that machine noise affects all of them alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from lossbench import losses
from lossbench.core.specs import Setting

SHAPES = {"rgb": (4, 3, 256, 256), "gray": (4, 1, 320, 320)}


def _build(name: str, channels: int) -> torch.nn.Module:
    # The task defaults for this channel count (FLIP's grayscale mode), portable: an untrained LPIPS
    # trunk costs the same as the pretrained one and needs no weights.
    spec = losses.spec(name)
    return spec.build(spec.params(Setting(channels), spec.portable_params), channels)


def _step(loss_fn: torch.nn.Module, output: torch.Tensor, target: torch.Tensor) -> float:
    output = output.detach().requires_grad_()
    started = time.perf_counter()
    loss_fn(output, target).backward()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/losses.json")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    results = {}
    for shape_name, shape in SHAPES.items():
        target = torch.rand(shape, generator=generator)
        output = (target + 0.1 * torch.randn(shape, generator=generator)).clamp(0, 1)
        fns = {name: _build(name, shape[1]) for name in losses.names()}
        for name, fn in fns.items():  # warm-up: caches, lazy initialisation
            _step(fn, output, target)
        times = {name: [] for name in fns}
        for _ in range(args.repeats):
            for name, fn in fns.items():
                times[name].append(_step(fn, output, target))
        medians = {name: statistics.median(values) for name, values in times.items()}
        results[shape_name] = {
            "shape": list(shape),
            "seconds": medians,
            "ratio_to_l2": {name: medians[name] / medians["l2"] for name in medians},
        }
    report = {
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "results": results,
    }
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    print(f"{'loss':10s}" + "".join(f"{n:>22s}" for n in SHAPES))
    for name in losses.names():
        cells = [f"{results[s]['seconds'][name] * 1e3:9.1f} ms {results[s]['ratio_to_l2'][name]:7.1f}×" for s in SHAPES]
        print(f"{name:10s}" + "".join(f"{c:>22s}" for c in cells))


if __name__ == "__main__":
    main()
