"""Evaluation: per-image metrics of a model's outputs (or of the degraded inputs) against the references.

CLI:
    python -m lossbench.evaluate VALSET.h5 [--outputs OUTPUTS.h5] --metrics l1 l2 psnr --out metrics.csv
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path
from typing import Any

import torch

from lossbench import metrics
from lossbench.data.valset import ImageFile

log = logging.getLogger(__name__)


def metric_params(name: str, kind: str, evaluation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Options of metric ``name`` for a task of ``kind`` (FLIP's grayscale mode for MRI, LPIPS's trunk)."""
    evaluation = evaluation or {}
    if name == "flip" and kind != "denoise":
        return {"mode": evaluation.get("flip_gray_mode", "gray_thesis")}
    if name == "lpips":
        return {"trunk": evaluation.get("lpips_trunk", "auto"), "weights_path": evaluation.get("lpips_weights")}
    return {}


def evaluate(valset_path: str | Path, outputs_path: str | Path | None, metric_names: list[str], evaluation: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per-image metric values.

    Args:
        valset_path: Validation set (groups ``input`` and ``target``).
        outputs_path: Model outputs (group ``output``); None evaluates the degraded inputs themselves.
        metric_names: Metrics to compute, see :func:`lossbench.metrics.names`.
        evaluation: The configuration's ``evaluation`` section.

    Returns:
        One row per image: ``{"image": id, metric: value, ...}``.
    """
    rows = []
    with ImageFile(valset_path) as valset:
        kind = str(valset.attrs.get("kind", "denoise"))
        outputs = ImageFile(outputs_path) if outputs_path is not None else None
        try:
            if outputs is not None and outputs.ids != valset.ids:
                raise ValueError(f"{outputs_path}: image ids differ from those of {valset_path}")
            for image_id in valset.ids:
                target = torch.from_numpy(valset.read("target", image_id))[None]
                restored = outputs.read("output", image_id) if outputs is not None else valset.read("input", image_id)
                restored = torch.from_numpy(restored)[None]
                row = {"image": image_id}
                for name in metric_names:
                    row[name] = float(metrics.compute(name, restored, target, **metric_params(name, kind, evaluation))[0])
                rows.append(row)
        finally:
            if outputs is not None:
                outputs.close()
    return rows


FASTMRI_METRICS = ("nmse", "psnr", "ssim")


def fastmri_volume_metrics(valset_path: str | Path, outputs_path: str | Path | None) -> list[dict[str, Any]]:
    """fastMRI's own per-volume NMSE, PSNR and SSIM (``fastmri.evaluate``), as its leaderboard computes them.

    Slices are grouped into volumes by their id (``<file>_s<slice>``); PSNR and SSIM use the volume's
    maximum as data range, as fastMRI's ``evaluate.py`` does.

    Returns:
        One row per volume: ``{"volume": stem, "nmse": ..., "psnr": ..., "ssim": ...}``.
    """
    import numpy as np
    from fastmri import evaluate as fastmri_evaluate

    rows = []
    with ImageFile(valset_path) as valset:
        outputs = ImageFile(outputs_path) if outputs_path is not None else None
        try:
            volumes: dict[str, list[str]] = {}
            for image_id in valset.ids:
                volumes.setdefault(image_id.rsplit("_s", 1)[0], []).append(image_id)
            for volume, ids in volumes.items():
                target = np.stack([valset.read("target", i)[0] for i in ids]).astype(np.float64)
                group, source = ("output", outputs) if outputs is not None else ("input", valset)
                restored = np.stack([source.read(group, i)[0] for i in ids]).astype(np.float64)
                maxval = target.max()
                rows.append({
                    "volume": volume,
                    "nmse": float(fastmri_evaluate.nmse(target, restored)),
                    "psnr": float(fastmri_evaluate.psnr(target, restored, maxval)),
                    "ssim": float(fastmri_evaluate.ssim(target, restored, maxval)[0]),
                })
        finally:
            if outputs is not None:
                outputs.close()
    return rows


def write_csv(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Write per-image rows; floats with 8 significant digits so that reruns compare byte for byte."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: f"{value:.8g}" if isinstance(value, float) else value for key, value in row.items()})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lossbench.evaluate", description="Per-image metrics of restored images.")
    parser.add_argument("valset", help="validation set .h5")
    parser.add_argument("--outputs", help="model outputs .h5 (default: evaluate the degraded inputs)")
    parser.add_argument("--metrics", nargs="+", default=metrics.names(), choices=metrics.names())
    parser.add_argument("--out", required=True, help="CSV file to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    write_csv(evaluate(args.valset, args.outputs, args.metrics), args.out)


if __name__ == "__main__":
    main()
