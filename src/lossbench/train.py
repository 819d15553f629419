"""Training of one U-net with one loss on one task and seed (thesis §5.1).

Adam with the loss's learning rate; seeded, reproducible sampling; a checkpoint after every epoch
from which an interrupted job resumes; a progress bar; the loss curve as CSV.

CLI:
    python -m lossbench.train --config config.yaml --task denoise --loss l1 --seed 0 \\
        --train-dir results/data/denoise/train --valset results/data/denoise/val.h5 \\
        --out results/models/denoise/l1/seed0
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import inspect
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lossbench import losses
from lossbench.data.tasks import channels, train_dataset
from lossbench.data.valset import ImageFile
from lossbench.device import make_deterministic, select_device
from lossbench.models import UNet
from lossbench.seeding import SeededSampler

log = logging.getLogger(__name__)

CURVE_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "seconds"]


def spec_hash(spec: dict[str, Any]) -> str:
    """Short stable hash of a training spec; it names the checkpoint folder of that exact run."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def build_model(spec: dict[str, Any]) -> UNet:
    """The U-net of a training spec."""
    c = channels(spec["kind"])
    return UNet(c, c, **spec["model"])


def build_loss(spec: dict[str, Any]) -> nn.Module:
    """The loss of a training spec; losses with per-channel parameters are told the channel count."""
    params = dict(spec["loss_params"])
    if "num_channels" in inspect.signature(losses.REGISTRY[spec["loss"]]).parameters:
        params.setdefault("num_channels", channels(spec["kind"]))
    return losses.build(spec["loss"], **params)


def _save_atomic(obj: Any, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


@torch.no_grad()
def validation_loss(model: nn.Module, loss_fn: nn.Module, valset: ImageFile, device: torch.device, limit: int | None) -> float:
    """Mean loss over the first ``limit`` validation images (all if None), one image at a time."""
    model.eval()
    values = []
    for image_id in valset.ids[:limit]:
        noisy = torch.from_numpy(valset.read("input", image_id))[None].to(device)
        clean = torch.from_numpy(valset.read("target", image_id))[None].to(device)
        values.append(float(loss_fn(model(noisy), clean)))
    model.train()
    return sum(values) / len(values)


def run(
    spec: dict[str, Any],
    train_dir: str | Path,
    valset_path: str | Path,
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
) -> Path:
    """Train the model of ``spec`` and write ``model.pt`` and ``curve.csv`` into ``out_dir``.

    Args:
        spec: Training spec from :func:`lossbench.config.train_spec`.
        train_dir: Training data folder (images or fastMRI files).
        valset_path: Validation set written by :func:`lossbench.data.tasks.write_valset`.
        out_dir: Where the final weights and the curve go.
        checkpoint_dir: Where per-epoch checkpoints live; a checkpoint of the same spec is resumed.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        threads: CPU threads for torch (None: torch's default).
        progress: Show a progress bar on stderr.

    Returns:
        Path of the written ``model.pt``.
    """
    make_deterministic(spec["seed"], threads)
    target_device = select_device(device)
    out_dir, checkpoint_dir = Path(out_dir), Path(checkpoint_dir) / spec_hash(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = checkpoint_dir / "last.pt"

    dataset = train_dataset(spec["kind"], spec["data"], train_dir)
    model = build_model(spec).to(target_device)
    loss_fn = build_loss(spec).to(target_device)
    optimizer = torch.optim.Adam(list(model.parameters()) + list(loss_fn.parameters()), lr=spec["lr"])
    training = spec["training"]
    start_epoch, curve = 0, []
    if checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=target_device, weights_only=False)
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, curve = state["epoch"], state["curve"]
        log.info("resuming %s from %s after epoch %d", spec_hash(spec), checkpoint_path, start_epoch)

    log.info("training %s/%s seed %d on %s: %d samples per epoch, %d epochs, lr %g", spec["task"], spec["loss"], spec["seed"], target_device, len(dataset), training["epochs"], spec["lr"])
    steps_per_epoch = -(-len(dataset) // training["batch_size"])
    bar = tqdm(total=training["epochs"] * steps_per_epoch, initial=start_epoch * steps_per_epoch, disable=not progress, file=sys.stderr, mininterval=2.0 if sys.stderr.isatty() else 30.0, desc=f"{spec['task']}/{spec['loss']}")
    with ImageFile(valset_path) as valset:
        for epoch in range(start_epoch, training["epochs"]):
            started = time.perf_counter()
            loader = DataLoader(
                dataset,
                batch_size=training["batch_size"],
                sampler=SeededSampler(len(dataset), spec["seed"], epoch),
                num_workers=training["workers"],
                pin_memory=target_device.type == "cuda",
            )
            total, count = 0.0, 0
            for noisy, clean in loader:
                noisy = noisy.to(target_device, non_blocking=True)
                clean = clean.to(target_device, non_blocking=True)
                loss = loss_fn(model(noisy), clean)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(noisy)
                count += len(noisy)
                bar.update()
                bar.set_postfix(loss=f"{float(loss.detach()):.4g}")
            val = validation_loss(model, loss_fn, valset, target_device, training["val_images"])
            curve.append({"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch, "train_loss": total / count, "val_loss": val, "seconds": round(time.perf_counter() - started, 3)})
            log.info("epoch %d: train loss %.6g, validation loss %.6g", epoch + 1, total / count, val)
            _save_atomic({"epoch": epoch + 1, "model": model.state_dict(), "loss": loss_fn.state_dict(), "optimizer": optimizer.state_dict(), "curve": curve, "spec": spec}, checkpoint_path)
    bar.close()

    model_path = out_dir / "model.pt"
    _save_atomic({"spec": spec, "model": model.state_dict(), "loss": loss_fn.state_dict()}, model_path)
    write_curve(curve, out_dir / "curve.csv")
    return model_path


def write_curve(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the per-epoch loss curve as CSV (columns :data:`CURVE_COLUMNS`)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[UNet, dict[str, Any]]:
    """Load a trained ``model.pt``; returns the model in eval mode and its training spec."""
    state = torch.load(path, map_location=device, weights_only=False)
    model = build_model(state["spec"]).to(device)
    model.load_state_dict(state["model"])
    return model.eval(), state["spec"]


def main(argv: list[str] | None = None) -> None:
    from lossbench.config import load, train_spec

    parser = argparse.ArgumentParser(prog="python -m lossbench.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML configuration (e.g. config.yaml)")
    parser.add_argument("--task", required=True, choices=["denoise", "knee", "brain"])
    parser.add_argument("--loss", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-dir", required=True, help="training images or fastMRI .h5 files")
    parser.add_argument("--valset", required=True, help="validation set .h5 (lossbench.data.tasks.write_valset)")
    parser.add_argument("--out", required=True, help="output folder for model.pt and curve.csv")
    parser.add_argument("--checkpoints", help="checkpoint folder (default: OUT/checkpoints)")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda[:N] (default: from config)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load(args.config)
    if args.task not in config["tasks"]:
        parser.error(f"task {args.task!r} is not configured in {args.config}")
    if args.loss not in config["losses"]:
        parser.error(f"loss {args.loss!r} is not configured in {args.config}")
    spec = train_spec(config, args.task, args.loss, args.seed)
    run(spec, args.train_dir, args.valset, args.out, args.checkpoints or Path(args.out) / "checkpoints", args.device or config["device"], config["threads"])


if __name__ == "__main__":
    main()
