"""Training of one U-net with one loss on one task and seed (thesis §5.1), built to survive.

Adam with the loss's learning rate; seeded, reproducible sampling; checkpoints every N steps, at
each epoch's end and on SIGTERM/SIGINT, written atomically, the last two kept; a re-run resumes
from the newest readable one, mid-epoch included, and on the CPU ends with the same weights, bit
for bit, as an uninterrupted run. Checkpoints live in a folder named by the hash of the spec and of
the training files' identity, so changed data (or another training folder) starts a new run;
unreadable checkpoints are moved aside as ``*.corrupt``. A non-finite loss or gradient stops the
job (or skips the batch); optional bfloat16 autocast, channels_last and torch.compile; the curve
(train and validation loss, validation PSNR) as CSV.

CLI:
    python -m lossbench.train --config config.yaml --task denoise --loss l1 --seed 0 \\
        --train-dir results/data/denoise/train --valset results/data/denoise/val.h5 \\
        --out results/models/denoise/l1/seed0
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lossbench import losses
from lossbench.data.denoise import DenoiseTrainDataset
from lossbench.data.tasks import channels, train_dataset
from lossbench.data.valset import ImageFile
from lossbench.device import DeviceError, check_gpu_features, configure_cuda_kernels, make_deterministic, select_device
from lossbench.logs import LiveView, LiveViewError
from lossbench.metrics.pixel import psnr
from lossbench import models
from lossbench.seeding import SeededSampler, derive_seed, group_batches

log = logging.getLogger(__name__)

CURVE_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_psnr", "skipped", "seconds"]
#: Checkpoints kept: the newest, and the one before it in case the newest turns out unreadable.
KEEP_CHECKPOINTS = 2
_CHECKPOINT_GLOB = "step_*.pt"
#: Training sets up to this size are identified by their content, larger ones by file sizes and mtimes.
CONTENT_DIGEST_BYTES = 256 * 2**20


class NonFiniteError(RuntimeError):
    """The loss or a gradient became NaN or infinite (with ``trainer.nonfinite: stop``)."""


class Interrupted(SystemExit):
    """SIGTERM or SIGINT arrived: a checkpoint was written and the job exits with 128 + the signal."""


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so a resume continues exactly here."""

    epoch: int = 0  # completed epochs
    position: int = 0  # batches done in the current epoch
    step: int = 0  # batches done in all, skipped ones included
    loss_sum: float = 0.0  # Σ loss·batch size over the current epoch's trained batches
    samples: int = 0
    skipped: int = 0  # non-finite batches skipped in the current epoch
    seconds: float = 0.0  # training time of the current epoch so far
    last_finite: float | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)


