"""The run settings: everything one training job of (task, loss, seed) depends on, typed and frozen.

:func:`lossbench.pipeline.job_settings.run_settings` builds it from a configuration. As plain data
(:meth:`RunSettings.to_dict`) it is a Snakemake rule parameter, so that a change to any of its values
reruns exactly the affected jobs; it is stored in every checkpoint and ``model.pt`` and read back
with :meth:`RunSettings.from_dict`; and its hash names the checkpoint folder
(:func:`lossbench.train.checkpoint.settings_hash`).

Values are kept as the configuration gave them, never converted (an ``int`` warm-up stays an
``int``): the plain data, and with it the hash of every existing run, stay what they were.
"""

from __future__ import annotations

import copy
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Self


def _check_keys(values: Mapping[str, Any], expected: Iterable[str], where: str, optional: Iterable[str] = ()) -> None:
    """Refuse plain data with missing or unknown keys, in one line naming ``where`` (a key path, "" for the top)."""
    expected, optional = list(expected), set(optional)
    missing = [key for key in expected if key not in values and key not in optional]
    unknown = [key for key in values if key not in expected]
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(unknown)}"] if unknown else []
        )
        raise ValueError(
            f"run settings{' ' + where if where else ''}: {'; '.join(problems)} (expected {', '.join(expected)};"
            " written by another lossbench version?)"
        )


@dataclass(frozen=True)
class _Section:
    """A typed settings section, read from and written to plain data in the order its keys came.

    Snakemake reruns a job whose parameters' ``repr`` changed, and a dict's ``repr`` follows its
    key order, which is the configuration's: written back in another order, every finished
    training of an existing workflow would rerun.
    """

    _order: tuple[str, ...] = field(default=(), kw_only=True, repr=False, compare=False)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str) -> Self:
        """The section of plain data ``values`` (the spec's key ``where``, for messages).

        Raises:
            ValueError: a key is missing or unknown (one line naming ``where``).
        """
        hints = typing.get_type_hints(cls)
        names = [item.name for item in fields(cls) if item.name != "_order"]
        _check_keys(values, names, where)
        typed = {
            name: hints[name].from_dict(values[name], f"{where}.{name}") if _is_section(hints[name]) else values[name]
            for name in names
        }
        return cls(**typed, _order=tuple(values))

    def to_dict(self) -> dict[str, Any]:
        """Plain data, its keys in the order they were read (field order for a section built directly)."""
        names = self._order or [item.name for item in fields(self) if item.name != "_order"]
        return {name: _plain(getattr(self, name)) for name in names}


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, _Section)


def _plain(value: Any) -> Any:
    # A copy: what a caller does with the plain data never changes the spec.
    return value.to_dict() if isinstance(value, _Section) else copy.deepcopy(value)


@dataclass(frozen=True)
class Schedule(_Section):
    """The learning rate over the run, as a multiple of the loss's rate (``trainer.schedule``).

    Attributes:
        kind: ``constant`` (the thesis's fixed rate) or ``cosine`` (decay to ``final``·lr at the last step).
        warmup: Fraction in [0, 1] of the steps over which the rate rises linearly to lr.
        final: ``cosine``: the last step's rate as a fraction in [0, 1] of lr.
    """

    kind: str
    warmup: float
    final: float


@dataclass(frozen=True)
class Training(_Section):
    """A task's ``training`` section, less its ``schedule`` (which :class:`Trainer` holds).

    Attributes:
        epochs: Passes over the training set.
        batch_size: Samples per step.
        val_images: Validation images of the per-epoch validation (None: all).
        workers: DataLoader worker processes.
    """

    epochs: int
    batch_size: int
    val_images: int | None
    workers: int


