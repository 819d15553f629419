"""Evaluation: per-image metrics of a model's outputs (or of the degraded inputs) against the references.

Model outputs are scored clamped to [0, 1], as an 8-bit image of them (what figures and the user
study show) would hold them; the degraded inputs are scored as they are, so that the Noisy column
keeps the thesis's definition (PSNR 20.17 dB for sigma = 25 is that of unclamped noise).

CLI:
    python -m lossbench.evaluate VALSET.h5 [--outputs OUTPUTS.h5] --metrics l1 l2 psnr --out metrics.csv
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lossbench import metrics
from lossbench.core.io import markdown_table, write_metrics
from lossbench.core.specs import Setting
from lossbench.data.fastmri_ids import volume_of
from lossbench.data.tasks import channels
from lossbench.data.valset import ImageFile
from lossbench.flip import flip_ppd
from lossbench.registry import PACKAGE, Registry

log = logging.getLogger(__name__)


def clamp_output(image: np.ndarray) -> np.ndarray:
    """A model's (C, H, W) output clamped to [0, 1], the range a displayed or saved image can hold."""
    return np.clip(image, 0.0, 1.0)


def metric_params(
    name: str, kind: str, evaluation: dict[str, Any] | None = None, registry: Registry = PACKAGE
) -> dict[str, Any]:
    """Options of metric ``name`` of ``registry`` for a task of ``kind``, as its spec gives them (FLIP's viewing
    conditions and grayscale mode, LPIPS's trunk)."""
    return registry.metric(name).params(Setting(channels(kind), evaluation or {}))


def evaluate(
    valset_path: str | Path,
    outputs_path: str | Path | None,
    metric_names: list[str],
    evaluation: dict[str, Any] | None = None,
    registry: Registry = PACKAGE,
) -> list[dict[str, Any]]:
    """Per-image metric values.

    Args:
        valset_path: Validation set (groups ``input`` and ``target``).
        outputs_path: Model outputs (group ``output``); None evaluates the degraded inputs themselves.
        metric_names: Metrics to compute, names in ``registry``.
        evaluation: The configuration's ``evaluation`` section.
        registry: The configuration's losses and metrics (:class:`lossbench.registry.Registry`).

    Returns:
        One row per image: ``{"image": id, metric: value, ...}``.
    """
    rows = []
    with ImageFile(valset_path) as valset:
        kind = str(valset.attrs["kind"])
        outputs = ImageFile(outputs_path) if outputs_path is not None else None
        try:
            if outputs is not None and outputs.ids != valset.ids:
                raise ValueError(f"{outputs_path}: image ids differ from those of {valset_path}")
            for image_id in valset.ids:
                target = torch.from_numpy(valset.read("target", image_id))[None]
                restored = (
                    clamp_output(outputs.read("output", image_id))
                    if outputs is not None
                    else valset.read("input", image_id)
                )
                restored = torch.from_numpy(restored)[None]
                row = {"image": image_id}
                for name in metric_names:
                    params = metric_params(name, kind, evaluation, registry)
                    row[name] = float(registry.compute(name, restored, target, **params)[0])
                rows.append(row)
        finally:
            if outputs is not None:
                outputs.close()
    return rows


def fastmri_volume_metrics(valset_path: str | Path, outputs_path: str | Path | None) -> list[dict[str, Any]]:
    """fastMRI's own per-volume NMSE, PSNR and SSIM (``fastmri.evaluate``), as its leaderboard computes them.

    Slices are grouped into volumes by their id (``<file>_s<slice>``); PSNR and SSIM use the volume's
    maximum as data range, as fastMRI's ``evaluate.py`` does.

    Returns:
        One row per volume: ``{"volume": stem, "nmse": ..., "psnr": ..., "ssim": ...}``.
    """
    # Deferred: fastMRI's package (and its imports) only for the MRI tasks' fastMRI metrics.
    from fastmri import evaluate as fastmri_evaluate

    rows = []
    with ImageFile(valset_path) as valset:
        outputs = ImageFile(outputs_path) if outputs_path is not None else None
        try:
            volumes: dict[str, list[str]] = {}
            for image_id in valset.ids:
                volumes.setdefault(volume_of(image_id), []).append(image_id)
            for volume, ids in volumes.items():
                target = np.stack([valset.read("target", i)[0] for i in ids]).astype(np.float64)
                if outputs is not None:
                    restored = np.stack([clamp_output(outputs.read("output", i))[0] for i in ids]).astype(np.float64)
                else:
                    restored = np.stack([valset.read("input", i)[0] for i in ids]).astype(np.float64)
                maxval = target.max()
                rows.append(
                    {
                        "volume": volume,
                        "nmse": float(fastmri_evaluate.nmse(target, restored)),
                        "psnr": float(fastmri_evaluate.psnr(target, restored, maxval)),
                        "ssim": float(fastmri_evaluate.ssim(target, restored, maxval)[0]),
                    }
                )
        finally:
            if outputs is not None:
                outputs.close()
    return rows


