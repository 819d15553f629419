"""Data-loading speed: our fastMRI path against fastMRI's own, side by side in one run, and the share of
a training step spent waiting for data.

    nice -n 10 python bench/dataloader.py [--out bench/dataloader.json] [--samples 20] [--slices 6]

The data are made in a temporary folder: ``realistic`` synthetic fastMRI volumes
(:func:`lossbench.data.fastmri_synthetic.realistic_settings`: knee k-space 640×368/372, brain 640×320
with 2–24 coils and narrow scans among them, at real magnitudes; ``--slices`` caps the slices per
volume to keep the run short) and JPEG photographs of ImageNet's typical size (500×375).

Per MRI task, with one DataLoader worker and one torch thread, alternating the two paths three times:

* ``ours_worker_samples_per_s``: :class:`lossbench.data.mri.MRISliceDataset` items, which only draw
  the slice's mask, read its k-space and target crop and hand over the sampled columns (the
  training code path), in batches of one; ``ours_worker_batch{N}_samples_per_s`` in shape-grouped
  batches of ``--batch`` as training hands them over (``ratio``, ``ratio_batch{N}``: against fastMRI's
  batches of one);
* ``fastmri_worker_samples_per_s``: ``fastmri.data.SliceDataset`` with ``UnetDataTransform`` (mask,
  inverse FFT, crop, RSS and normalisation per sample, in the worker);
* ``ours_in_process_samples_per_s``, ``fastmri_in_process_samples_per_s``: the same with 0 workers,
  without the hand-over of each sample through shared memory; ``handover``: for the largest slice,
  the size of its k-space and of the sampled columns handed over, the time to copy those into
  new shared memory and into ordinary memory, and to hand them (alone and ``--batch`` of them) to
  another process through a queue pickled and in shared memory;
* ``device_transform_ms_per_sample``: :meth:`MRISliceDataset.finish_batch` on batches of
  ``--batch`` slices of one shape, on the CPU with one thread (and on CUDA when there is one).

For denoising, one worker and one thread, alternating three times: ``ours_worker_samples_per_s`` crops
from the photographs decoded once into HDF5 (:func:`lossbench.data.denoise.write_decoded`, the
training path), ``decode_each_time_samples_per_s`` the former path (a JPEG decoded for every crop), at
the demo's crop (config.yaml) and at the thesis's (``paper_crop``, config/paper.yaml), in batches of
one and of ``--batch``; ``decode_once_s``: decoding all the photographs into the file.
``waiting``: training steps of the demo model (config.yaml's U-net) with the l2 loss on these data at
each task's crop (320 for MRI; denoising reading the decoded file), for the default number of workers (config schema
default), for 1 and for 2;
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

from lossbench import models
from lossbench.core.seeding import SeededSampler, group_batches
from lossbench.data.denoise import DecodedImages, DenoiseTrainDataset, ImageFiles, training_images, write_decoded
from lossbench.data.fastmri_synthetic import generate_dataset
from lossbench.data.tasks import channels, spec, train_dataset
from lossbench.pipeline.config import validate

REPO = Path(__file__).resolve().parents[1]
#: The MRI tasks → fastMRI challenge of their files.
KINDS = {"knee": "mri_singlecoil", "brain": "mri_multicoil"}
MRI_CROP = 320  # fastMRI's crop, as config/paper.yaml


def make_data(root: Path, images: int, volumes: int, slices: int) -> dict[str, Path]:
    """Write the benchmark's photographs and realistic fastMRI-format volumes under ``root``."""
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(images):
        # Smooth random images compress like photographs rather than like noise.
        small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC).save(
            photos / f"img_{index:03d}.JPEG", quality=90
        )
    for task, kind in KINDS.items():
        generate_dataset(root / task, spec(kind).challenge, volumes, slices, seed=0, preset="realistic")
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
        count += _batch_size(batch)
    return count / (time.perf_counter() - started)