@dataclass(frozen=True)
class Trainer(_Section):
    """How training runs: the ``trainer`` section less what changes no result, plus the task's schedule.

    A key added to the schema's ``trainer`` section needs its field here; until then
    :func:`lossbench.pipeline.job_settings.run_settings` refuses it in one line.

    Attributes:
        nonfinite: ``stop`` the job at a non-finite loss or gradient, or ``skip`` the batch.
        autocast: ``none`` or ``bfloat16`` mixed precision of the forward pass.
        channels_last: NHWC memory layout of the network and its inputs (``auto`` resolved, see
            :func:`lossbench.train.device.resolve_layout`).
        compile: ``torch.compile`` the network for the training steps.
        tf32: CUDA: TF32 rounding in the network's float32 convolutions and products.
        cudnn_benchmark: CUDA: cuDNN picks its algorithms by timing them.
        schedule: The learning rate over the run.
    """

    nonfinite: str
    autocast: str
    channels_last: bool
    compile: bool
    tf32: bool
    cudnn_benchmark: bool
    schedule: Schedule


@dataclass(frozen=True)
class LossSettings:
    """The loss of a run.

    Attributes:
        name: Registered loss name (``losses.<name>``), a built-in one or the configuration's own.
        params: Its constructor arguments on the run's task (:func:`lossbench.pipeline.job_settings.loss_params`).
        module: ``package.module:Class`` of a loss of the configuration's own, None for a built-in
            one: another class is another run.
    """

    name: str
    params: Mapping[str, Any]
    module: str | None = None


#: The keys of the run settings' plain data, in its order; ``loss_module`` only for a loss of the configuration's own.
_KEYS = (
    "task",
    "kind",
    "loss",
    "loss_params",
    "loss_module",
    "lr",
    "seed",
    "model",
    "training",
    "trainer",
    "data",
    "dataset",
)


@dataclass(frozen=True)
class RunSettings:
    """Everything a training job of (task, loss, seed) depends on (see the module docstring).

    The mappings are the configuration's sections, validated by its schema (each network, task
    kind and loss has its own keys); treat them as read-only, and use :func:`dataclasses.replace`
    for a changed spec.

    Attributes:
        task: Task name (``tasks.<task>``).
        kind: Its task kind (``rgb_denoise``, ``mri_singlecoil``, ...; :mod:`lossbench.data.tasks`).
        loss: The loss.
        lr: Adam's learning rate (before the schedule).
        seed: Seed of the weights, the sampling and the noise.
        model: The ``model`` section: ``name`` (absent in specs from before it: the thesis's
            U-net) and the network's own parameters (:func:`lossbench.models.build`).
        training: The task's training settings.
        trainer: How training runs.
        data: The settings that shape the task's samples (crop, noise levels, mask, quality, ...;
            :func:`lossbench.pipeline.job_settings.task_data`).
        dataset: The task's ``data`` section (source, photo names, folders, volume counts): another
            training set is another run, never a resume of the old one.
    """

    task: str
    kind: str
    loss: LossSettings
    lr: float
    seed: int
    model: Mapping[str, Any]
    training: Training
    trainer: Trainer
    data: Mapping[str, Any]
    dataset: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (a copy), as checkpoints, ``model.pt`` and Snakemake hold it."""
        module = {} if self.loss.module is None else {"loss_module": self.loss.module}
        values = {
            "task": self.task,
            "kind": self.kind,
            "loss": self.loss.name,
            "loss_params": self.loss.params,
            **module,
            "lr": self.lr,
            "seed": self.seed,
            "model": self.model,
            "training": self.training,
            "trainer": self.trainer,
            "data": self.data,
            "dataset": self.dataset,
        }
        return {key: _plain(value) for key, value in values.items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunSettings:
        """The spec of plain data written by :meth:`to_dict` (a checkpoint's or ``model.pt``'s ``spec``).

        Raises:
            ValueError: a key is missing or unknown, at any level (one line naming it).
        """
        _check_keys(values, _KEYS, "", optional=("loss_module",))
        return cls(
            task=values["task"],
            kind=values["kind"],
            loss=LossSettings(values["loss"], values["loss_params"], values.get("loss_module")),
            lr=values["lr"],
            seed=values["seed"],
            model=values["model"],
            training=Training.from_dict(values["training"], "training"),
            trainer=Trainer.from_dict(values["trainer"], "trainer"),
            data=values["data"],
            dataset=values["dataset"],
        )
