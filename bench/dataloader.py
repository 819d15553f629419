"""Data-loading speed: our fastMRI path against fastMRI's own, side by side in one run, and the share of
a training step spent waiting for data.

    nice -n 10 python bench/dataloader.py [--out bench/dataloader.json] [--samples 20] [--slices 6]

The data are made in a temporary folder: ``realistic`` synthetic fastMRI volumes
(:func:`lossbench.data.fastmri_synthetic.realistic_settings`: knee k-space 640×368/372, brain 640×320
with 2–24 coils and narrow scans among them, at real magnitudes; ``--slices`` caps the slices per
volume to keep the run short) and JPEG photographs of ImageNet's typical size (500×375).

Per MRI task, with one DataLoader worker and one torch thread, alternating the two paths three times:

* ``ours_worker_samples_per_s``: :class:`lossbench.data.mri.MRISliceDataset` items, which only read
  the slice's k-space and target crop and draw its mask (the training code path);
* ``fastmri_worker_samples_per_s``: ``fastmri.data.SliceDataset`` with ``UnetDataTransform`` (mask,
  inverse FFT, crop, RSS and normalisation per sample, in the worker);
* ``ours_in_process_samples_per_s``, ``fastmri_in_process_samples_per_s``: the same with 0 workers,
  without the hand-over of each sample through shared memory; ``handover`` times that copy for the
  largest slice against an ordinary one (multi-coil k-space is tens of MB per slice);
* ``device_transform_ms_per_sample``: :meth:`MRISliceDataset.finish_batch` on batches of
  ``--batch`` slices of one shape, on the CPU with one thread (and on CUDA when there is one).

For denoising, ``decode_each_time_samples_per_s`` is today's training path (a JPEG decoded per crop).
``waiting``: training steps of the demo model (config.yaml's U-net) with the l2 loss on these data at
each task's crop (320 for MRI), for the default number of workers (config schema default) and for 2;
the share of wall time spent waiting for the next batch (the device transform counts as compute).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
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
from lossbench.seeding import SeededSampler, group_batches

REPO = Path(__file__).resolve().parents[1]
#: The MRI tasks → fastMRI challenge of their files.
KINDS = {"knee": "singlecoil", "brain": "multicoil"}
MRI_CROP = 320  # fastMRI's crop, as config/paper.yaml


def make_data(root: Path, images: int, volumes: int, slices: int) -> dict[str, Path]:
    """Write the benchmark's photographs and realistic fastMRI-format volumes under ``root``."""
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(images):
        # Smooth random images compress like photographs rather than like noise.
        small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC).save(photos / f"img_{index:03d}.JPEG", quality=90)
    for task, kind in KINDS.items():
        generate_dataset(root / task, kind, volumes, slices, seed=0, preset="realistic")
    return {"denoise": photos, "knee": root / "knee", "brain": root / "brain"}


def _rate(loader: DataLoader, samples: int) -> float:
    """Samples per second over ``samples`` samples of ``loader`` (after one warm-up batch)."""
    iterator = iter(loader)
    next(iterator)
    started, count = time.perf_counter(), 0
    while count < samples:
        try:
            batch = next(iterator)
        except StopIteration:
            break
        count += len(batch["kspace"] if isinstance(batch, dict) else batch[0])
    return count / (time.perf_counter() - started)