def _keys(length: int, count: int) -> list[tuple[int, int]]:
    """At least ``count`` + 1 training keys ``(index, sample_seed)``: seeded epochs of a dataset of ``length``."""
    return [key for epoch in range(count // length + 2) for key in SeededSampler(length, seed=0, epoch=epoch)]


def _batch_size(batch) -> int:
    """Samples in a batch of ours (an MRI batch, with a mask per sample, or a denoising one, with a
    clean crop per sample) or of fastMRI (a named tuple)."""
    if isinstance(batch, dict):
        return len(batch["mask"] if "mask" in batch else batch["clean"])
    return len(batch[0])


def worker_rates(folder: Path, kind: str, samples: int, batch: int, rounds: int = 3) -> dict[str, float]:
    """Samples/s of our MRI path and of fastMRI's SliceDataset + UnetDataTransform, in one worker
    process and in the main process (0 workers: no inter-process transfer), and of ours in one
    worker handing over shape-grouped batches of ``batch`` (as training does)."""
    from fastmri.data import SliceDataset
    from fastmri.data.subsample import RandomMaskFunc
    from fastmri.data.transforms import UnetDataTransform

    ours = train_dataset(kind, {"mask": {"center_fraction": 0.04, "acceleration": 8}, "crop": MRI_CROP}, folder)
    challenge = spec(kind).challenge
    transform = UnetDataTransform(challenge, mask_func=RandomMaskFunc([0.04], [8]), use_seed=True)
    theirs = SliceDataset(folder, challenge, transform=transform, use_dataset_cache=False)
    order = _keys(len(ours), samples + batch)
    # Batches of one: narrow and wide brain slices cannot share a fastMRI batch.
    loaders = {}
    for workers, where in ((1, "worker"), (0, "in_process")):
        loaders[f"ours_{where}_samples_per_s"] = DataLoader(
            ours, sampler=order, batch_size=1, num_workers=workers, collate_fn=ours.collate
        )
        loaders[f"fastmri_{where}_samples_per_s"] = DataLoader(
            theirs, sampler=[index for index, _ in order], batch_size=1, num_workers=workers
        )
    loaders[f"ours_worker_batch{batch}_samples_per_s"] = DataLoader(
        ours, batch_sampler=group_batches(order, ours.batch_key, batch), num_workers=1, collate_fn=ours.collate
    )
    measured: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(rounds):
        for name, loader in loaders.items():
            measured[name].append(_rate(loader, samples))
    return {name: statistics.median(values) for name, values in measured.items()}


def transform_ms(folder: Path, kind: str, batch: int, device: str, repeats: int = 3) -> float:
    """Milliseconds per sample of the device-side transform on batches of ``batch`` slices of one shape."""
    dataset = train_dataset(kind, {"mask": {"center_fraction": 0.04, "acceleration": 8}, "crop": MRI_CROP}, folder)
    groups = group_batches(list(SeededSampler(len(dataset), seed=0, epoch=0)), dataset.batch_key, batch)
    raws = [dataset.collate([dataset[key] for key in keys]) for keys in groups[:repeats]]
    if device == "cuda":
        raws = [raw.pin_memory() for raw in raws]
    dataset.finish_batch(raws[0], device)  # warm-up (FFT plans, CUDA context)
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for raw in raws:
        dataset.finish_batch(raw, device)
    if device == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - started) / sum(len(raw["mask"]) for raw in raws)


def _send(queue, done, array: np.ndarray, shared: bool, count: int) -> None:
    """Producer of :func:`transfer_ms`: ``count`` copies of ``array``, pickled or as shared-memory tensors."""
    for _ in range(count + 1):
        if shared:
            tensor = torch.empty(array.shape, dtype=torch.from_numpy(array[:0]).dtype).share_memory_()
            tensor.numpy()[...] = array
            queue.put(tensor)
        else:
            queue.put(array.copy())
    done.wait()  # shared tensors' file descriptors are fetched from this process


def transfer_ms(array: np.ndarray, shared: bool, count: int = 8) -> float:
    """Milliseconds per hand-over of ``array`` from another process through a multiprocessing queue
    (as a DataLoader worker's): pickled, or written into a new shared-memory tensor (its file
    descriptor fetched from the sender, as torch's default sharing strategy does)."""
    context = torch.multiprocessing.get_context("fork")
    queue, done = context.Queue(maxsize=2), context.Event()
    sender = context.Process(target=_send, args=(queue, done, array, shared, count))
    sender.start()
    queue.get()  # the sender's start-up
    started = time.perf_counter()
    for _ in range(count):
        queue.get()
    elapsed = time.perf_counter() - started
    done.set()
    sender.join()
    return 1000 * elapsed / count


def handover_ms(folder: Path, kind: str, batch: int, repeats: int = 4) -> dict[str, float]:
    """The hand-over of the largest slice of ``folder``: its k-space's size, the size of the sampled
    columns a worker hands over, milliseconds to copy those into new shared memory and into new
    ordinary memory, and to hand them (and a batch of ``batch`` of them) to another process pickled
    and through shared memory (the rule of :func:`lossbench.data.h5files.handed_over`)."""
    dataset = train_dataset(kind, {"mask": {"center_fraction": 0.04, "acceleration": 8}, "crop": MRI_CROP}, folder)
    largest = max(range(len(dataset)), key=lambda index: int(np.prod(dataset.batch_key(index))))
    columns = torch.from_numpy(dataset[(largest, 0)]["columns"])
    timings = {}
    for name, allocate in (
        ("shared", lambda: torch.empty_like(columns).share_memory_()),
        ("ordinary", lambda: torch.empty_like(columns)),
    ):
        started = time.perf_counter()
        for _ in range(repeats):
            allocate().copy_(columns)
        timings[f"{name}_memory_copy_ms"] = 1000 * (time.perf_counter() - started) / repeats
    for size, suffix in ((1, ""), (batch, f"_batch{batch}")):
        array = np.concatenate([columns.numpy()] * size)
        timings[f"pickled{suffix}_ms"], timings[f"shared{suffix}_ms"] = (
            transfer_ms(array, shared) for shared in (False, True)
        )
    slice_mb = int(np.prod(dataset.batch_key(largest)[1:])) * columns.element_size() / 2**20  # (slices, [coils,] H, W)
    return {"slice_mb": slice_mb, "handed_over_mb": columns.numel() * columns.element_size() / 2**20, **timings}


def denoise_rates(
    folder: Path, decoded: Path, data: dict, samples: int, batch: int, rounds: int = 3
) -> dict[str, float]:
    """Per-worker samples/s of denoising crops read from the decoded file (the training path) and
    decoded from the JPEG for every crop, in batches of one and of ``batch``, alternating ``rounds`` times."""
    settings = {
        "crop": data["crop"],
        "sigma_range": tuple(data["sigma_train"]),
        "crops_per_image": data["crops_per_image"],
        "augment": data["augment"],
    }
    datasets = {
        "ours_worker_samples_per_s": DenoiseTrainDataset(DecodedImages(decoded), **settings),
        "decode_each_time_samples_per_s": DenoiseTrainDataset(ImageFiles(training_images(folder)), **settings),
    }
    loaders = {}
    for size, suffix in ((1, ""), (batch, f"_batch{batch}")):
        for name, dataset in datasets.items():
            loaders[name.replace("_samples", f"{suffix}_samples")] = DataLoader(
                dataset,
                sampler=_keys(len(dataset), samples + batch),
                batch_size=size,
                num_workers=1,
                collate_fn=dataset.collate,
            )
    measured: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(rounds):
        for name, loader in loaders.items():
            measured[name].append(_rate(loader, samples))
    rates = {name: statistics.median(values) for name, values in measured.items()}
    return {
        "crop": data["crop"],
        **rates,
        "ratio": rates["ours_worker_samples_per_s"] / rates["decode_each_time_samples_per_s"],
        f"ratio_batch{batch}": (
            rates[f"ours_worker_batch{batch}_samples_per_s"] / rates[f"decode_each_time_batch{batch}_samples_per_s"]
        ),
    }


def waiting_fraction(
    dataset, kind: str, model_config: dict, batch_size: int, workers: int, steps: int
) -> dict[str, float]:
    """Seconds waiting for data and computing (device transform included), over ``steps`` training steps."""
    torch.manual_seed(0)
    model = models.build(model_config, channels(kind))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # Enough epochs' keys for every step: a new pass would restart the workers, a wait of its own.
    batches = group_batches(_keys(len(dataset), (steps + 1) * batch_size), dataset.batch_key, batch_size)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=dataset.collate)
    waiting = computing = 0.0
    iterator = iter(loader)
    for step in range(steps + 1):
        started = time.perf_counter()
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
    parser.add_argument("--samples", type=int, default=60, help="samples timed per loader and round")
    parser.add_argument("--volumes", type=int, default=4, help="realistic volumes per MRI task")
    parser.add_argument("--slices", type=int, default=6, help="cap on the slices per realistic volume")
    parser.add_argument(
        "--batch", type=int, default=4, help="samples per batch of the batched rates and of the device transform"
    )
    parser.add_argument("--steps", type=int, default=20, help="training steps timed for the waiting share")
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
            row = worker_rates(folders[task], kind, args.samples, args.batch)
            row["ratio"] = row["ours_worker_samples_per_s"] / row["fastmri_worker_samples_per_s"]
            row[f"ratio_batch{args.batch}"] = (
                row[f"ours_worker_batch{args.batch}_samples_per_s"] / row["fastmri_worker_samples_per_s"]
            )
            row["in_process_ratio"] = row["ours_in_process_samples_per_s"] / row["fastmri_in_process_samples_per_s"]
            row["handover"] = handover_ms(folders[task], kind, args.batch)
            row["device_transform_ms_per_sample"] = transform_ms(folders[task], kind, args.batch, "cpu")
            if "cuda" in devices:
                row["device_transform_ms_per_sample_cuda"] = transform_ms(folders[task], kind, args.batch, "cuda")
            results[task] = row
        decoded = Path(root) / "train_decoded.h5"
        started = time.perf_counter()
        write_decoded(training_images(folders["denoise"]), decoded)
        decode_s = time.perf_counter() - started
        paper = validate(
            yaml.safe_load((REPO / "config" / "paper.yaml").read_text()), source="config/paper.yaml", require_data=False
        )
        # The demo's crop (the keys the targets name) and the thesis's (config/paper.yaml).
        demo_data, paper_data = (
            {key: value for key, value in config["tasks"]["denoise"].items() if key not in ("training", "data")}
            for config in (demo, paper)
        )
        results["denoise"] = {
            **denoise_rates(folders["denoise"], decoded, demo_data, args.samples, args.batch),
            "paper_crop": denoise_rates(folders["denoise"], decoded, paper_data, args.samples, args.batch),
            "decode_once_s": decode_s,
        }
        folders["denoise"] = decoded
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
                **{
                    f"{workers}_workers": waiting_fraction(
                        dataset, kind, demo["model"], batch_size, workers, args.steps
                    )
                    for workers in sorted({default_workers, 1, 2})
                },
            }
    report = {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": 1,
        "workers": 1,
        "devices": devices,
        "data": (
            f"realistic synthetic fastMRI volumes ({args.volumes} per task, at most {args.slices} slices each), 24"
            f" JPEGs of 500×375; made in {made:.0f} s"
        ),
        "model": demo["model"],
        "results": results,
    }
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    for task in KINDS:
        row = results[task]
        print(
            f"{task}: ours {row['ours_worker_samples_per_s']:.1f}/s, fastMRI"
            f" {row['fastmri_worker_samples_per_s']:.1f}/s per worker ({row['ratio']:.1f}×); in batches of {args.batch}"
            f" {row[f'ours_worker_batch{args.batch}_samples_per_s']:.1f}/s ({row[f'ratio_batch{args.batch}']:.1f}×); in"
            f" the main process {row['ours_in_process_samples_per_s']:.1f}/s vs"
            f" {row['fastmri_in_process_samples_per_s']:.1f}/s ({row['in_process_ratio']:.1f}×); device transform"
            f" {row['device_transform_ms_per_sample']:.1f} ms/sample on the CPU; a {row['handover']['slice_mb']:.0f} MB"
            f" slice hands over {row['handover']['handed_over_mb']:.1f} MB, into shared memory"
            f" {row['handover']['shared_memory_copy_ms']:.1f} ms, into ordinary memory"
            f" {row['handover']['ordinary_memory_copy_ms']:.1f} ms; to another process pickled"
            f" {row['handover']['pickled_ms']:.1f} ms, in shared memory {row['handover']['shared_ms']:.1f} ms (a batch"
            f" of {args.batch}: {row['handover'][f'pickled_batch{args.batch}_ms']:.1f} ms,"
            f" {row['handover'][f'shared_batch{args.batch}_ms']:.1f} ms)"
        )
    for row in (results["denoise"], results["denoise"]["paper_crop"]):
        print(
            f"denoise crop {row['crop']}: ours {row['ours_worker_samples_per_s']:.1f}/s from the decoded file,"
            f" {row['decode_each_time_samples_per_s']:.1f}/s decoding each time ({row['ratio']:.1f}×); in batches of"
            f" {args.batch} {row[f'ratio_batch{args.batch}']:.1f}×"
        )
    for task, row in results.items():
        shares = ", ".join(
            f"{value['waiting_fraction']:.1%} with {key.replace('_', ' ')}"
            for key, value in row["waiting"].items()
            if isinstance(value, dict)
        )
        print(f"{task} waiting: {shares}")


if __name__ == "__main__":
    main()
