"""The training loop: one network with one loss on one task and seed (thesis §5.1), built to survive.

Adam with the loss's learning rate; seeded, reproducible sampling; checkpoints every N steps, at
each epoch's end and on SIGTERM/SIGINT (:mod:`lossbench.train.checkpoint`, :mod:`lossbench.train.stop_signals`);
a re-run resumes from the newest readable one, mid-epoch included, and on the CPU ends with the
same weights, bit for bit, as an uninterrupted run. A non-finite loss or gradient stops the job
(or skips the batch); optional bfloat16 autocast, channels_last and torch.compile; the curve
(train and validation loss, validation PSNR and any other validation metrics) as CSV. The
command line is :mod:`lossbench.train`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import resource
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lossbench import losses, models
from lossbench.core.io import CRLF, write_rows
from lossbench.core.seeding import SeededSampler, derive_seed, group_batches
from lossbench.data.denoise import DenoiseTrainDataset
from lossbench.data.tasks import channels, train_dataset
from lossbench.data.valset import ImageFile
from lossbench.metrics import compute as compute_metric
from lossbench.metrics import spec as metric_spec
from lossbench.metrics.pixel import psnr
from lossbench.train.checkpoint import (
    data_identity,
    load_checkpoint,
    load_file,
    restore_rng_states,
    rng_states,
    save_atomic,
    save_checkpoint,
    spec_hash,
)
from lossbench.train.device import (
    check_gpu_features,
    configure_cuda_kernels,
    keep_freed_memory,
    make_deterministic,
    select_device,
)
from lossbench.train.live import LiveView
from lossbench.train.run_spec import RunSpec, Schedule, Trainer
from lossbench.train.stop_signals import Interrupted, StopSignals, catch_stop_signals, ignore_stop_signals

log = logging.getLogger(__name__)

CURVE_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_psnr", "skipped", "seconds"]
#: Prefix of the curve's column of a validation metric (``val_flip``): the metrics at every validation
#: show whether a loss still gains on its own metric when training stops (the own-metric race figure).
METRIC_COLUMN = "val_{}"


class NonFiniteError(RuntimeError):
    """The loss or a gradient became NaN or infinite (with ``trainer.nonfinite: stop``)."""


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
class _Job:
    """The live objects of one run, from :func:`_build`; ``state`` advances step by step."""

    spec: RunSpec
    device: torch.device
    dataset: Any
    model: nn.Module
    forward: nn.Module  # ``model``, or torch.compile's module sharing its parameters
    loss_fn: nn.Module
    parameters: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    checkpoint_dir: Path
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    state: Progress = field(default_factory=Progress)

    def checkpoint(self) -> Path:
        """Write a checkpoint of the run as it stands."""
        return save_checkpoint(
            self.checkpoint_dir,
            {
                "spec": self.spec.to_dict(),
                "model": self.model.state_dict(),
                "loss": self.loss_fn.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rng": rng_states(self.device),
                "progress": asdict(self.state),
            },
        )

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        """The batches of ``epoch``: shape-grouped (fastMRI volumes of several layouts), as many in every epoch."""
        return group_batches(
            list(SeededSampler(len(self.dataset), self.spec.seed, epoch)),
            self.dataset.batch_key,
            self.spec.training.batch_size,
        )


def build_model(spec: RunSpec) -> nn.Module:
    """The network of a run spec (``model.name``; a spec without one, from before it, is the thesis's U-net)."""
    return models.build(spec.model, channels(spec.kind))


def build_loss(spec: RunSpec) -> nn.Module:
    """The loss of a run spec, for the channel count of its task (see :meth:`LossSpec.build`)."""
    return losses.spec(spec.loss.name).build(spec.loss.params, channels(spec.kind))


def _training_files(dataset: Any, train_dir: Path) -> list[Path]:
    # The files a training dataset reads: the decoded denoising images (or their files), or the .h5 volumes of an MRI
    # folder.
    if isinstance(dataset, DenoiseTrainDataset):
        return dataset.images.files
    return sorted(path for path in train_dir.iterdir() if path.suffix == ".h5" and path.is_file())


def _check_validation_sizes(
    valset: ImageFile, limit: int | None, model: Mapping[str, Any], metrics: Mapping[str, Mapping[str, Any]]
) -> None:
    """Every validation image used must be at least 2**depth pixels per side, or the network's padding fails,
    and large enough for every metric scored at validation, or the first epoch's end would fail."""
    network, params = models.of(model), models.params(model)
    minimum, depth = (
        network.min_side(params),
        f"{network.depth_key} {params[network.depth_key]} (2**model.{network.depth_key})",
    )
    for image_id in valset.ids[:limit]:
        height, width = valset.read("target", image_id).shape[-2:]
        if min(height, width) < minimum:
            raise ValueError(
                f"{valset.path}: validation image {image_id!r} is {width}×{height}, smaller than the"
                f" {minimum}×{minimum} minimum of a {network.label} of {depth}"
            )
        for name in metrics:
            reason = metric_spec(name).too_small(min(height, width))
            if reason is not None:
                raise ValueError(
                    f"{valset.path}: validation image {image_id!r} is {width}×{height}, too small for {reason} (the"
                    " configuration's metrics are scored at every validation)"
                )


def _autocast(device: torch.device, trainer: Trainer) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=trainer.autocast == "bfloat16")