def worker_rates(folder: Path, kind: str, samples: int, rounds: int = 3) -> dict[str, float]:
    """Samples/s of our MRI path and of fastMRI's SliceDataset + UnetDataTransform, in one worker
    process and in the main process (0 workers: no inter-process transfer)."""
    from fastmri.data import SliceDataset
    from fastmri.data.subsample import RandomMaskFunc
    from fastmri.data.transforms import UnetDataTransform

    ours = train_dataset(kind, {"mask": {"center_fraction": 0.04, "acceleration": 8}, "crop": MRI_CROP}, folder)
    transform = UnetDataTransform(kind, mask_func=RandomMaskFunc([0.04], [8]), use_seed=True)
    theirs = SliceDataset(folder, kind, transform=transform, use_dataset_cache=False)
    order = list(SeededSampler(len(ours), seed=0, epoch=0))
    # Batches of one: narrow and wide brain slices cannot share a fastMRI batch.
    loaders = {}
    for workers, where in ((1, "worker"), (0, "in_process")):
        loaders[f"ours_{where}_samples_per_s"] = DataLoader(ours, sampler=order, batch_size=1, num_workers=workers)
        loaders[f"fastmri_{where}_samples_per_s"] = DataLoader(theirs, sampler=[index for index, _ in order], batch_size=1, num_workers=workers)
    measured: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(rounds):
        for name, loader in loaders.items():
            measured[name].append(_rate(loader, samples))
    return {name: statistics.mean(values) for name, values in measured.items()}


def transform_ms(folder: Path, kind: str, batch: int, device: str, repeats: int = 3) -> float:
    """Milliseconds per sample of the device-side transform on batches of ``batch`` slices of one shape."""
    dataset = train_dataset(kind, {"mask": {"center_fraction": 0.04, "acceleration": 8}, "crop": MRI_CROP}, folder)
    groups = group_batches(list(SeededSampler(len(dataset), seed=0, epoch=0)), dataset.batch_key, batch)
    raws = [torch.utils.data.default_collate([dataset[key] for key in keys]) for keys in groups[:repeats]]
    if device == "cuda":
        raws = [{key: value.pin_memory() for key, value in raw.items()} for raw in raws]
    dataset.finish_batch(raws[0], device)  # warm-up (FFT plans, CUDA context)
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for raw in raws:
        dataset.finish_batch(raw, device)
    if device == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - started) / sum(len(raw["kspace"]) for raw in raws)


def shared_memory_ms(folder: Path, kind: str, repeats: int = 4) -> dict[str, float]:
    """Milliseconds to copy one slice's k-space into new shared memory (how a worker hands a sample to
    the training process) and into new ordinary memory, for the largest slice of ``folder``."""
    dataset = train_dataset(kind, {"mask": {"center_fraction": 0.04, "acceleration": 8}, "crop": MRI_CROP}, folder)
    largest = max(range(len(dataset)), key=lambda index: int(np.prod(dataset.batch_key(index))))
    kspace = dataset[(largest, 0)]["kspace"]
    timings = {}
    for name, allocate in (("shared", lambda: torch.empty_like(kspace).share_memory_()), ("ordinary", lambda: torch.empty_like(kspace))):
        started = time.perf_counter()
        for _ in range(repeats):
            allocate().copy_(kspace)
        timings[f"{name}_memory_copy_ms"] = 1000 * (time.perf_counter() - started) / repeats
    return {"slice_mb": kspace.numel() * kspace.element_size() / 2**20, **timings}


def decode_rate(folder: Path, data: dict, samples: int) -> float:
    """Per-worker samples/s of today's denoising path: a JPEG decoded for every crop."""
    dataset = train_dataset("rgb_denoise", data, folder)
    loader = DataLoader(dataset, sampler=list(SeededSampler(len(dataset), seed=0, epoch=0)), batch_size=1, num_workers=1)
    return _rate(loader, samples)


