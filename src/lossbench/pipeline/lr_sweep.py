"""Learning-rate sweep: short runs per loss over a grid, and the rate with the lowest validation loss.

The thesis chose its learning rates by "trial-and-error" (§5.1, §8). ``snakemake lr_sweep_<task>``
trains every loss for ``lr_sweep.epochs`` epochs at each rate of ``lr_sweep.grid`` and writes
``results/lr_sweep/<task>.yaml``, ``{task: {loss: lr}}``, which the configuration key
``learning_rates_file`` feeds back into the main training.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from lossbench.core.io import read_rows
from lossbench.pipeline.job_settings import run_settings
from lossbench.registry import Registry
from lossbench.train.run_settings import RunSettings


def sweep_settings(
    config: dict[str, Any], task: str, loss: str, lr: float, registry: Registry | None = None
) -> RunSettings:
    """The run settings of one sweep run: the first seed, the sweep's epochs, learning rate ``lr`` (``registry``: see
    :func:`~lossbench.pipeline.job_settings.run_settings`)."""
    settings = run_settings(config, task, loss, config["seeds"][0], registry)
    return replace(settings, lr=float(lr), training=replace(settings.training, epochs=config["lr_sweep"]["epochs"]))


def final_validation_loss(curve_path: str | Path) -> float:
    """Validation loss after the last epoch of a ``curve.csv``."""
    return float(read_rows(curve_path)[-1]["val_loss"])


def choose(results: dict[str, dict[float, float | None]], task: str) -> dict[str, float]:
    """Loss → the learning rate of its lowest finite final validation loss (None: the run diverged).

    Raises:
        ValueError: naming the task and loss when every rate of a loss diverged.
    """
    chosen = {}
    for loss, by_lr in results.items():
        finite = {lr: value for lr, value in by_lr.items() if value is not None and math.isfinite(value)}
        if not finite:
            raise ValueError(
                f"lr_sweep: {task}/{loss}: every learning rate of the grid {sorted(by_lr)} diverged; add smaller ones"
                " to lr_sweep.grid"
            )
        chosen[loss] = min(finite, key=finite.get)
    return chosen


def write_choice(task: str, results: dict[str, dict[float, float | None]], path: str | Path) -> dict[str, float]:
    """Write ``{task: {loss: lr}}`` to ``path``, each run's final validation loss as a comment above it."""
    chosen = choose(results, task)
    lines = [f"# Learning-rate sweep of {task}: final validation loss per rate (None: diverged); the lowest is chosen."]
    for loss, by_lr in results.items():
        lines.append(
            f"#   {loss}: "
            + ", ".join(
                f"{lr:g} → {value:.6g}" if value is not None else f"{lr:g} → None"
                for lr, value in sorted(by_lr.items())
            )
        )
    Path(path).write_text("\n".join(lines) + "\n" + yaml.safe_dump({task: chosen}, sort_keys=False))
    return chosen