def _to_device(tensor: torch.Tensor, device: torch.device, trainer: Trainer) -> torch.Tensor:
    tensor = tensor.to(device, non_blocking=True)
    return tensor.contiguous(memory_format=torch.channels_last) if trainer.channels_last else tensor


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    maxima = [tensor.detach().abs().amax() for tensor in tensors]
    return not maxima or bool(torch.isfinite(torch.stack(maxima)).all())  # one device sync for all


def learning_rate_factor(schedule: Schedule, step: int, total_steps: int) -> float:
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
    warmup = schedule.warmup * total_steps
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule.kind == "constant":
        return 1.0
    progress = (step - warmup) / max(total_steps - 1 - warmup, 1)
    return schedule.final + (1.0 - schedule.final) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _step(
    forward: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    parameters: list[nn.Parameter],
    batch: tuple[torch.Tensor, torch.Tensor],
    autocast: contextlib.AbstractContextManager,
) -> tuple[float, str | None]:
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
def validate(
    model: nn.Module,
    loss_fn: nn.Module,
    valset: ImageFile,
    device: torch.device,
    limit: int | None,
    trainer: Trainer,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, float]:
    """Mean loss, PSNR and ``metrics`` over the first ``limit`` validation images (all if None), one at a time.

    Args:
        metrics: Metric name → its parameters (:func:`lossbench.pipeline.run_specs.validation_metrics`),
            scored as evaluation scores them: the output clamped to [0, 1], on the CPU.

    Returns:
        ``{"val_loss": ..., "val_psnr": ..., "val_<metric>": ...}``: means over the images.
    """
    model.eval()
    sums: dict[str, float] = {}
    images = valset.ids[:limit]
    for image_id in images:
        degraded = _to_device(torch.from_numpy(valset.read("input", image_id))[None], device, trainer)
        clean = torch.from_numpy(valset.read("target", image_id))[None].to(device)
        with _autocast(device, trainer):
            restored = model(degraded)
            values = {"val_loss": float(loss_fn(restored, clean))}
        # Scored as evaluation scores it: clamped to the displayable range (lossbench.evaluate).
        clamped = restored.float().clamp(0.0, 1.0)
        values["val_psnr"] = float(psnr(clamped, clean)[0])
        # PSNR is always scored (the curve's val_psnr); a configured psnr is that same value.
        values.update(
            _metric_values(
                clamped.cpu(),
                clean.float().cpu(),
                {name: params for name, params in (metrics or {}).items() if METRIC_COLUMN.format(name) not in values},
            )
        )
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value
    model.train()
    return {name: total / len(images) for name, total in sums.items()}


