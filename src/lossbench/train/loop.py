"""The training loop: one network with one loss on one task and seed (thesis §5.1), built to survive.

Adam with the loss's learning rate; seeded, reproducible sampling; checkpoints every N steps, at
each epoch's end and on SIGTERM/SIGINT (:mod:`lossbench.train.checkpoint`, :mod:`lossbench.train.stop_signals`);
a re-run resumes from the newest readable one, mid-epoch included, and on the CPU ends with the
same weights, bit for bit, as an uninterrupted run. A non-finite loss or gradient stops the job
(or skips the batch); optional bfloat16 autocast, channels_last and torch.compile; the curve
(train and validation loss, validation PSNR and any other validation metrics) as CSV. The
command line is :mod:`lossbench.train`.

This module sets a run up, resumes it and writes its ``model.pt``; one optimisation step is
:mod:`lossbench.train.step`, one epoch :mod:`lossbench.train.epoch` and its validation and curve
:mod:`lossbench.train.validation` (their public names are imported here too).
"""

from __future__ import annotations

import logging
import resource
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lossbench import models
from lossbench.core.seeding import derive_seed
from lossbench.data.denoise import DenoiseTrainDataset
from lossbench.data.tasks import channels, train_dataset
from lossbench.data.valset import ImageFile
from lossbench.registry import PACKAGE, Registry
from lossbench.train.checkpoint import (
    data_identity,
    load_checkpoint,
    load_file,
    restore_rng_states,
    save_atomic,
    settings_hash,
)
from lossbench.train.device import (
    check_gpu_features,
    configure_cuda_kernels,
    keep_freed_memory,
    make_deterministic,
    select_device,
)
from lossbench.train.epoch import Progress, _end_epoch, _EpochOrder, _Job, _train_epoch
from lossbench.train.live import LiveView
from lossbench.train.run_settings import RunSettings
from lossbench.train.step import NonFiniteError, learning_rate_factor
from lossbench.train.stop_signals import Interrupted, catch_stop_signals, ignore_stop_signals
from lossbench.train.validation import (
    CURVE_COLUMNS,
    METRIC_COLUMN,
    Scored,
    _check_validation_sizes,
    validate,
    write_curve,
)

log = logging.getLogger(__name__)

__all__ = [
    "CURVE_COLUMNS",
    "METRIC_COLUMN",
    "NonFiniteError",
    "Progress",
    "build_loss",
    "build_model",
    "learning_rate_factor",
    "load_model",
    "peak_memory",
    "run",
    "validate",
    "write_curve",
]


def build_model(settings: RunSettings) -> nn.Module:
    """The network of run ``settings`` (``model.name``; settings from before it, without one, name the U-net)."""
    return models.build(settings.model, channels(settings.kind))


def build_loss(settings: RunSettings, registry: Registry = PACKAGE) -> nn.Module:
    """The loss of run ``settings``, from ``registry`` (its configuration's, for a loss of the user's own), for the
    channel count of its task (see :meth:`LossSpec.build`)."""
    return registry.build_loss(settings.loss.name, settings.loss.params, channels(settings.kind))


def _training_files(dataset: Any, train_dir: Path) -> list[Path]:
    # The files a training dataset reads: the decoded denoising images (or their files), or the .h5 volumes of an MRI
    # folder.
    if isinstance(dataset, DenoiseTrainDataset):
        return dataset.images.files
    return sorted(path for path in train_dir.iterdir() if path.suffix == ".h5" and path.is_file())


