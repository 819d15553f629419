"""Kinds ``mri_singlecoil`` and ``mri_multicoil``: reconstruction of undersampled fastMRI knee and brain slices (thesis
§4.2; its Tables 6.3, 6.4)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lossbench.data.fastmri_ids import volume_of
from lossbench.data.mri import MRISliceDataset
from lossbench.data.taskspec import AnalysisUnit, TaskSpec, ValidationImages, counted

#: Slices of one volume are not independent: statistics average them per volume and test over volumes.
VOLUME = AnalysisUnit("volume", "volumes", volume_of, "slices")


def _slices(challenge: str, settings: Mapping[str, Any], folder: Path) -> Any:
    mask = settings["mask"]
    return MRISliceDataset(folder, challenge, mask["center_fraction"], mask["acceleration"], settings["crop"])


def validation_images(challenge: str, settings: Mapping[str, Any], val_dir: Path, seed: int) -> ValidationImages:
    """Every slice of ``val_dir``, centre-cropped, with the random mask fixed per file (``seed`` is not used: the file
    fixes it)."""
    dataset = _slices(challenge, settings, val_dir)
    ids, inputs, targets = [], [], []
    for index in range(len(dataset)):
        sample_id, masked, target = dataset.validation_item(index)
        ids.append(sample_id)
        inputs.append(np.asarray(masked))
        targets.append(np.asarray(target))
    return ValidationImages(
        ids,
        inputs,
        targets,
        {"acceleration": settings["mask"]["acceleration"], "center_fraction": settings["mask"]["center_fraction"]},
    )


def check(task: str, settings: Mapping[str, Any]) -> str | None:
    """The undersampling mask against its acceleration, and synthetic volumes against their preset and the crop."""
    mask = settings["mask"]
    if mask["center_fraction"] * mask["acceleration"] > 1:
        return (
            f"mask.center_fraction: {mask['center_fraction']} exceeds 1/acceleration = {1 / mask['acceleration']:.4g}:"
            f" the fully sampled centre alone would be more than the {mask['acceleration']}× acceleration allows"
        )
    data = settings["data"]
    if data["source"] != "synthetic":
        return None
    if data["preset"] == "realistic" and data["matrix"] != 320:
        return f"data.matrix: {data['matrix']}, but the realistic preset has fastMRI's matrix of 320"
    if settings["crop"] > data["matrix"]:
        return (
            f"crop: {settings['crop']} is larger than the synthetic {data['matrix']}×{data['matrix']} images"
            f" (tasks.{task}.data.matrix)"
        )
    return None


def data_description(anatomy: str, settings: Mapping[str, Any]) -> str | None:
    """The validation volumes when they are synthetic rather than fastMRI's."""
    data = settings["data"]
    if data["source"] != "synthetic":
        return None
    return (
        f"synthetic fastMRI-format {anatomy} volumes ({counted(data['val']['volumes'], 'volumes')} ×"
        f" {counted(data['val']['slices'], 'slices')}), not fastMRI's"
    )


def _spec(challenge: str, anatomy: str, table: str) -> TaskSpec:
    return TaskSpec(
        kind=f"mri_{challenge}",
        channels=1,
        title=f"MRI reconstruction, {challenge.replace('coil', '-coil')} {anatomy}",
        input_label="Masked",
        schema="mri_task",
        data="fastmri",
        train_dataset=partial(_slices, challenge),
        validation_images=partial(validation_images, challenge),
        crop_sized_validation=True,
        challenge=challenge,
        thesis_task=anatomy,
        thesis_table=table,
        thesis_caption=(
            f"MRI reconstruction, {challenge.replace('coil', '-coil')} {anatomy}: metrics of each model on the"
            f" validation set (thesis Table {table.removeprefix('table_').replace('_', '.')})."
        ),
        thesis_study="mri",
        check=check,
        unit=VOLUME,
        data_description=partial(data_description, anatomy),
    )


SINGLECOIL = _spec("singlecoil", "knee", "table_6_3")
MULTICOIL = _spec("multicoil", "brain", "table_6_4")
