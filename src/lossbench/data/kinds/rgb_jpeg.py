"""Kind ``rgb_jpeg``: JPEG deblocking of RGB photographs (Zhao, Gallo, Frosio & Kautz 2017, "Loss Functions for Image
Restoration with Neural Networks", one of their tasks).

The input is the photograph JPEG-compressed at the configured ``quality`` by Pillow (its defaults
otherwise: the standard IJG quantisation tables scaled by the quality, 4:2:0 chroma subsampling),
the target the original. It uses the same photographs as denoising, through the same data rules
(``data_from: denoise`` reads the denoising task's folders). Not in the thesis: its table is
``table_<task>``, without a comparison with published values.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lossbench.data.denoise import DecodedImages, DenoiseTrainDataset, ImageFiles, open_images, unit_float
from lossbench.data.h5files import RawBatch
from lossbench.data.images import list_images, read_rgb
from lossbench.data.taskspec import TaskSpec, ValidationImages


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` (3, H, W) in [0, 1] through an 8-bit JPEG of ``quality`` (1-95) and back, (3, H, W) float32 in [0,
    1]."""
    pixels = np.clip(np.rint(np.asarray(image).transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0


class JPEGTrainDataset(DenoiseTrainDataset):
    """Random crops of photographs, each JPEG-compressed at ``quality`` → (compressed, original), each (3, crop, crop).

    The crops, augmentations and reads are those of the denoising dataset (so the same
    ``(index, sample_seed)`` gives the same crop); the crop is compressed after augmentation, so
    that its 8 × 8 blocks start at its corner, as those of a compressed validation photograph.
    The compression runs in the DataLoader worker: an item is a dict of ``degraded`` and
    ``clean``, each (3, crop, crop) float32.

    Args:
        images, crop, crops_per_image, augment: As for :class:`DenoiseTrainDataset`.
        quality: JPEG quality, 1-95.
    """

    def __init__(
        self,
        images: DecodedImages | ImageFiles,
        crop: int,
        quality: int,
        crops_per_image: int = 1,
        augment: bool = True,
    ):
        super().__init__(images, crop, (0.0, 0.0), crops_per_image, augment)
        self.quality = quality

    def __getitem__(self, key: tuple[int, int]) -> dict[str, np.ndarray]:
        stored, _ = self.clean_crop(key)
        clean = unit_float(stored)
        return {"degraded": jpeg_compress(clean, self.quality), "clean": clean}

    @staticmethod
    def finish_batch(batch: RawBatch, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch on ``device`` as (compressed, original), each (N, 3, crop, crop) float32."""
        degraded, clean = (torch.as_tensor(batch[key]).to(device, non_blocking=True) for key in ("degraded", "clean"))
        return degraded, clean


def train_dataset(settings: Mapping[str, Any], train_dir: Path) -> JPEGTrainDataset:
    return JPEGTrainDataset(
        open_images(train_dir), settings["crop"], settings["quality"], settings["crops_per_image"], settings["augment"]
    )


def validation_images(settings: Mapping[str, Any], val_dir: Path, seed: int) -> ValidationImages:
    """Every photograph of ``val_dir`` JPEG-compressed whole at ``quality`` (deterministic: ``seed`` is not used)."""
    ids, inputs, targets = [], [], []
    for image_id, path in list_images(val_dir).items():
        clean = read_rgb(path).transpose(2, 0, 1)
        ids.append(image_id)
        inputs.append(jpeg_compress(clean, settings["quality"]))
        targets.append(np.ascontiguousarray(clean, dtype=np.float32))
    return ValidationImages(ids, inputs, targets, {"quality": int(settings["quality"])})


SPEC = TaskSpec(
    kind="rgb_jpeg",
    channels=3,
    title="JPEG deblocking",
    input_label="JPEG",
    schema="rgb_jpeg_task",
    data="photos",
    train_dataset=train_dataset,
    validation_images=validation_images,
    caption=(
        "{title} at quality {quality} (Zhao et al. 2017's task): metrics of each model on the validation set (task"
        " {task}; not in the thesis)."
    ),
)