class _EpochOrder:
    """Batch sampler of the run's one DataLoader: the batches of ``(index, sample_seed)`` items of the
    current epoch still to train, set before each epoch and read when the loader's iteration starts."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


@dataclass
class _Signals:
    """The first SIGTERM/SIGINT received while training, acted on after the current step."""

    received: int | None = None


def spec_hash(spec: dict[str, Any], data: dict[str, Any] | None = None) -> str:
    """Short stable hash of a training spec and the identity of its training files (:func:`data_identity`).

    It names the checkpoint folder of that exact run, so a changed spec or changed data is a new run.
    """
    content = spec if data is None else {"spec": spec, "data_identity": data}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def data_identity(files: list[Path], root: str | Path) -> dict[str, Any]:
    """What identifies a training set: every file's name (relative to ``root`` where below it) and size,
    and a digest of their contents, or, above :data:`CONTENT_DIGEST_BYTES` in all, of their mtimes.

    Computed by the training job itself rather than by Snakemake's parameters, so that planning a
    workflow never reads the data. The mtimes of a large set make a copy with new times a new run:
    never a stale resume, at worst a repeated one.
    """
    root = Path(root)
    sizes = [path.stat().st_size for path in files]
    by_content = sum(sizes) <= CONTENT_DIGEST_BYTES
    digest = hashlib.sha256()
    for path, size in zip(files, sizes):
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        digest.update(json.dumps([name, size]).encode())
        if by_content:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(2**20), b""):
                    digest.update(block)
        else:
            digest.update(str(path.stat().st_mtime_ns).encode())
    return {"files": len(files), "bytes": sum(sizes), "by": "content" if by_content else "size and mtime", "digest": digest.hexdigest()[:16]}


def _training_files(dataset: Any, train_dir: Path) -> list[Path]:
    # The files a training dataset reads: the decoded denoising images (or their files), or the .h5 volumes of an MRI folder.
    if isinstance(dataset, DenoiseTrainDataset):
        return dataset.images.files
    return sorted(path for path in train_dir.iterdir() if path.suffix == ".h5" and path.is_file())


def build_model(spec: dict[str, Any]) -> nn.Module:
    """The network of a training spec (``model.name``; a spec without one, from before it, is the thesis's U-net)."""
    return models.build(spec["model"], channels(spec["kind"]))


def build_loss(spec: dict[str, Any]) -> nn.Module:
    """The loss of a training spec, for the channel count of its task (see :meth:`LossSpec.build`)."""
    return losses.spec(spec["loss"]).build(spec["loss_params"], channels(spec["kind"]))


def _save_atomic(obj: Any, path: Path) -> None:
    # A kill during the write leaves only the temporary file: ``path`` is either old or complete.
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def save_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` as ``step_<step>.pt`` atomically and delete older ones, keeping the newest two.

    The checkpoint just written is always kept, whatever the names of the others.
    """
    path = directory / f"step_{state['progress']['step']:09d}.pt"
    _save_atomic(state, path)
    older = sorted(old for old in directory.glob(_CHECKPOINT_GLOB) if old.name < path.name)
    for old in older[: max(0, len(older) - (KEEP_CHECKPOINTS - 1))]:
        old.unlink()
    return path


def _move_aside(path: Path) -> Path:
    """Rename an unreadable checkpoint to ``<name>.corrupt`` (``.corrupt.1``, ... if taken), out of the resume and pruning."""
    target = path.with_name(path.name + ".corrupt")
    number = 0
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}.corrupt.{number}")
    path.rename(target)
    return target


#: What every checkpoint holds; a file without these is unreadable as a checkpoint.
_CHECKPOINT_KEYS = {"model", "loss", "optimizer", "rng", "progress"}


def load_checkpoint(directory: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint in ``directory`` (tensors on the CPU) and its path.

    An unreadable one is moved aside as ``*.corrupt`` with a warning, so it is never resumed,
    counted or pruned in place of a good one. With none readable but some moved aside, one
    warning line says that training restarts from step 0.
    """
    for leftover in directory.glob("*.tmp"):
        leftover.unlink()  # a write that was killed half-way
    moved = 0
    for path in sorted(directory.glob(_CHECKPOINT_GLOB), reverse=True):
        try:
            # On the CPU: load_state_dict moves each tensor where it belongs, and Adam's step
            # counters stay on the CPU as Adam expects (on the GPU each .item() would be a sync).
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
            if not isinstance(checkpoint, dict) or not _CHECKPOINT_KEYS <= checkpoint.keys():
                raise ValueError(f"not a training checkpoint (expected the keys {', '.join(sorted(_CHECKPOINT_KEYS))})")
            return checkpoint, path
        except Exception as error:  # a truncated or corrupted file raises anything from pickle to zip errors
            aside = _move_aside(path)
            moved += 1
            log.warning("checkpoint %s is unreadable (%s: %s): moved aside to %s", path, type(error).__name__, str(error).splitlines()[0] if str(error) else "", aside.name)
    if moved:
        log.warning("no readable checkpoint in %s (%d moved aside as *.corrupt): training restarts from step 0", directory, moved)
    return None


def _rng_states(device: torch.device) -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        # Only the training device's generator: a resume may see fewer GPUs than this run.
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _restore_rng_states(states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"].cpu())
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"].cpu(), device)


def _check_validation_sizes(valset: ImageFile, limit: int | None, model: dict[str, Any]) -> None:
    """Every validation image used must be at least 2**depth pixels per side, or the network's padding fails."""
    network, params = models.of(model), models.params(model)
    minimum, depth = network.min_side(params), f"{network.depth_key} {params[network.depth_key]} (2**model.{network.depth_key})"
    for image_id in valset.ids[:limit]:
        height, width = valset.read("target", image_id).shape[-2:]
        if min(height, width) < minimum:
            raise ValueError(f"{valset.path}: validation image {image_id!r} is {width}×{height}, smaller than the {minimum}×{minimum} minimum of a {network.label} of {depth}")


@contextlib.contextmanager
def _catch_stop_signals() -> Iterator[_Signals]:
    """Record SIGTERM/SIGINT (what SLURM sends before killing a job) instead of dying mid-step."""
    signals = _Signals()
    if threading.current_thread() is not threading.main_thread():
        yield signals  # handlers can only be installed from the main thread
        return

    def record(signum: int, frame: Any) -> None:
        if signals.received is None:
            signals.received = signum

    previous = {signum: signal.signal(signum, record) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield signals
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _ignore_stop_signals(worker_id: int) -> None:
    # A scheduler signals every process of the job: workers must outlive the main process's checkpoint.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _autocast(device: torch.device, trainer: dict[str, Any]) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=trainer["autocast"] == "bfloat16")


def _to_device(tensor: torch.Tensor, device: torch.device, trainer: dict[str, Any]) -> torch.Tensor:
    tensor = tensor.to(device, non_blocking=True)
    return tensor.contiguous(memory_format=torch.channels_last) if trainer["channels_last"] else tensor


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    maxima = [tensor.detach().abs().amax() for tensor in tensors]
    return not maxima or bool(torch.isfinite(torch.stack(maxima)).all())  # one device sync for all


def learning_rate_factor(schedule: dict[str, Any], step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate for the optimisation step ``step`` (0-based) of ``total_steps``.

    A linear warm-up over the first ``warmup`` fraction of the steps, then ``constant`` (1) or a
    ``cosine`` decay from 1 to ``final`` at the last step. A function of the step alone, so that a
    resumed run, whose step count is in its checkpoint, follows the same rates bit for bit.

    Args:
        schedule: ``trainer.schedule``: ``kind`` (``constant`` or ``cosine``), ``warmup`` and
            ``final`` (fractions in [0, 1]).
        step: Steps done so far.
        total_steps: Steps of the whole run.
    """
    warmup = schedule["warmup"] * total_steps
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule["kind"] == "constant":
        return 1.0
    progress = (step - warmup) / max(total_steps - 1 - warmup, 1)
    return schedule["final"] + (1.0 - schedule["final"]) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _step(forward: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, parameters: list[nn.Parameter], batch: tuple[torch.Tensor, torch.Tensor], autocast: contextlib.AbstractContextManager) -> tuple[float, str | None]:
    """One optimisation step, taken only if the loss and every gradient are finite.

    Returns:
        The loss value, and None or what was not finite: ``loss <value>``, ``gradient``, or
        ``weights after the optimiser step`` (finite gradients can still overflow Adam's moments).
    """
    degraded, clean = batch
    optimizer.zero_grad(set_to_none=True)
    with autocast:
        loss = loss_fn(forward(degraded), clean)
    value = float(loss.detach())
    if not math.isfinite(value):
        return value, f"loss {value}"
    loss.backward()
    if not _all_finite([p.grad for p in parameters if p.grad is not None]):
        return value, f"gradient (loss {value})"
    optimizer.step()
    if not _all_finite(parameters):
        return value, f"weights after the optimiser step (loss {value})"
    return value, None


@torch.no_grad()
def validate(model: nn.Module, loss_fn: nn.Module, valset: ImageFile, device: torch.device, limit: int | None, trainer: dict[str, Any]) -> tuple[float, float]:
    """Mean loss and mean PSNR over the first ``limit`` validation images (all if None), one at a time."""
    model.eval()
    values, psnrs = [], []
    for image_id in valset.ids[:limit]:
        degraded = _to_device(torch.from_numpy(valset.read("input", image_id))[None], device, trainer)
        clean = torch.from_numpy(valset.read("target", image_id))[None].to(device)
        with _autocast(device, trainer):
            restored = model(degraded)
            values.append(float(loss_fn(restored, clean)))
        # Scored as evaluation scores it: clamped to the displayable range (lossbench.evaluate).
        psnrs.append(float(psnr(restored.float().clamp(0.0, 1.0), clean)[0]))
    model.train()
    return sum(values) / len(values), sum(psnrs) / len(psnrs)


def run(
    spec: dict[str, Any],
    train_dir: str | Path,
    valset_path: str | Path,
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    checkpoint_every: int = 500,
    live: dict[str, Any] | None = None,
) -> Path:
    """Train the model of ``spec`` and write ``model.pt`` and ``curve.csv`` into ``out_dir``.

    Args:
        spec: Training spec from :func:`lossbench.config.train_spec`.
        train_dir: Training data folder (images or fastMRI files).
        valset_path: Validation set written by :func:`lossbench.data.tasks.write_valset`.
        out_dir: Where the final weights and the curve go.
        checkpoint_dir: Where checkpoints live, in a subfolder named by :func:`spec_hash`; the
            newest readable checkpoint of the same spec is resumed.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        threads: CPU threads for torch (None: torch's default).
        progress: Show a progress bar on stderr.
        checkpoint_every: Steps between checkpoints (there is one at each epoch's end as well).
        live: ``trainer.snapshots`` and ``trainer.tensorboard`` (:class:`lossbench.logs.LiveView`),
            which change no result and so are no part of the spec.

    Returns:
        Path of the written ``model.pt``.

    Raises:
        NonFiniteError: a non-finite loss or gradient with ``spec["trainer"]["nonfinite"] == "stop"``;
            the checkpoints on disk are all from before it.
        Interrupted: after checkpointing on SIGTERM or SIGINT (exit status 128 + signal number).
    """
    make_deterministic(spec["seed"], threads)
    target_device = select_device(device)
    check_gpu_features(target_device, spec["trainer"]["autocast"], spec["trainer"]["compile"])
    trainer, training = spec["trainer"], spec["training"]
    configure_cuda_kernels(target_device, trainer["tf32"], trainer["cudnn_benchmark"])
    # The data are checked (image sizes, volume layouts, validation sizes) before anything is written.
    dataset = train_dataset(spec["kind"], spec["data"], train_dir)
    with ImageFile(valset_path) as valset:
        _check_validation_sizes(valset, training["val_images"], spec["model"])
    train_dir = Path(train_dir)
    identity = data_identity(_training_files(dataset, train_dir), train_dir if train_dir.is_dir() else train_dir.parent)
    run_hash = spec_hash(spec, identity)
    view = LiveView(out_dir, run_hash, (live or {}).get("snapshots"), (live or {}).get("tensorboard", False))
    out_dir, checkpoint_dir = Path(out_dir), Path(checkpoint_dir) / run_hash
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    log.info("training data %s: %d files, %d bytes, identified by %s (%s); checkpoints in %s", train_dir, identity["files"], identity["bytes"], identity["by"], identity["digest"], checkpoint_dir)

    model = build_model(spec).to(target_device)
    if trainer["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(spec).to(target_device)
    parameters = list(model.parameters()) + list(loss_fn.parameters())
    optimizer = torch.optim.Adam(parameters, lr=spec["lr"])
    state = Progress()
    found = load_checkpoint(checkpoint_dir)
    if found is not None:
        checkpoint, path = found
        model.load_state_dict(checkpoint["model"])
        loss_fn.load_state_dict(checkpoint["loss"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        _restore_rng_states(checkpoint["rng"], target_device)
        state = Progress(**checkpoint["progress"])
        log.info("resuming %s from %s: epoch %d, batch %d of the epoch, step %d", run_hash, path, state.epoch + 1, state.position, state.step)
    # The compiled module shares its parameters with ``model``, whose state_dict stays free of compile's prefixes.
    forward = torch.compile(model) if trainer["compile"] else model

    def checkpoint_now() -> Path:
        return save_checkpoint(checkpoint_dir, {
            "spec": spec,
            "model": model.state_dict(),
            "loss": loss_fn.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": _rng_states(target_device),
            "progress": asdict(state),
        })

    batch_size = training["batch_size"]

    def epoch_batches(epoch: int) -> list[list[tuple[int, int]]]:
        # Shape-grouped (fastMRI volumes of several layouts); as many batches in every epoch.
        return group_batches(list(SeededSampler(len(dataset), spec["seed"], epoch)), dataset.batch_key, batch_size)

    steps_per_epoch = len(epoch_batches(0))
    total_steps = training["epochs"] * steps_per_epoch
    log.info("training %s/%s seed %d on %s: %d samples per epoch, %d epochs, lr %g, %s", spec["task"], spec["loss"], spec["seed"], target_device, len(dataset), training["epochs"], spec["lr"], trainer)
    bar = tqdm(total=total_steps, initial=state.step, disable=not progress, file=sys.stderr, mininterval=2.0 if sys.stderr.isatty() else 30.0, desc=f"{spec['task']}/{spec['loss']}")
    # One loader for the whole run: its workers persist across epochs (no new processes, which would
    # inherit the GPU lock, each epoch) and read each epoch's order from ``order``.
    order = _EpochOrder()
    loader = DataLoader(
        dataset,
        batch_sampler=order,
        collate_fn=dataset.collate,
        num_workers=training["workers"],
        persistent_workers=training["workers"] > 0,
        pin_memory=target_device.type == "cuda",
        worker_init_fn=_ignore_stop_signals,
        # Its own generator keeps the loader from drawing on torch's global random state.
        generator=torch.Generator().manual_seed(derive_seed(spec["seed"])),
    )
    with ImageFile(valset_path) as valset, _catch_stop_signals() as signals, bar, view:
        while state.epoch < training["epochs"]:
            started = time.perf_counter()
            # A resumed epoch skips its done batches.
            order.batches = epoch_batches(state.epoch)[state.position :]
            for raw in loader:
                for group in optimizer.param_groups:
                    group["lr"] = spec["lr"] * learning_rate_factor(trainer["schedule"], state.step, total_steps)
                # The dataset finishes its batch on the device (the MRI k-space transforms run there).
                degraded, clean = dataset.finish_batch(raw, target_device)
                batch = (_to_device(degraded, target_device, trainer), clean)
                value, problem = _step(forward, loss_fn, optimizer, parameters, batch, _autocast(target_device, trainer))
                if problem is None:
                    state.loss_sum += value * len(degraded)
                    state.samples += len(degraded)
                    state.last_finite = value
                else:
                    message = f"non-finite {problem} at step {state.step + 1} (epoch {state.epoch + 1}, batch {state.position + 1}); last finite loss {state.last_finite}"
                    if problem.startswith("weights"):
                        raise NonFiniteError(f"{message}; stopped (weights cannot be skipped past), the last good checkpoint is kept in {checkpoint_dir}; lower losses.{spec['loss']}.lr?")
                    if trainer["nonfinite"] == "stop":
                        raise NonFiniteError(f"{message}; stopped, the last good checkpoint is kept in {checkpoint_dir} (trainer.nonfinite: skip skips such batches)")
                    log.warning("%s: batch skipped", message)
                    state.skipped += 1
                state.position += 1
                state.step += 1
                state.seconds += time.perf_counter() - started
                started = time.perf_counter()
                # Without refresh the postfix waits for the bar's own throttled redraw (one line per 30 s in a log).
                bar.set_postfix(epoch=state.epoch + 1, loss=f"{value:.4g}", refresh=False)
                bar.update()
                if signals.received is not None:
                    break
                if state.step % checkpoint_every == 0 and state.position < steps_per_epoch:
                    checkpoint_now()  # the epoch's last step is saved below, with its validation
            if signals.received is None:
                # The uncompiled module: compile would recompile for eval mode, each full-size image
                # shape and orientation, for a one-image-at-a-time loop that is not the run's bottleneck.
                _finish_epoch(state, validate(model, loss_fn, valset, target_device, training["val_images"], trainer), started)
                # Followed live in the outputs; beside the checkpoints it outlives a failed job, whose outputs Snakemake deletes.
                for folder in (out_dir, checkpoint_dir):
                    write_curve(state.curve, folder / "curve.csv")
                view.epoch(state.curve[-1], model, valset, target_device)
            path = checkpoint_now()
            if signals.received is not None:
                name = signal.Signals(signals.received).name
                log.warning("%s received: checkpoint %s written at step %d; exiting so that a re-run resumes there", name, path, state.step)
                raise Interrupted(128 + signals.received)

    model_path = out_dir / "model.pt"
    _save_atomic({"spec": spec, "data_identity": identity, "model": model.state_dict(), "loss": loss_fn.state_dict()}, model_path)
    write_curve(state.curve, out_dir / "curve.csv")
    log.info("peak memory of %s/%s seed %d: %s", spec["task"], spec["loss"], spec["seed"], peak_memory(target_device))
    return model_path


def peak_memory(device: torch.device) -> str:
    """``host 1.2 GiB (peak RSS of this process)``, and the peak allocated on a CUDA ``device`` (``torch.cuda.max_memory_allocated``)."""
    import resource

    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    text = f"host {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30:.2f} GiB (peak RSS of this process)"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)} {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (peak allocated)"
    return text


def _finish_epoch(state: Progress, validation: tuple[float, float], started: float) -> None:
    """Append the finished epoch to the curve and reset the per-epoch counters."""
    val_loss, val_psnr = validation
    state.seconds += time.perf_counter() - started
    train_loss = state.loss_sum / state.samples if state.samples else math.nan
    state.curve.append({"epoch": state.epoch + 1, "step": state.step, "train_loss": train_loss, "val_loss": val_loss, "val_psnr": val_psnr, "skipped": state.skipped, "seconds": round(state.seconds, 3)})
    log.info("epoch %d: train loss %.6g, validation loss %.6g, validation PSNR %.2f dB%s", state.epoch + 1, train_loss, val_loss, val_psnr, f", {state.skipped} non-finite batches skipped" if state.skipped else "")
    state.epoch += 1
    state.position, state.loss_sum, state.samples, state.skipped, state.seconds = 0, 0.0, 0, 0, 0.0


def write_curve(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the per-epoch curve as CSV (columns :data:`CURVE_COLUMNS`), atomically: a reader sees whole epochs."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a trained ``model.pt``; returns the network its spec names (see :func:`build_model`) in eval mode, and the spec."""
    state = torch.load(path, map_location=device, weights_only=False)
    model = build_model(state["spec"]).to(device)
    model.load_state_dict(state["model"])
    return model.eval(), state["spec"]


def main(argv: list[str] | None = None) -> None:
    from lossbench.config import live_settings, load, train_spec

    parser = argparse.ArgumentParser(prog="python -m lossbench.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML configuration (e.g. config.yaml)")
    parser.add_argument("--task", required=True, help="a task of the configuration")
    parser.add_argument("--loss", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-dir", required=True, help="training images or fastMRI .h5 files")
    parser.add_argument("--valset", required=True, help="validation set .h5 (lossbench.data.tasks.write_valset)")
    parser.add_argument("--out", required=True, help="output folder for model.pt and curve.csv")
    parser.add_argument("--checkpoints", help="checkpoint folder (default: OUT/checkpoints)")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda[:N] (default: from config)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load(args.config)
    except ValueError as error:
        sys.exit(f"error: {error}")
    if args.task not in config["tasks"]:
        parser.error(f"task {args.task!r} is not configured in {args.config}")
    if args.loss not in config["losses"]:
        parser.error(f"loss {args.loss!r} is not configured in {args.config}")
    spec = train_spec(config, args.task, args.loss, args.seed)
    try:
        run(spec, args.train_dir, args.valset, args.out, args.checkpoints or Path(args.out) / "checkpoints", args.device or config["device"], config["threads"], not args.no_progress, config["trainer"]["checkpoint_every"], live_settings(config))
    except (NonFiniteError, DeviceError, LiveViewError, ValueError, FileNotFoundError) as error:
        # Bad data (unreadable, too small, malformed volumes) is reported in one line naming the file.
        sys.exit(f"{args.task}/{args.loss} seed {args.seed}: {error}")


if __name__ == "__main__":
    main()
