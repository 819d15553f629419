"""Speed of the PyTorch LDR-FLIP against NVIDIA's C++ flip-evaluator on a (4, 3, 256, 256) batch.

Run from the repository root:

    PYTHONPATH=src .venv/bin/python bench/flip_speed.py [--out bench/flip_speed.json]

Everything runs in one process with 2 intra-op threads (torch.set_num_threads(2); the
evaluator's OpenMP pool is capped to 2 threads through OMP_NUM_THREADS before it is loaded);
``OMP_NUM_THREADS=1`` runs both on one. The three measurements are interleaved within each repeat
so that load on a shared machine hits them alike; the median over repeats is reported, with the
minimum and the load averages before and after (os.getloadavg), which say whether the machine
was idle.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib.cbook
import numpy as np
import torch
from PIL import Image
from skimage import data

from lossbench.flip import DEFAULT_PPD, flip

SIZE = 256
THREADS = int(os.environ["OMP_NUM_THREADS"])


def _crop(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    top, left = (h - SIZE) // 2, (w - SIZE) // 2
    return image[top : top + SIZE, left : left + SIZE, :3].astype(np.float32) / 255.0


def load_batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four 256x256 photo crops and noisy versions, (4, 256, 256, 3) float32 in [0, 1]."""
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        grace = np.asarray(Image.open(f).convert("RGB"))
    reference = np.stack([_crop(im) for im in (data.astronaut(), data.chelsea(), data.coffee(), grace)])
    noise = np.random.default_rng(seed).normal(0.0, 0.05, reference.shape)
    return reference, np.clip(reference + noise, 0.0, 1.0).astype(np.float32)


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _loads(loads: tuple[float, float, float]) -> str:
    return ", ".join(f"{load:.2f}" for load in loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/flip_speed.json"), help="JSON result file")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per measurement")
    args = parser.parse_args()

    import flip_evaluator

    torch.set_num_threads(THREADS)
    reference_np, test_np = load_batch()
    reference = torch.from_numpy(reference_np).permute(0, 3, 1, 2).contiguous()
    test = torch.from_numpy(test_np).permute(0, 3, 1, 2).contiguous()

    def official() -> None:
        for r, t in zip(reference_np, test_np):
            flip_evaluator.evaluate(r, t, "LDR", applyMagma=False, parameters={"ppd": DEFAULT_PPD})

    def forward() -> None:
        with torch.no_grad():
            flip(test, reference)

    def forward_backward() -> None:
        output = test.clone().requires_grad_(True)
        flip(output, reference).mean().backward()

    runs = {"official_forward": official, "ours_forward": forward, "ours_forward_backward": forward_backward}
    load_before = os.getloadavg()
    for fn in runs.values():  # warm-up: filter caches, allocator, OpenMP pool
        fn()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            samples[name].append(_time(fn))
    medians = {name: statistics.median(times) for name, times in samples.items()}
    minima = {name: min(times) for name, times in samples.items()}
    load_after = os.getloadavg()

    result = {
        "batch": [len(reference_np), 3, SIZE, SIZE],
        "threads": THREADS,
        "repeats": args.repeats,
        "median_s": medians,
        "min_s": minima,
        "load_average_1_5_15_min": {"before": load_before, "after": load_after},
        "ratio_forward_vs_official": medians["ours_forward"] / medians["official_forward"],
        "ratio_forward_backward_vs_official": medians["ours_forward_backward"] / medians["official_forward"],
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"FLIP speed, batch {tuple(result['batch'])}, {THREADS} threads, median (and minimum) of {args.repeats}")
    print(f"{'measurement':<24}{'time (ms)':>10}{'x official':>12}{'min (ms)':>10}{'x official':>12}")
    for name, seconds in medians.items():
        fastest = minima[name]
        print(
            f"{name:<24}{seconds * 1e3:>10.1f}{seconds / medians['official_forward']:>12.2f}"
            f"{fastest * 1e3:>10.1f}{fastest / minima['official_forward']:>12.2f}"
        )
    print(f"load average (1, 5, 15 min): {_loads(load_before)} before, {_loads(load_after)} after")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