def run(
    settings: RunSettings,
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
    registry: Registry = PACKAGE,
    finite_check_every: int = 1,
) -> Path:
    """Train the model of ``settings`` and write ``model.pt`` and ``curve.csv`` into ``out_dir``.

    Args:
        settings: Run settings from :func:`lossbench.pipeline.job_settings.run_settings`.
        train_dir: Training data folder (images or fastMRI files).
        valset_path: Validation set written by :func:`lossbench.data.tasks.write_valset`.
        out_dir: Where the final weights and the curve go.
        checkpoint_dir: Where checkpoints live, in a subfolder named by
            :func:`lossbench.train.checkpoint.settings_hash`; the newest readable checkpoint of the same
            settings is resumed.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        threads: CPU threads for torch (None: torch's default).
        progress: Show a progress bar on stderr.
        checkpoint_every: Steps between checkpoints (there is one at each epoch's end as well).
        live: ``trainer.snapshots`` and ``trainer.tensorboard`` (:class:`lossbench.train.live.LiveView`),
            which change no result and so are no part of the settings.
        metrics: Metrics scored at every validation besides the loss and PSNR, name → parameters
            (:func:`lossbench.pipeline.job_settings.validation_metrics`); they change no weight, so they are no
            part of the settings either, and a run resumed with other metrics has their columns from then on.
        registry: The configuration's losses and metrics (:class:`lossbench.registry.Registry`), which build the
            loss and score the metrics by name.
        finite_check_every: With ``nonfinite: stop``, steps between the checks of gradients and weights
            (``trainer.finite_check_every``); every checkpoint is checked before it is written. Changes no result.

    Returns:
        Path of the written ``model.pt``.

    Raises:
        NonFiniteError: a non-finite loss or gradient with ``settings.trainer.nonfinite == "stop"``;
            the checkpoints on disk are all from before it.
        Interrupted: after checkpointing on SIGTERM or SIGINT (exit status 128 + signal number).
    """
    target_device = _set_up_device(settings, device, threads)
    # The data are checked (image sizes, volume layouts, validation sizes) before anything is written.
    scored = {name: (registry.metric(name), params) for name, params in (metrics or {}).items()}
    dataset, identity = _read_data(settings, Path(train_dir), valset_path, scored)
    run_hash = settings_hash(settings, identity)
    view = LiveView(out_dir, run_hash, (live or {}).get("snapshots"), (live or {}).get("tensorboard", False))
    out_dir, checkpoint_dir = _make_folders(Path(out_dir), Path(checkpoint_dir) / run_hash, train_dir, identity)
    job = _build(settings, dataset, target_device, checkpoint_dir, scored, registry)
    job.finite_check_every = finite_check_every if settings.trainer.nonfinite == "stop" else 1
    _resume(job, run_hash)
    _train(job, valset_path, (out_dir, checkpoint_dir), view, progress, checkpoint_every)
    return _finish(job, identity, out_dir)


def _make_folders(
    out_dir: Path, checkpoint_dir: Path, train_dir: str | Path, identity: dict[str, Any]
) -> tuple[Path, Path]:
    """Create the output and checkpoint folders, and log the data's identity and where the checkpoints go."""
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
    return out_dir, checkpoint_dir


def _train(
    job: _Job,
    valset_path: str | Path,
    curve_folders: tuple[Path, Path],
    view: LiveView,
    progress: bool,
    checkpoint_every: int,
) -> None:
    """Train the run's remaining epochs, each validated and checkpointed; after a stop signal, checkpoint and raise
    :class:`Interrupted`."""
    settings = job.settings
    steps_per_epoch = len(job.epoch_batches(0))
    total_steps = settings.training.epochs * steps_per_epoch
    log.info(
        "training %s/%s seed %d on %s: %d samples per epoch, %d epochs, lr %g, %s",
        settings.task,
        settings.loss.name,
        settings.seed,
        job.device,
        len(job.dataset),
        settings.training.epochs,
        settings.lr,
        settings.trainer.to_dict(),
    )
    bar = tqdm(
        total=total_steps,
        initial=job.state.step,
        disable=not progress,
        file=sys.stderr,
        mininterval=2.0 if sys.stderr.isatty() else 30.0,
        desc=f"{settings.task}/{settings.loss.name}",
    )
    loader, order = _loader(job)
    with ImageFile(valset_path) as valset, catch_stop_signals() as signals, bar, view:
        while job.state.epoch < settings.training.epochs:
            # A resumed epoch skips its done batches.
            order.batches = job.epoch_batches(job.state.epoch)[job.state.position :]
            started = _train_epoch(job, loader, total_steps, steps_per_epoch, checkpoint_every, signals, bar)
            if signals.received is None:
                _end_epoch(job, valset, started, curve_folders, view)
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