def waiting_fraction(dataset, kind: str, model_config: dict, batch_size: int, workers: int, steps: int) -> dict[str, float]:
    """Seconds waiting for data and computing (device transform included), over ``steps`` training steps."""
    torch.manual_seed(0)
    model = UNet(channels(kind), channels(kind), **model_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = group_batches(list(SeededSampler(len(dataset), seed=0, epoch=0)), dataset.batch_key, batch_size)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers)
    waiting = computing = 0.0
    iterator = iter(loader)
    for step in range(steps + 1):
        started = time.perf_counter()
        try:
            raw = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            raw = next(iterator)
        loaded = time.perf_counter()
        inputs, targets = dataset.finish_batch(raw, "cpu")
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
    parser.add_argument("--samples", type=int, default=20, help="samples timed per loader and round")
    parser.add_argument("--volumes", type=int, default=4, help="realistic volumes per MRI task")
    parser.add_argument("--slices", type=int, default=6, help="cap on the slices per realistic volume")
    parser.add_argument("--batch", type=int, default=4, help="slices per device-transform batch")
    parser.add_argument("--steps", type=int, default=6, help="training steps timed for the waiting share")
    args = parser.parse_args()
    demo = validate(yaml.safe_load((REPO / "config.yaml").read_text()), source="config.yaml")
    torch.set_num_threads(1)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        folders = make_data(Path(root), images=24, volumes=args.volumes, slices=args.slices)
        made = time.perf_counter() - started
        for task, kind in KINDS.items():
            row = worker_rates(folders[task], kind, args.samples)
            row["ratio"] = row["ours_worker_samples_per_s"] / row["fastmri_worker_samples_per_s"]
            row["in_process_ratio"] = row["ours_in_process_samples_per_s"] / row["fastmri_in_process_samples_per_s"]
            row["handover"] = shared_memory_ms(folders[task], kind)
            row["device_transform_ms_per_sample"] = transform_ms(folders[task], kind, args.batch, "cpu")
            if "cuda" in devices:
                row["device_transform_ms_per_sample_cuda"] = transform_ms(folders[task], kind, args.batch, "cuda")
            results[task] = row
        settings = demo["tasks"]["denoise"]
        data = {key: value for key, value in settings.items() if key not in ("training", "data")}
        results["denoise"] = {"decode_each_time_samples_per_s": decode_rate(folders["denoise"], data, args.samples)}
        default_workers = demo["tasks"]["denoise"]["training"]["workers"]
        for task in ("denoise", *KINDS):
            settings = demo["tasks"][task]
            kind = settings["kind"]
            data = {key: value for key, value in settings.items() if key not in ("kind", "training", "data")}
            if task != "denoise":
                data["crop"] = MRI_CROP
            dataset = train_dataset(kind, data, folders[task])
            batch_size = settings["training"]["batch_size"]
            results[task]["waiting"] = {
                "crop": data["crop"],
                "batch_size": batch_size,
                **{f"{workers}_workers": waiting_fraction(dataset, kind, demo["model"], batch_size, workers, args.steps) for workers in sorted({default_workers, 2})},
            }
    report = {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": 1,
        "workers": 1,
        "devices": devices,
        "data": f"realistic synthetic fastMRI volumes ({args.volumes} per task, at most {args.slices} slices each), 24 JPEGs of 500×375; made in {made:.0f} s",
        "model": demo["model"],
        "results": results,
    }
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    for task in KINDS:
        row = results[task]
        print(f"{task}: ours {row['ours_worker_samples_per_s']:.1f}/s, fastMRI {row['fastmri_worker_samples_per_s']:.1f}/s per worker ({row['ratio']:.1f}×); "
              f"in the main process {row['ours_in_process_samples_per_s']:.1f}/s vs {row['fastmri_in_process_samples_per_s']:.1f}/s ({row['in_process_ratio']:.1f}×); "
              f"device transform {row['device_transform_ms_per_sample']:.1f} ms/sample on the CPU; a {row['handover']['slice_mb']:.0f} MB slice into shared memory "
              f"{row['handover']['shared_memory_copy_ms']:.1f} ms, into ordinary memory {row['handover']['ordinary_memory_copy_ms']:.1f} ms")
    print(f"denoise: {results['denoise']['decode_each_time_samples_per_s']:.1f}/s decoding each time")
    for task, row in results.items():
        shares = ", ".join(f"{value['waiting_fraction']:.1%} with {key.replace('_', ' ')}" for key, value in row["waiting"].items() if isinstance(value, dict))
        print(f"{task} waiting: {shares}")


if __name__ == "__main__":
    main()
