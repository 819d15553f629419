"""Validation of the training loop: the validation images' sizes checked up front, the loss, PSNR and metrics at
each epoch's end, and the curve of them written as CSV."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lossbench import models
from lossbench.core.io import CRLF, write_rows
from lossbench.core.specs import MetricSpec
from lossbench.data.valset import ImageFile
from lossbench.metrics import compute_spec
from lossbench.metrics.pixel import psnr
from lossbench.train.run_settings import Trainer
from lossbench.train.step import _to_device

CURVE_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_psnr", "skipped", "seconds"]
#: Prefix of the curve's column of a validation metric (``val_flip``): the metrics at every validation
#: show whether a loss still gains on its own metric when training stops (the own-metric race figure).
METRIC_COLUMN = "val_{}"

#: The metrics a training scores at every validation: name → (its spec, its parameters).
Scored = Mapping[str, tuple[MetricSpec, Mapping[str, Any]]]


def _check_validation_sizes(valset: ImageFile, limit: int | None, model: Mapping[str, Any], metrics: Scored) -> None:
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
        for metric, _ in metrics.values():
            reason = metric.too_small(min(height, width))
            if reason is not None:
                raise ValueError(
                    f"{valset.path}: validation image {image_id!r} is {width}×{height}, too small for {reason} (the"
                    " configuration's metrics are scored at every validation)"
                )


@torch.no_grad()
def validate(
    model: nn.Module,
    loss_fn: nn.Module,
    valset: ImageFile,
    device: torch.device,
    limit: int | None,
    trainer: Trainer,
    metrics: Scored | None = None,
) -> dict[str, float]:
    """Mean loss, PSNR and ``metrics`` over the first ``limit`` validation images (all if None), one at a time.

    Args:
        metrics: Metric name → its spec and parameters (:func:`lossbench.pipeline.job_settings.validation_metrics`),
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
        # In float32, as inference runs the trained model: the curve's values are those the tables will show.
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
                {name: scored for name, scored in (metrics or {}).items() if METRIC_COLUMN.format(name) not in values},
            )
        )
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value
    model.train()
    return {name: total / len(images) for name, total in sums.items()}


def _metric_values(output: torch.Tensor, target: torch.Tensor, metrics: Scored) -> dict[str, float]:
    # Building a metric's network (LPIPS) draws initial weights from torch's global generator: forked,
    # so that the training's random stream, and with it the weights, stay those of a run without metrics.
    with torch.random.fork_rng(devices=[]):
        return {
            METRIC_COLUMN.format(name): float(compute_spec(metric, output, target, **params)[0])
            for name, (metric, params) in metrics.items()
        }


def write_curve(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the per-epoch curve as CSV, atomically (:func:`lossbench.core.io.write_rows`): a reader sees whole epochs.
    Its lines end in the csv module's ``\r\n``, as curves have always been written.

    Columns: :data:`CURVE_COLUMNS`, then the validation metrics' (``val_<metric>``) in the order
    they first appear; an epoch without a metric (validated before a resume that added it) leaves
    its cell empty.
    """
    extra = [key for key in dict.fromkeys(key for row in rows for key in row) if key not in CURVE_COLUMNS]
    write_rows(path, rows, [*CURVE_COLUMNS[:5], *extra, *CURVE_COLUMNS[5:]], terminator=CRLF, atomic=True)