def _set_up_device(settings: RunSettings, device: str, threads: int | None) -> torch.device:
    """Seed every generator, pick the device and set its kernels as the settings ask (refusing what the GPU lacks)."""
    keep_freed_memory()
    make_deterministic(settings.seed, threads, settings.trainer.compile)
    target_device = select_device(device)
    check_gpu_features(target_device, settings.trainer.autocast, settings.trainer.compile)
    configure_cuda_kernels(target_device, settings.trainer.tf32, settings.trainer.cudnn_benchmark)
    return target_device


def _read_data(
    settings: RunSettings, train_dir: Path, valset_path: str | Path, metrics: Scored
) -> tuple[Any, dict[str, Any]]:
    """The training dataset, checked with the validation set's sizes, and the identity of its files."""
    dataset = train_dataset(settings.kind, settings.data, train_dir)
    with ImageFile(valset_path) as valset:
        _check_validation_sizes(valset, settings.training.val_images, settings.model, metrics)
    identity = data_identity(_training_files(dataset, train_dir), train_dir if train_dir.is_dir() else train_dir.parent)
    return dataset, identity


def _build(
    settings: RunSettings,
    dataset: Any,
    device: torch.device,
    checkpoint_dir: Path,
    metrics: Scored,
    registry: Registry,
) -> _Job:
    """The network, loss and optimiser of a fresh run, on ``device``."""
    model = build_model(settings).to(device)
    if settings.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(settings, registry).to(device)
    parameters = list(model.parameters()) + list(loss_fn.parameters())
    optimizer = torch.optim.Adam(parameters, lr=settings.lr)
    # The compiled module shares its parameters with ``model``, whose state_dict stays free of compile's prefixes.
    forward = torch.compile(model) if settings.trainer.compile else model
    return _Job(
        settings, device, dataset, model, forward, loss_fn, parameters, optimizer, checkpoint_dir, dict(metrics)
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
        num_workers=job.settings.training.workers,
        persistent_workers=job.settings.training.workers > 0,
        pin_memory=job.device.type == "cuda",
        worker_init_fn=ignore_stop_signals,
        # Its own generator keeps the loader from drawing on torch's global random state.
        generator=torch.Generator().manual_seed(derive_seed(job.settings.seed)),
    )
    return loader, order


def _finish(job: _Job, identity: dict[str, Any], out_dir: Path) -> Path:
    """Write the trained ``model.pt`` (settings, data identity, network and loss weights) and the final curve."""
    settings = job.settings
    model_path = out_dir / "model.pt"
    save_atomic(
        {
            "spec": settings.to_dict(),
            "data_identity": identity,
            "model": job.model.state_dict(),
            "loss": job.loss_fn.state_dict(),
        },
        model_path,
    )
    write_curve(job.state.curve, out_dir / "curve.csv")
    log.info(
        "peak memory of %s/%s seed %d: %s", settings.task, settings.loss.name, settings.seed, peak_memory(job.device)
    )
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


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, RunSettings]:
    """Load a trained ``model.pt``; returns the network its run settings name (see :func:`build_model`) in eval mode,
    and the run settings.

    The file is read as tensors and plain data (:func:`lossbench.train.checkpoint.load_file`): nothing in it runs.

    Raises:
        RefusedFileError: the file holds other objects (a pickled payload, or NumPy arrays of an
            earlier lossbench, with the command that converts it); nothing in it ran.
        ValueError: the file holds no settings and weights, or the stored settings lacks a key or has an
            unknown one (one line naming it).
    """
    state = load_file(path, device)
    if not isinstance(state, dict) or not {"spec", "model"} <= state.keys():
        raise ValueError(
            f"{path}: not a model written by lossbench.train (expected a dict with the keys model and spec)"
        )
    settings = RunSettings.from_dict(state["spec"])
    model = build_model(settings).to(device)
    model.load_state_dict(state["model"])
    return model.eval(), settings
