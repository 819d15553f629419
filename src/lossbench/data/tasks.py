"""Per-task data: training datasets and validation-set files for denoising and the two MRI tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lossbench.data.denoise import DenoiseTrainDataset, open_images, validation_noise
from lossbench.data.images import list_images, read_rgb
from lossbench.data.valset import write_images


#: Task kind → image channels: RGB photographs for denoising, magnitude images for the fastMRI challenges.
CHANNELS = {"denoise": 3, "singlecoil": 1, "multicoil": 1}


def train_dataset(kind: str, data: dict[str, Any], train_dir: str | Path) -> Dataset:
    """Training dataset of a task, items keyed by ``(index, sample_seed)`` → (input, target), (C, H, W).

    Args:
        kind: ``denoise``, ``singlecoil`` or ``multicoil``.
        data: The task's data settings (crop, noise range, mask, ...), see ``config.train_spec``.
        train_dir: The decoded training images (denoise, the workflow's rule ``decode_images``),
            or a folder of them or an image manifest file (:mod:`lossbench.data.imagenet`), decoded
            for every crop; or a folder of fastMRI ``.h5`` files (MRI).

    Raises:
        ValueError: an unknown ``kind``.
    """
    channels(kind)
    if kind == "denoise":
        return DenoiseTrainDataset(
            open_images(train_dir),
            crop=data["crop"],
            sigma_range=tuple(data["sigma_train"]),
            crops_per_image=data["crops_per_image"],
            augment=data["augment"],
        )
    from lossbench.data.mri import MRISliceDataset

    return MRISliceDataset(train_dir, kind, data["mask"]["center_fraction"], data["mask"]["acceleration"], data["crop"])


def channels(kind: str) -> int:
    """Image channels of a task of ``kind``: RGB for denoising, magnitude images for MRI.

    Raises:
        ValueError: an unknown kind (never a silent fall-through to one of the others).
    """
    if kind not in CHANNELS:
        raise ValueError(f"unknown task kind {kind!r}: expected one of {', '.join(CHANNELS)}")
    return CHANNELS[kind]


def write_valset(kind: str, data: dict[str, Any], val_dir: str | Path, out_path: str | Path, seed: int = 0) -> int:
    """Write a task's validation set (degraded input and reference per image) to ``out_path``.

    Denoising adds Gaussian noise of ``sigma_val``/255 fixed per image by ``seed`` (unclipped, as the
    thesis's Noisy column); MRI applies a random mask fixed per file.

    Returns:
        The number of validation images.

    Raises:
        ValueError: an unknown ``kind``.
    """
    channels(kind)
    if kind == "denoise":
        ids, inputs, targets = [], [], []
        for image_id, path in list_images(val_dir).items():
            clean = read_rgb(path)
            noisy = validation_noise(clean, image_id, data["sigma_val"], seed)
            ids.append(image_id)
            inputs.append(noisy.transpose(2, 0, 1))
            targets.append(clean.transpose(2, 0, 1))
        attrs = {"kind": kind, "sigma": float(data["sigma_val"]), "seed": seed}
    else:
        from lossbench.data.mri import MRISliceDataset

        dataset = MRISliceDataset(val_dir, kind, data["mask"]["center_fraction"], data["mask"]["acceleration"], data["crop"])
        ids, inputs, targets = [], [], []
        for index in range(len(dataset)):
            sample_id, masked, target = dataset.validation_item(index)
            ids.append(sample_id)
            inputs.append(np.asarray(masked))
            targets.append(np.asarray(target))
        attrs = {"kind": kind, "acceleration": data["mask"]["acceleration"], "center_fraction": data["mask"]["center_fraction"]}
    write_images(out_path, {"input": zip(ids, inputs), "target": zip(ids, targets)}, attrs)
    return len(ids)


def prepare_embedded_photos(names: list[str], out_dir: str | Path, max_side: int | None) -> list[Path]:
    """Write bundled photographs ``names`` as PNG files into ``out_dir``, downscaled to ``max_side``."""
    from lossbench.data.images import embedded_photo_path, resize_max_side, write_png

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        path = out_dir / f"{name}.png"
        write_png(path, resize_max_side(read_rgb(embedded_photo_path(name)), max_side))
        written.append(path)
    return written
