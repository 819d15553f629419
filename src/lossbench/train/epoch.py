"""One epoch of the training loop: the state a checkpoint saves (:class:`Progress`), the live objects of a run
(:class:`_Job`), training the epoch's remaining batches and ending the epoch with its validation."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lossbench.core.seeding import SeededSampler, group_batches
from lossbench.data.valset import ImageFile
from lossbench.train.checkpoint import rng_states, save_checkpoint
from lossbench.train.live import LiveView
from lossbench.train.run_settings import RunSettings
from lossbench.train.step import NonFiniteError, _all_finite, _autocast, _step, _to_device, learning_rate_factor
from lossbench.train.stop_signals import StopSignals
from lossbench.train.validation import Scored, validate, write_curve

# The loop's one log, "lossbench.train.loop", whichever of its modules writes: a run's messages keep their name.
log = logging.getLogger("lossbench.train.loop")


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

    settings: RunSettings
    device: torch.device
    dataset: Any
    model: nn.Module
    forward: nn.Module  # ``model``, or torch.compile's module sharing its parameters
    loss_fn: nn.Module
    parameters: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    checkpoint_dir: Path
    metrics: Scored = field(default_factory=dict)
    #: Steps between the checks of gradients and weights (``trainer.finite_check_every``; 1 with ``nonfinite: skip``).
    finite_check_every: int = 1
    state: Progress = field(default_factory=Progress)

    def checkpoint(self) -> Path:
        """Write a checkpoint of the run as it stands, once its weights are checked finite.

        Raises:
            NonFiniteError: non-finite weights, from a step after the last check; no checkpoint is written, so the
                last one on disk is good.
        """
        if not _all_finite(self.parameters):
            raise NonFiniteError(
                f"non-finite weights before the checkpoint at step {self.state.step} (gradients and weights are"
                f" checked every {self.finite_check_every} steps, trainer.finite_check_every); stopped, the last good"
                f" checkpoint is kept in {self.checkpoint_dir}; lower losses.{self.settings.loss.name}.lr?"
            )
        return save_checkpoint(
            self.checkpoint_dir,
            {
                "spec": self.settings.to_dict(),
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
            list(SeededSampler(len(self.dataset), self.settings.seed, epoch)),
            self.dataset.batch_key,
            self.settings.training.batch_size,
        )


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
    settings, state = job.settings, job.state
    started = time.perf_counter()
    for raw in loader:
        for group in job.optimizer.param_groups:
            group["lr"] = settings.lr * learning_rate_factor(settings.trainer.schedule, state.step, total_steps)
        # The dataset finishes its batch on the device (the MRI k-space transforms run there).
        degraded, clean = job.dataset.finish_batch(raw, job.device)
        batch = (_to_device(degraded, job.device, settings.trainer), clean)
        # Skipping a batch needs its gradients checked; stopping can wait for the next check or checkpoint.
        check = settings.trainer.nonfinite == "skip" or (state.step + 1) % job.finite_check_every == 0
        value, problem = _step(
            job.forward,
            job.loss_fn,
            job.optimizer,
            job.parameters,
            batch,
            _autocast(job.device, settings.trainer),
            check,
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
                f" {job.checkpoint_dir}; lower losses.{job.settings.loss.name}.lr?"
            )
        if job.settings.trainer.nonfinite == "stop":
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
        job.model, job.loss_fn, valset, job.device, job.settings.training.val_images, job.settings.trainer, job.metrics
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
