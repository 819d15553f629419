"""Data-loading speed: samples/s of denoising crops and fastMRI slices, and the share of a training step
spent waiting for data.

    python bench/dataloader.py [--out bench/dataloader.json] [--threads N] [--batches 12]

The data are made in a temporary folder: JPEG photographs of ImageNet's typical size (500×375) for
denoising, and synthetic volumes in the fastMRI layout (single-coil 640×368 k-space; multi-coil with
16 coils of 640×320, as most fastMRI brain scans). Loading goes through the training code path
(:func:`lossbench.data.tasks.train_dataset`, :class:`lossbench.seeding.SeededSampler`, a DataLoader).

* ``samples_per_s``: loading alone, for 0 and 2 worker processes, at the demo's crop and batch size.
* ``waiting``: training steps of the demo model (config.yaml: U-net width 8, depth 3, its ``threads``
  torch threads) with the l2 loss, for the default number of workers (config schema default) and for
  2 workers; the share of wall time spent waiting for the next batch.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torch.utils.data import DataLoader

from lossbench.config import validate
from lossbench.data.fastmri_synthetic import generate_dataset
from lossbench.data.tasks import channels, train_dataset
from lossbench.models import UNet
from lossbench.seeding import SeededSampler

REPO = Path(__file__).resolve().parents[1]
KINDS = {"denoise": "denoise", "knee": "singlecoil", "brain": "multicoil"}


def make_data(root: Path, images: int, volumes: int, slices: int, coils: int) -> dict[str, Path]:
    """Write the benchmark's photographs and fastMRI-format volumes under ``root``."""
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(images):
        # Smooth random images compress like photographs rather than like noise.
        small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC).save(photos / f"img_{index:03d}.JPEG", quality=90)
    generate_dataset(root / "knee", "singlecoil", volumes, slices, seed=0)
    generate_dataset(root / "brain", "multicoil", volumes, slices, seed=0, n_coils=coils)
    return {"denoise": photos, "knee": root / "knee", "brain": root / "brain"}


def samples_per_second(dataset, batch_size: int, workers: int, batches: int) -> float:
    """Samples per second of loading ``batches`` batches (after one warm-up batch)."""
    sampler = SeededSampler(len(dataset), seed=0, epoch=0)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, persistent_workers=False)
    iterator = iter(loader)
    next(iterator)
    started, count = time.perf_counter(), 0
    for _ in range(batches):
        try:
            count += len(next(iterator)[0])
        except StopIteration:
            break
    return count / (time.perf_counter() - started)


def waiting_fraction(dataset, kind: str, model_config: dict, batch_size: int, workers: int, steps: int) -> dict[str, float]:
    """Seconds waiting for data and computing, over ``steps`` training steps of the demo model."""
    torch.manual_seed(0)
    model = UNet(channels(kind), channels(kind), **model_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = SeededSampler(len(dataset), seed=0, epoch=0)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
    waiting = computing = 0.0
    iterator = iter(loader)
    for step in range(steps + 1):
        started = time.perf_counter()
        try:
            inputs, targets = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            inputs, targets = next(iterator)
        loaded = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step:  # the first step pays for worker start-up and lazy initialisation
            waiting += loaded - started
            computing += time.perf_counter() - loaded
    return {"waiting_s": waiting, "computing_s": computing, "waiting_fraction": waiting / (waiting + computing)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/dataloader.json")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: config.yaml's threads, as a demo job)")
    parser.add_argument("--batches", type=int, default=12, help="batches timed per measurement")
    parser.add_argument("--coils", type=int, default=16, help="coils of the multi-coil volumes")
    args = parser.parse_args()
    demo = validate(yaml.safe_load((REPO / "config.yaml").read_text()), source="config.yaml")
    args.threads = args.threads or demo["threads"]
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as root:
        folders = make_data(Path(root), images=24, volumes=2, slices=8, coils=args.coils)
        for task, kind in KINDS.items():
            settings = demo["tasks"][task]
            data = {key: value for key, value in settings.items() if key not in ("training", "data")}
            dataset = train_dataset(kind, data, folders[task])
            batch_size, default_workers = settings["training"]["batch_size"], settings["training"]["workers"]
            results[task] = {
                "crop": data["crop"],
                "batch_size": batch_size,
                "samples_per_s": {str(workers): samples_per_second(dataset, batch_size, workers, args.batches) for workers in (0, 2)},
                "default_workers": default_workers,
                "waiting": {str(workers): waiting_fraction(dataset, kind, demo["model"], batch_size, workers, args.batches) for workers in sorted({default_workers, 2})},
            }
    report = {"threads": args.threads, "coils": args.coils, "torch": torch.__version__, "machine": platform.machine(), "model": demo["model"], "results": results}
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    for task, row in results.items():
        rates = ", ".join(f"{rate:.1f}/s with {workers} workers" for workers, rate in row["samples_per_s"].items())
        waiting = ", ".join(f"{value['waiting_fraction']:.1%} with {workers} workers" for workers, value in row["waiting"].items())
        print(f"{task} (crop {row['crop']}, batch {row['batch_size']}): loading {rates}; waiting {waiting}")


if __name__ == "__main__":
    main()
