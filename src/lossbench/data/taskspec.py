"""Task-kind specs: what the rest of the project needs to know about a kind of task, declared beside its data code.

A task of the configuration (``tasks.<name>``) has a kind (``tasks.<name>.kind``); each kind's module
in :mod:`lossbench.data.kinds` declares a :class:`TaskSpec`, and :mod:`lossbench.data.tasks` collects
them. Configuration checks, the workflow's rules, tables and evaluation read channels, data builders,
labels and thesis tables from the specs, so a new kind is one module, its import and entry in
:data:`lossbench.data.tasks.SPECS` and its settings in the configuration schema (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


class ValidationImages(NamedTuple):
    """A task's validation set before it is written: ids, degraded inputs and references, each (C, H, W) float32."""

    ids: list[str]
    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    attrs: dict[str, Any]


def _valid(task: str, settings: Mapping[str, Any]) -> str | None:
    return None


def _itself(image_id: str) -> str:
    return image_id


def counted(n: int, plural: str) -> str:
    """``3 volumes``, ``1 volume``: a count with its noun (regular plurals in -s)."""
    return f"{n} {plural.removesuffix('s') if n == 1 else plural}"


def _thesis_data(settings: Mapping[str, Any]) -> str | None:
    return None


@dataclass(frozen=True)
class AnalysisUnit:
    """What a statistic counts as one independent observation of a task's validation set.

    Slices of one MRI volume share its anatomy, contrast and noise, so a model that does well on one
    slice tends to do well on its neighbours: counting slices as independent images makes every
    test over-confident (docs/statistics.md). Statistics average a model's per-image values within
    each unit and test over units.

    Attributes:
        name: One unit (``image``, ``volume``), for captions and notes.
        plural: Several of them.
        of: The unit of a per-image id (a slice id ``<volume>_s<NNN>`` → ``<volume>``).
        members: What the per-image rows of one unit are, plural (``slices`` of a volume).
    """

    name: str = "image"
    plural: str = "images"
    of: Callable[[str], str] = _itself
    members: str = "images"

    def count(self, n: int) -> str:
        """``3 volumes``, ``1 image``."""
        return counted(n, self.plural)


#: Each validation image is its own unit (photographs).
PER_IMAGE = AnalysisUnit()


@dataclass(frozen=True)
class TaskSpec:
    """A kind of task.

    Attributes:
        kind: Registry and configuration name (``tasks.<name>.kind``).
        channels: Image channels C of its inputs, targets and network, 1 (grayscale) or 3 (RGB);
            losses and metrics take their task-dependent defaults from it (FLIP's gray mode for 1).
        title: What the task is, for captions (``Denoising``).
        input_label: Column label of the degraded input in its tables (``Noisy``).
        schema: The entry of the configuration schema's ``definitions`` that describes a task of this kind.
        data: The data rules of ``workflow/rules/data.smk`` that provide its files: ``photos``
            (embedded photographs, a folder of images, or ImageNet with Kodak) or ``fastmri``
            (synthetic or real fastMRI volumes).
        train_dataset: ``train_dataset(settings, train_dir)``: the training dataset, items keyed by
            ``(index, sample_seed)`` (see :class:`lossbench.core.seeding.SeededSampler`); ``settings`` is
            the task's configuration without ``data`` and ``training`` (``config.task_data``).
        validation_images: ``validation_images(settings, val_dir, seed)``: the validation set,
            degradations fixed by ``seed``.
        crop_sized_validation: Whether its validation images are ``crop`` × ``crop`` (every metric
            must fit the crop), rather than whole photographs.
        challenge: fastMRI challenge of its files (``singlecoil``, ``multicoil``); None for photographs.
        thesis_task: The thesis's name of its task: a task of that name has this kind unless it says otherwise.
        thesis_table: The thesis's table of the thesis's task; a task without one gets ``table_<task>``
            and no comparison with the thesis.
        thesis_caption: Caption of the thesis's table.
        thesis_study: The thesis's user study that showed images of this kind (``lossbench.userstudy.counts``).
        caption: Caption of the table of another task, formatted with ``title``, ``task`` and the
            task's settings.
        check: ``check(task, settings)``: why a task's settings are invalid, in one line from the
            key below ``tasks.<task>`` on (``sigma_train: ...``), or None; ``settings`` are the task's
            (schema defaults filled in) with ``data`` that of its ``data_from`` task where it has one.
            :meth:`check_config` asks it when the configuration is loaded. The pipeline checks what
            concerns other sections or tasks itself (``data_from``, data folders and embedded photos,
            each metric against the crop, the channels of each loss and metric).
        unit: The statistics' unit of analysis (:class:`AnalysisUnit`): the image, or the volume
            whose slices the validation images are.
        data_description: What the task's data are when they are not the thesis's (``the 3 embedded
            demo photographs ...``), for captions; None for the thesis's data (or any real data).
    """

    kind: str
    channels: int
    title: str
    input_label: str
    schema: str
    data: str
    train_dataset: Callable[[Mapping[str, Any], Path], Any]
    validation_images: Callable[[Mapping[str, Any], Path, int], ValidationImages]
    crop_sized_validation: bool = False
    challenge: str | None = None
    thesis_task: str | None = None
    thesis_table: str | None = None
    thesis_caption: str | None = None
    thesis_study: str | None = None
    caption: str = "{title}: metrics of each model on the validation set (task {task}; not in the thesis)."
    check: Callable[[str, Mapping[str, Any]], str | None] = _valid
    unit: AnalysisUnit = PER_IMAGE
    data_description: Callable[[Mapping[str, Any]], str | None] = _thesis_data

    def check_config(self, task: str, settings: Mapping[str, Any]) -> str | None:
        """Why the settings of ``task``, a task of this kind, are invalid, one line from ``tasks.<task>`` on
        (``tasks.knee.mask.center_fraction: ...``), or None: :attr:`check` (``settings`` as there). Called when the
        configuration is loaded."""
        problem = self.check(task, settings)
        return None if problem is None else f"tasks.{task}.{problem}"

    def is_thesis_task(self, task: str) -> bool:
        """Whether ``task`` is the thesis's task of this kind, which has the thesis's table."""
        return task == self.thesis_task and self.thesis_table is not None

    def table(self, task: str) -> str:
        """Name of the table of ``task``: the thesis's for the thesis's task, else ``table_<task>``."""
        return self.thesis_table if self.is_thesis_task(task) else f"table_{task}"

    def table_caption(self, task: str, settings: Mapping[str, Any]) -> str:
        """The caption of the table of ``task`` with ``settings`` (its configuration).

        The thesis's task on other data than the thesis's (the embedded demo photographs, synthetic
        volumes) says what the data are, so that a demo table never reads as the thesis's setting.
        """
        if self.is_thesis_task(task) and self.thesis_caption is not None:
            described = self.data_description(settings) if "data" in settings else None
            if described is None:
                return self.thesis_caption
            return (
                f"{self.title}: metrics of each model on {described} (the task of thesis"
                f" {self.thesis_table.replace('table_', 'Table ').replace('_', '.')}, not its data)."
            )
        return self.caption.format(**{**settings, "title": self.title, "task": task})
