"""Kind ``rgb_denoise``: Gaussian denoising of RGB photographs (thesis §4.1, §5.1.1; its Table 6.1)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lossbench.data.denoise import DenoiseTrainDataset, open_images, validation_noise
from lossbench.data.images import list_images, read_rgb
from lossbench.data.taskspec import TaskSpec, ValidationImages, counted


def train_dataset(settings: Mapping[str, Any], train_dir: Path) -> Any:
    """Random crops with noise of σ ~ U[sigma_train]/255 (:class:`lossbench.data.denoise.DenoiseTrainDataset`)
    of the decoded photographs (rule decode_images), or of a folder or manifest of them, decoded for every crop."""
    return DenoiseTrainDataset(
        open_images(train_dir),
        crop=settings["crop"],
        sigma_range=tuple(settings["sigma_train"]),
        crops_per_image=settings["crops_per_image"],
        augment=settings["augment"],
    )


def validation_images(settings: Mapping[str, Any], val_dir: Path, seed: int) -> ValidationImages:
    """Every photograph of ``val_dir`` with Gaussian noise of ``sigma_val``/255 fixed per image by ``seed`` (unclipped,
    as the thesis's Noisy column)."""
    ids, inputs, targets = [], [], []
    for image_id, path in list_images(val_dir).items():
        clean = read_rgb(path)
        ids.append(image_id)
        inputs.append(validation_noise(clean, image_id, settings["sigma_val"], seed).transpose(2, 0, 1))
        targets.append(clean.transpose(2, 0, 1))
    return ValidationImages(ids, inputs, targets, {"sigma": float(settings["sigma_val"]), "seed": seed})


def data_description(settings: Mapping[str, Any]) -> str | None:
    """The validation photographs when they are not the thesis's Kodak (``data.source`` embedded or folder)."""
    data = settings["data"]
    if data["source"] == "embedded":
        return (
            f"{counted(len(data['val']), 'photographs')} bundled with scikit-image and matplotlib"
            f" ({', '.join(data['val'])}), not Kodak"
        )
    if data["source"] == "folder":
        return f"the photographs of {data['val_dir']}, not Kodak"
    return None


def check(task: str, settings: Mapping[str, Any]) -> str | None:
    low, high = settings["sigma_train"]
    return f"sigma_train: expected [min, max], got {settings['sigma_train']}" if low > high else None


SPEC = TaskSpec(
    kind="rgb_denoise",
    channels=3,
    title="Denoising",
    input_label="Noisy",
    schema="rgb_denoise_task",
    data="photos",
    train_dataset=train_dataset,
    validation_images=validation_images,
    thesis_task="denoise",
    thesis_table="table_6_1",
    thesis_caption="Denoising: metrics of each model on the validation set (thesis Table 6.1, ImageNet → Kodak).",
    thesis_study="denoise",
    check=check,
    data_description=data_description,
)
