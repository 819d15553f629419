"""Task kinds: the registry of their specs (:class:`lossbench.data.taskspec.TaskSpec`), training datasets and validation
sets.

A new kind is one module in :mod:`lossbench.data.kinds` declaring its spec, plus its import and its
entry in :data:`SPECS` (and its settings' entry in the configuration schema; docs/extending.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from lossbench.core.specs import lookup
from lossbench.data.images import embedded_photo_path, read_rgb, resize_max_side, write_png
from lossbench.data.kinds import mri, rgb_denoise, rgb_jpeg
from lossbench.data.taskspec import TaskSpec
from lossbench.data.valset import write_images

#: Task kind → its spec.
SPECS: dict[str, TaskSpec] = {
    spec.kind: spec for spec in (rgb_denoise.SPEC, mri.SINGLECOIL, mri.MULTICOIL, rgb_jpeg.SPEC)
}


def spec(kind: str) -> TaskSpec:
    """The spec of task kind ``kind``.

    Raises:
        ValueError: an unknown kind (one line listing the known ones; never a fall-through to another kind).
    """
    return lookup(SPECS, "task kind", kind)


def kinds() -> list[str]:
    """The registered task kinds."""
    return list(SPECS)


def default_kind(task: str) -> str | None:
    """The kind of a task named ``task`` that does not say: the thesis's tasks (denoise, knee, brain) have theirs,
    others none."""
    return next((kind for kind, task_spec in SPECS.items() if task_spec.thesis_task == task), None)


def channels(kind: str) -> int:
    """Image channels of a task of ``kind`` (raises ValueError for an unknown kind)."""
    return spec(kind).channels


def train_dataset(kind: str, data: dict[str, Any], train_dir: str | Path) -> Dataset:
    """Training dataset of a task of ``kind``, items keyed by ``(index, sample_seed)`` → (input, target), (C, H, W).

    Args:
        kind: A registered kind (:func:`kinds`).
        data: The task's settings (crop, noise range, mask, quality, ...), see ``config.run_settings``.
        train_dir: Folder of training images or an image manifest file (photographs, see
            :mod:`lossbench.data.imagenet`), or folder of fastMRI ``.h5`` files (MRI).

    Raises:
        ValueError: an unknown ``kind``.
    """
    return spec(kind).train_dataset(data, Path(train_dir))


def write_valset(kind: str, data: dict[str, Any], val_dir: str | Path, out_path: str | Path, seed: int = 0) -> int:
    """Write the validation set (degraded input and reference per image) of a task of ``kind`` to ``out_path``.

    The degradation is the kind's (:attr:`TaskSpec.validation_images`), fixed by ``seed`` where it is
    random; the file's attributes record the kind and the degradation's settings.

    Returns:
        The number of validation images.

    Raises:
        ValueError: an unknown ``kind``.
    """
    images = spec(kind).validation_images(data, Path(val_dir), seed)
    write_images(
        out_path,
        {"input": zip(images.ids, images.inputs), "target": zip(images.ids, images.targets)},
        {"kind": kind, **images.attrs},
    )
    return len(images.ids)


def prepare_embedded_photos(names: list[str], out_dir: str | Path, max_side: int | None) -> list[Path]:
    """Write bundled photographs ``names`` as PNG files into ``out_dir``, downscaled to ``max_side``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        path = out_dir / f"{name}.png"
        write_png(path, resize_max_side(read_rgb(embedded_photo_path(name)), max_side))
        written.append(path)
    return written