def _metric_values(
    output: torch.Tensor, target: torch.Tensor, metrics: Mapping[str, Mapping[str, Any]]
) -> dict[str, float]:
    # Building a metric's network (LPIPS) draws initial weights from torch's global generator: forked,
    # so that the training's random stream, and with it the weights, stay those of a run without metrics.
    with torch.random.fork_rng(devices=[]):
        return {
            METRIC_COLUMN.format(name): float(compute_metric(name, output, target, **params)[0])
            for name, params in metrics.items()
        }


def run(
    spec: RunSpec,
    train_dir: str | Path,
    valset_path: str | Path,
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    checkpoint_every: int = 500,
    live: dict[str, Any] | None = None,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Train the model of ``spec`` and write ``model.pt`` and ``curve.csv`` into ``out_dir``.

    Args:
        spec: Run spec from :func:`lossbench.pipeline.run_specs.train_spec`.
        train_dir: Training data folder (images or fastMRI files).
        valset_path: Validation set written by :func:`lossbench.data.tasks.write_valset`.
        out_dir: Where the final weights and the curve go.
        checkpoint_dir: Where checkpoints live, in a subfolder named by
            :func:`lossbench.train.checkpoint.spec_hash`; the newest readable checkpoint of the same
            spec is resumed.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        threads: CPU threads for torch (None: torch's default).
        progress: Show a progress bar on stderr.
        checkpoint_every: Steps between checkpoints (there is one at each epoch's end as well).
        live: ``trainer.snapshots`` and ``trainer.tensorboard`` (:class:`lossbench.train.live.LiveView`),
            which change no result and so are no part of the spec.
        metrics: Metrics scored at every validation besides the loss and PSNR, name → parameters
            (:func:`lossbench.pipeline.run_specs.validation_metrics`); they change no weight, so they are no
            part of the spec either, and a run resumed with other metrics has their columns from then on.

    Returns:
        Path of the written ``model.pt``.

    Raises:
        NonFiniteError: a non-finite loss or gradient with ``spec.trainer.nonfinite == "stop"``;
            the checkpoints on disk are all from before it.
        Interrupted: after checkpointing on SIGTERM or SIGINT (exit status 128 + signal number).
    """
    target_device = _set_up_device(spec, device, threads)
    # The data are checked (image sizes, volume layouts, validation sizes) before anything is written.
    dataset, identity = _read_data(spec, Path(train_dir), valset_path, metrics or {})
    run_hash = spec_hash(spec, identity)
    view = LiveView(out_dir, run_hash, (live or {}).get("snapshots"), (live or {}).get("tensorboard", False))
    out_dir, checkpoint_dir = Path(out_dir), Path(checkpoint_dir) / run_hash
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    log.info(
        "training data %s: %d files, %d bytes, identified by %s (%s); checkpoints in %s",
        train_dir,
        identity["files"],
        identity["bytes"],
        identity["by"],
        identity["digest"],
        checkpoint_dir,
    )
    job = _build(spec, dataset, target_device, checkpoint_dir, metrics)
    _resume(job, run_hash)

    steps_per_epoch = len(job.epoch_batches(0))
    total_steps = spec.training.epochs * steps_per_epoch
    log.info(
        "training %s/%s seed %d on %s: %d samples per epoch, %d epochs, lr %g, %s",
        spec.task,
        spec.loss.name,
        spec.seed,
        target_device,
        len(dataset),
        spec.training.epochs,
        spec.lr,
        spec.trainer.to_dict(),
    )
    bar = tqdm(
        total=total_steps,
        initial=job.state.step,
        disable=not progress,
        file=sys.stderr,
        mininterval=2.0 if sys.stderr.isatty() else 30.0,
        desc=f"{spec.task}/{spec.loss.name}",
    )
    loader, order = _loader(job)
    with ImageFile(valset_path) as valset, catch_stop_signals() as signals, bar, view:
        while job.state.epoch < spec.training.epochs:
            # A resumed epoch skips its done batches.
            order.batches = job.epoch_batches(job.state.epoch)[job.state.position :]
            started = _train_epoch(job, loader, total_steps, steps_per_epoch, checkpoint_every, signals, bar)
            if signals.received is None:
                _end_epoch(job, valset, started, (out_dir, checkpoint_dir), view)
            path = job.checkpoint()
            if signals.received is not None:
                name = signal.Signals(signals.received).name
                log.warning(
                    "%s received: checkpoint %s written at step %d; exiting so that a re-run resumes there",
                    name,
                    path,
                    job.state.step,
                )
                raise Interrupted(128 + signals.received)
    return _finish(job, identity, out_dir)


def _set_up_device(spec: RunSpec, device: str, threads: int | None) -> torch.device:
    """Seed every generator, pick the device and set its kernels as the spec asks (refusing what the GPU lacks)."""
    keep_freed_memory()
    make_deterministic(spec.seed, threads)
    target_device = select_device(device)
    check_gpu_features(target_device, spec.trainer.autocast, spec.trainer.compile)
    configure_cuda_kernels(target_device, spec.trainer.tf32, spec.trainer.cudnn_benchmark)
    return target_device


def _read_data(
    spec: RunSpec, train_dir: Path, valset_path: str | Path, metrics: Mapping[str, Mapping[str, Any]]
) -> tuple[Any, dict[str, Any]]:
    """The training dataset, checked with the validation set's sizes, and the identity of its files."""
    dataset = train_dataset(spec.kind, spec.data, train_dir)
    with ImageFile(valset_path) as valset:
        _check_validation_sizes(valset, spec.training.val_images, spec.model, metrics)
    identity = data_identity(_training_files(dataset, train_dir), train_dir if train_dir.is_dir() else train_dir.parent)
    return dataset, identity


def _build(
    spec: RunSpec,
    dataset: Any,
    device: torch.device,
    checkpoint_dir: Path,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
) -> _Job:
    """The network, loss and optimiser of a fresh run, on ``device``."""
    model = build_model(spec).to(device)
    if spec.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(spec).to(device)
    parameters = list(model.parameters()) + list(loss_fn.parameters())
    optimizer = torch.optim.Adam(parameters, lr=spec.lr)
    # The compiled module shares its parameters with ``model``, whose state_dict stays free of compile's prefixes.
    forward = torch.compile(model) if spec.trainer.compile else model
    return _Job(
        spec, device, dataset, model, forward, loss_fn, parameters, optimizer, checkpoint_dir, dict(metrics or {})
    )


def _resume(job: _Job, run_hash: str) -> None:
    """Continue from the newest readable checkpoint of the run, if any: weights, optimiser, RNG states and progress."""
    found = load_checkpoint(job.checkpoint_dir)
    if found is None:
        return
    checkpoint, path = found
    job.model.load_state_dict(checkpoint["model"])
    job.loss_fn.load_state_dict(checkpoint["loss"])
    job.optimizer.load_state_dict(checkpoint["optimizer"])
    restore_rng_states(checkpoint["rng"], job.device)
    job.state = Progress(**checkpoint["progress"])
    log.info(
        "resuming %s from %s: epoch %d, batch %d of the epoch, step %d",
        run_hash,
        path,
        job.state.epoch + 1,
        job.state.position,
        job.state.step,
    )


def _loader(job: _Job) -> tuple[DataLoader, _EpochOrder]:
    """The run's one DataLoader, and the batch order it reads at the start of each epoch's iteration.

    One loader for the whole run: its workers persist across epochs (no new processes, which
    would inherit the GPU lock, each epoch).
    """
    order = _EpochOrder()
    loader = DataLoader(
        job.dataset,
        batch_sampler=order,
        collate_fn=job.dataset.collate,
        num_workers=job.spec.training.workers,
        persistent_workers=job.spec.training.workers > 0,
        pin_memory=job.device.type == "cuda",
        worker_init_fn=ignore_stop_signals,
        # Its own generator keeps the loader from drawing on torch's global random state.
        generator=torch.Generator().manual_seed(derive_seed(job.spec.seed)),
    )
    return loader, order


def _train_epoch(
    job: _Job,
    loader: DataLoader,
    total_steps: int,
    steps_per_epoch: int,
    checkpoint_every: int,
    signals: StopSignals,
    bar: tqdm,
) -> float:
    """Train the epoch's remaining batches, checkpointing every ``checkpoint_every`` steps; stop early at a signal.

    Returns:
        The ``time.perf_counter()`` of the last step's end, from which the epoch's end is timed.

    Raises:
        NonFiniteError: see :func:`run`.
    """
    spec, state = job.spec, job.state
    started = time.perf_counter()
    for raw in loader:
        for group in job.optimizer.param_groups:
            group["lr"] = spec.lr * learning_rate_factor(spec.trainer.schedule, state.step, total_steps)
        # The dataset finishes its batch on the device (the MRI k-space transforms run there).
        degraded, clean = job.dataset.finish_batch(raw, job.device)
        batch = (_to_device(degraded, job.device, spec.trainer), clean)
        value, problem = _step(
            job.forward, job.loss_fn, job.optimizer, job.parameters, batch, _autocast(job.device, spec.trainer)
        )
        _count(job, value, problem, len(degraded))
        state.seconds += time.perf_counter() - started
        started = time.perf_counter()
        # Without refresh the postfix waits for the bar's own throttled redraw (one line per 30 s in a log).
        bar.set_postfix(epoch=state.epoch + 1, loss=f"{value:.4g}", refresh=False)
        bar.update()
        if signals.received is not None:
            break
        if state.step % checkpoint_every == 0 and state.position < steps_per_epoch:
            job.checkpoint()  # the epoch's last step is saved by the caller, with its validation
    return started


def _count(job: _Job, value: float, problem: str | None, samples: int) -> None:
    """Account for one step: its loss, or (``problem``) a non-finite batch skipped, or the job stopped."""
    state = job.state
    if problem is None:
        state.loss_sum += value * samples
        state.samples += samples
        state.last_finite = value
    else:
        message = (
            f"non-finite {problem} at step {state.step + 1} (epoch {state.epoch + 1}, batch {state.position + 1}); last"
            f" finite loss {state.last_finite}"
        )
        if problem.startswith("weights"):
            raise NonFiniteError(
                f"{message}; stopped (weights cannot be skipped past), the last good checkpoint is kept in"
                f" {job.checkpoint_dir}; lower losses.{job.spec.loss.name}.lr?"
            )
        if job.spec.trainer.nonfinite == "stop":
            raise NonFiniteError(
                f"{message}; stopped, the last good checkpoint is kept in {job.checkpoint_dir} (trainer.nonfinite: skip"
                " skips such batches)"
            )
        log.warning("%s: batch skipped", message)
        state.skipped += 1
    state.position += 1
    state.step += 1


def _end_epoch(job: _Job, valset: ImageFile, started: float, curve_folders: tuple[Path, ...], view: LiveView) -> None:
    """Validate, append the epoch to the curve and write it, and show the epoch in the live view."""
    # The uncompiled module: compile would recompile for eval mode, each full-size image shape and
    # orientation, for a one-image-at-a-time loop that is not the run's bottleneck.
    validation = validate(
        job.model, job.loss_fn, valset, job.device, job.spec.training.val_images, job.spec.trainer, job.metrics
    )
    _finish_epoch(job.state, validation, started)
    # Followed live in the outputs; beside the checkpoints it outlives a failed job, whose outputs Snakemake deletes.
    for folder in curve_folders:
        write_curve(job.state.curve, folder / "curve.csv")
    view.epoch(job.state.curve[-1], job.model, valset, job.device)


def _finish_epoch(state: Progress, validation: dict[str, float], started: float) -> None:
    """Append the finished epoch to the curve and reset the per-epoch counters."""
    state.seconds += time.perf_counter() - started
    train_loss = state.loss_sum / state.samples if state.samples else math.nan
    state.curve.append(
        {
            "epoch": state.epoch + 1,
            "step": state.step,
            "train_loss": train_loss,
            **validation,
            "skipped": state.skipped,
            "seconds": round(state.seconds, 3),
        }
    )
    log.info(
        "epoch %d: train loss %.6g, validation loss %.6g, validation PSNR %.2f dB%s",
        state.epoch + 1,
        train_loss,
        validation["val_loss"],
        validation["val_psnr"],
        f", {state.skipped} non-finite batches skipped" if state.skipped else "",
    )
    state.epoch += 1
    state.position, state.loss_sum, state.samples, state.skipped, state.seconds = 0, 0.0, 0, 0, 0.0


def _finish(job: _Job, identity: dict[str, Any], out_dir: Path) -> Path:
    """Write the trained ``model.pt`` (spec, data identity, network and loss weights) and the final curve."""
    spec = job.spec
    model_path = out_dir / "model.pt"
    save_atomic(
        {
            "spec": spec.to_dict(),
            "data_identity": identity,
            "model": job.model.state_dict(),
            "loss": job.loss_fn.state_dict(),
        },
        model_path,
    )
    write_curve(job.state.curve, out_dir / "curve.csv")
    log.info("peak memory of %s/%s seed %d: %s", spec.task, spec.loss.name, spec.seed, peak_memory(job.device))
    return model_path


def peak_memory(device: torch.device) -> str:
    """``host 1.2 GiB (peak RSS of this process)``, and the peak allocated on a CUDA ``device``
    (``torch.cuda.max_memory_allocated``)."""
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    text = (
        f"host {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30:.2f} GiB (peak RSS of this process)"
    )
    if device.type == "cuda":
        text += (
            f", {torch.cuda.get_device_name(device)} {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (peak"
            " allocated)"
        )
    return text


def write_curve(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the per-epoch curve as CSV, atomically (:func:`lossbench.core.io.write_rows`): a reader sees whole epochs.
    Its lines end in the csv module's ``\r\n``, as curves have always been written.

    Columns: :data:`CURVE_COLUMNS`, then the validation metrics' (``val_<metric>``) in the order
    they first appear; an epoch without a metric (validated before a resume that added it) leaves
    its cell empty.
    """
    extra = [key for key in dict.fromkeys(key for row in rows for key in row) if key not in CURVE_COLUMNS]
    write_rows(path, rows, [*CURVE_COLUMNS[:5], *extra, *CURVE_COLUMNS[5:]], terminator=CRLF, atomic=True)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, RunSpec]:
    """Load a trained ``model.pt``; returns the network its spec names (see :func:`build_model`) in eval mode, and the
    spec.

    The file is read as tensors and plain data (:func:`lossbench.train.checkpoint.load_file`): nothing in it runs.

    Raises:
        RefusedFileError: the file holds other objects (a pickled payload, or NumPy arrays of an
            earlier lossbench, with the command that converts it); nothing in it ran.
        ValueError: the file holds no spec and weights, or the stored spec lacks a key or has an
            unknown one (one line naming it).
    """
    state = load_file(path, device)
    if not isinstance(state, dict) or not {"spec", "model"} <= state.keys():
        raise ValueError(
            f"{path}: not a model written by lossbench.train (expected a dict with the keys model and spec)"
        )
    spec = RunSpec.from_dict(state["spec"])
    model = build_model(spec).to(device)
    model.load_state_dict(state["model"])
    return model.eval(), spec