#: FLIP's grayscale modes compared by :func:`flip_gray_modes` (thesis §3.2 read three ways).
GRAY_MODES = ("gray_thesis", "gray_lab", "gray_replicated")


def _mean_flip(valset: ImageFile, outputs: ImageFile | None, mode: str, ppd: float) -> float:
    values = []
    for image_id in valset.ids:
        target = torch.from_numpy(valset.read("target", image_id))[None]
        restored = (
            clamp_output(outputs.read("output", image_id)) if outputs is not None else valset.read("input", image_id)
        )
        values.append(float(metrics.compute("flip", torch.from_numpy(restored)[None], target, mode=mode, ppd=ppd)[0]))
    return sum(values) / len(values)


def flip_gray_modes(
    valsets: dict[str, str | Path],
    outputs: dict[str, dict[str, list[str | Path]]],
    evaluation: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The FLIP row of the MRI tables under each grayscale mode of :data:`GRAY_MODES`.

    Args:
        valsets: MRI task → its validation set (grayscale, linear values in [0, 1]).
        outputs: MRI task → loss → its models' outputs, one file per seed.
        evaluation: The configuration's ``evaluation`` section (FLIP's viewing conditions).

    Returns:
        One row per (task, mode): ``{"task", "mode", "input": mean FLIP of the degraded inputs,
        <loss>: mean over seeds of the mean FLIP over images, ...}``.
    """
    ppd = flip_ppd(evaluation or {})
    rows = []
    for task, valset_path in valsets.items():
        with ImageFile(valset_path) as valset:
            if channels(str(valset.attrs["kind"])) != 1:
                raise ValueError(
                    f"{valset_path}: flip_gray_modes needs a grayscale validation set, got one of"
                    f" {valset.attrs['kind']} ({channels(str(valset.attrs['kind']))} channels)"
                )
            for mode in GRAY_MODES:
                row: dict[str, Any] = {"task": task, "mode": mode, "input": _mean_flip(valset, None, mode, ppd)}
                for loss, paths in outputs.get(task, {}).items():
                    per_seed = []
                    for path in paths:
                        with ImageFile(path) as output:
                            if output.ids != valset.ids:
                                raise ValueError(f"{path}: image ids differ from those of {valset_path}")
                            per_seed.append(_mean_flip(valset, output, mode, ppd))
                    row[loss] = sum(per_seed) / len(per_seed)
                rows.append(row)
    return rows


def flip_gray_modes_markdown(
    rows: list[dict[str, Any]], input_labels: dict[str, str], registry: Registry = PACKAGE
) -> str:
    """:func:`flip_gray_modes` rows as one Markdown table per task, the best model per row in bold; ``input_labels``:
    task → label of its degraded input (``Masked``); ``registry`` labels the losses."""
    lines = []
    for task in dict.fromkeys(row["task"] for row in rows):
        task_rows = [row for row in rows if row["task"] == task]
        losses = [key for key in task_rows[0] if key not in ("task", "mode", "input")]
        header = ["Mode", input_labels[task], *(registry.loss_label(loss) for loss in losses)]
        body = []
        for row in task_rows:
            best = min((row[loss] for loss in losses), default=None)
            shown = [f"**{row[loss]:.4f}**" if row[loss] == best else f"{row[loss]:.4f}" for loss in losses]
            body.append([row["mode"], f"{row['input']:.4f}", *shown])
        title = f"**FLIP of the {task} models under each grayscale reading of thesis §3.2** (lower is better)."
        lines += [title, "", markdown_table(header, body), ""]
    lines.append(
        "gray_thesis: linear input, filtered achromatic Y, no L*a*b*, no points (the project's reading); gray_lab: the"
        " same with L* of the filtered value; gray_replicated: the grey repeated into sRGB, what NVIDIA's"
        " flip-evaluator computes."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench.evaluate", description="Per-image metrics of restored images."
    )
    parser.add_argument("valset", help="validation set .h5")
    parser.add_argument("--outputs", help="model outputs .h5 (default: evaluate the degraded inputs)")
    parser.add_argument("--metrics", nargs="+", default=metrics.names(), choices=metrics.names())
    parser.add_argument("--out", required=True, help="CSV file to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    write_metrics(args.out, evaluate(args.valset, args.outputs, args.metrics))


if __name__ == "__main__":
    main()
