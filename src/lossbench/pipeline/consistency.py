"""The configuration's consistency: what no one section's spec can check alone, after the schema.

:func:`check_consistency` runs when a configuration is validated (:func:`lossbench.pipeline.config.validate`).
Each spec checks its own keys (:meth:`TaskSpec.check_config <lossbench.data.taskspec.TaskSpec.check_config>` a
task's settings, :meth:`LossSpec.check_config <lossbench.core.specs.LossSpec.check_config>` a loss's ``params``,
:meth:`MetricSpec.check_config <lossbench.core.specs.MetricSpec.check_config>` the ``evaluation`` settings a metric
reads, :meth:`ModelSpec.check_config <lossbench.models.spec.ModelSpec.check_config>` the ``model`` section against the
crops, ``check_userstudy`` the ``userstudy`` block); this module calls them in a fixed order, so that the first error of
a configuration with several is always the same one, and checks what lies between sections or tasks: names of the
user's own losses and metrics and their parameters, channels of each loss and metric against each task, learning rates
per task, ``data_from``, data folders and embedded photographs, each metric against a crop, the figures, and the
budgets of memory, training steps and synthetic data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lossbench import models
from lossbench.core.specs import import_object, keywords
from lossbench.data import tasks
from lossbench.data.fastmri_synthetic import slice_bytes
from lossbench.data.images import EMBEDDED_PHOTOS, IMAGE_SUFFIXES, embedded_photo_path, image_size, scaled_size
from lossbench.pipeline.config_file import ConfigError, learning_rate_overrides
from lossbench.pipeline.sections import data_owner, dataset, task_spec
from lossbench.pipeline.userstudy import check_userstudy
from lossbench.registry import Registry

#: Refuse a model whose training would need more memory than this (weights, gradients, Adam's
#: moments and the activations of one batch): more than any single accelerator or workstation has.
MAX_TRAINING_BYTES = 256 * 2**30

#: Refuse a training run of more optimiser steps than this (epochs × steps per epoch): 23 times the
#: thesis's largest (knee: 1000 epochs of fastMRI's 34,742 slices in batches of 8), two months at 20 steps/s.
MAX_TRAINING_STEPS = 10**8

#: Refuse a synthetic split whose files would take more disk than this (fastMRI's single-coil knee
#: training set, the real thing, is 88 GB).
MAX_SYNTHETIC_BYTES = 256 * 2**30


def check_consistency(config: dict[str, Any], source: str) -> None:
    """Check a configuration the schema has validated (defaults filled in), in a fixed order: the first error wins.

    The configuration's own losses and metrics are imported and checked in a registry of its own
    (:meth:`lossbench.registry.Registry.from_config`); nothing is registered in the process.

    Raises:
        ConfigError: one line naming ``source`` and the offending key.
    """
    registry = _check_own(config, source)
    _check_losses(config, source, registry)
    _check_validation_metrics(config, source)
    _check_data_from(config, source)
    _check_folders(config, source)
    _check_tasks(config, source, registry)
    _check_model(config, source)
    _check_data_sizes(config, source)
    _check_steps(config, source)
    _check_synthetic_sizes(config, source)
    learning_rate_overrides(config, source)
    for metric in registry.metrics.values():  # every metric's settings, configured or not: the losses read them too
        _refuse(source, metric.check_config(config["evaluation"]))
    for name in config["metrics"]:  # an optional extra's absence matters only where its metric is computed
        problem = registry.metric(name).unavailable()
        _refuse(source, None if problem is None else f"metrics: {problem}")
    _check_figures(config, source)
    try:
        check_userstudy(config)
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from error


def _refuse(source: str, problem: str | None) -> None:
    """Raise the ``problem`` a spec's ``check_config`` found, if any, naming ``source``."""
    if problem is not None:
        raise ConfigError(f"{source}: {problem}")


def _check_keywords(source: str, key: str, what: str, params: dict[str, Any], factory: Any) -> None:
    """Every key of the configured ``params`` (at ``key``) is a keyword of ``factory``, the class or function of
    ``what``."""
    accepted = keywords(factory)
    for name in params:
        if accepted is not None and name not in accepted:
            raise ConfigError(
                f"{source}: {key}.{name}: not a parameter of {what} (it takes"
                f" {', '.join(accepted) if accepted else 'none'})"
            )


def _check_own(config: dict[str, Any], source: str) -> Registry:
    """The names of the user's own metrics, the modules of their own losses and metrics, and the ``params`` of their
    metrics; returns the configuration's registry."""
    if "image" in config["own_metrics"]:
        raise ConfigError(
            f"{source}: own_metrics.image: 'image' names the image column of the per-image metric files; choose another"
            " name"
        )
    try:
        registry = Registry.from_config(config)
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None
    for name, settings in config["own_metrics"].items():
        _check_keywords(
            source,
            f"own_metrics.{name}.params",
            f"{settings['module']} (the {name} metric)",
            settings["params"],
            import_object(settings["module"]),
        )
    return registry


def _check_losses(config: dict[str, Any], source: str, registry: Registry) -> None:
    """Each loss's own check of its ``params``, the channels of every loss and metric against every task, a learning
    rate per task, then the ``params`` against the loss's keywords and a reduction that gives training a scalar."""
    for name, settings in config["losses"].items():
        _refuse(source, registry.loss(name).check_config(settings["params"]))
    for task, settings in config["tasks"].items():
        count = tasks.channels(settings["kind"])
        for key, names, spec in (
            ("losses", list(config["losses"]), registry.loss),
            ("metrics", config["metrics"], registry.metric),
        ):
            for name in names:
                accepted = spec(name).channels
                if count not in accepted:
                    raise ConfigError(
                        f"{source}: {key}: {name} takes images of {' or '.join(map(str, accepted))} channel(s), but"
                        f" tasks.{task} has {count}"
                    )
    for name, settings in config["losses"].items():
        if isinstance(settings["lr"], dict):
            for task in config["tasks"]:
                if task not in settings["lr"]:
                    raise ConfigError(f"{source}: losses.{name}.lr: no learning rate for task {task!r}")
    for name, settings in config["losses"].items():
        _check_keywords(
            source, f"losses.{name}.params", f"the {name} loss", settings["params"], registry.loss(name).factory
        )
        if settings["params"].get("reduction", "mean") == "none":
            raise ConfigError(
                f"{source}: losses.{name}.params.reduction: 'none' gives one loss per image; training needs a scalar"
                " ('mean' or 'sum')"
            )


def _check_validation_metrics(config: dict[str, Any], source: str) -> None:
    """A list in ``trainer.validation_metrics`` names metrics of ``metrics`` (validation scores only those)."""
    chosen = config["trainer"]["validation_metrics"]
    if isinstance(chosen, list):
        for name in chosen:
            if name not in config["metrics"]:
                raise ConfigError(
                    f"{source}: trainer.validation_metrics: {name!r} is not in metrics (expected some of"
                    f" {', '.join(config['metrics'])}, or all, or thesis)"
                )


def _check_data_from(config: dict[str, Any], source: str) -> None:
    """Each task has its own ``data`` or ``data_from`` another task with its own data of the same kind of files."""
    for task, settings in config["tasks"].items():
        if ("data" in settings) == ("data_from" in settings):
            raise ConfigError(
                f"{source}: tasks.{task}: expected either data (its own) or data_from (another task's),"
                f" {'got both' if 'data' in settings else 'got neither'}"
            )
        other = settings.get("data_from")
        if other is None:
            continue
        if other not in config["tasks"] or "data" not in config["tasks"][other]:
            own = [name for name, candidate in config["tasks"].items() if "data" in candidate]
            raise ConfigError(
                f"{source}: tasks.{task}.data_from: {other!r} is not a configured task with its own data (one of"
                f" {', '.join(own)})"
            )
        needed, given = tasks.spec(settings["kind"]).data, tasks.spec(config["tasks"][other]["kind"]).data
        if needed != given:
            raise ConfigError(
                f"{source}: tasks.{task}.data_from: task {other!r} has {given} data, a {settings['kind']} task needs"
                f" {needed}"
            )


def _folders(config: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(task, key, data)`` of every configured data folder: ``data[key]``, of a task's own ``data`` (a task with
    ``data_from`` is checked under the task it names)."""
    return [
        (task, key, settings["data"])
        for task, settings in config["tasks"].items()
        for key in ("train_dir", "val_dir")
        # imagenet's val_dir (Kodak put there by hand) is optional; the other sources require both.
        if settings.get("data", {}).get("source") in ("folder", "fastmri", "imagenet") and key in settings["data"]
    ]


def missing_data_folders(config: dict[str, Any]) -> list[str]:
    """``tasks.<task>.data.<key>: folder '...' does not exist`` for every configured data folder that is absent."""
    return [
        f"tasks.{task}.data.{key}: folder {data[key]!r} does not exist"
        for task, key, data in _folders(config)
        if not Path(data[key]).is_dir()
    ]


def _check_folders(config: dict[str, Any], source: str) -> None:
    """Data folders hold data (the first file found is enough: a tree of a million images is not listed); an absent
    one is left to :func:`missing_data_folders`, which names all of them at once."""
    for task, key, data in _folders(config):
        folder = Path(data[key])
        if not folder.is_dir():
            continue
        if data["source"] == "fastmri":
            found, expected = any(folder.glob("*.h5")), "fastMRI .h5 files"
        else:
            found, expected = (
                any(path.suffix.lower() in IMAGE_SUFFIXES for path in folder.rglob("*")),
                f"image files ({', '.join(IMAGE_SUFFIXES)})",
            )
        if not found:
            raise ConfigError(f"{source}: tasks.{task}.data.{key}: folder {data[key]!r} holds no {expected}")


def _check_tasks(config: dict[str, Any], source: str, registry: Registry) -> None:
    """Each task's settings by its kind's spec, its embedded photographs, and its crop against every metric where the
    validation images are crops."""
    for task, settings in config["tasks"].items():
        data = settings.get("data", {})
        spec = tasks.spec(settings["kind"])
        _refuse(source, spec.check_config(task, {**settings, "data": dataset(config, task)}))
        if data.get("source") == "embedded":
            for split in ("train", "val"):
                for name in data[split]:
                    if name not in EMBEDDED_PHOTOS:
                        raise ConfigError(
                            f"{source}: tasks.{task}.data.{split}: unknown embedded photo {name!r} (available:"
                            f" {', '.join(EMBEDDED_PHOTOS)})"
                        )
            overlap = set(data["train"]) & set(data["val"])
            if overlap:
                raise ConfigError(f"{source}: tasks.{task}.data: {', '.join(sorted(overlap))} in both train and val")
        if spec.crop_sized_validation:
            # Metrics are computed on crop × crop images, which every configured metric must fit.
            for metric in config["metrics"]:
                reason = registry.metric(metric).too_small(settings["crop"])
                if reason is not None:
                    raise ConfigError(f"{source}: tasks.{task}.crop: {settings['crop']} is too small for {reason}")


def _check_model(config: dict[str, Any], source: str) -> None:
    """The network's own checks against every task's crop (its spec's), then the memory of training on each task
    against :data:`MAX_TRAINING_BYTES`."""
    model = models.of(config["model"])
    params = models.params(config["model"])
    _refuse(source, model.check_config(params, {task: settings["crop"] for task, settings in config["tasks"].items()}))
    for task, settings in config["tasks"].items():
        crop, batch_size = settings["crop"], settings["training"]["batch_size"]
        needed = model.training_bytes(params, tasks.channels(settings["kind"]), crop, batch_size)
        if needed > MAX_TRAINING_BYTES:
            raise ConfigError(
                f"{source}: model: {model.describe(params)} needs about {needed / 2**30:.3g} GiB to train on"
                f" tasks.{task} ({batch_size} crops of {crop}×{crop}), over the {MAX_TRAINING_BYTES // 2**30} GiB"
                f" limit; reduce model.{model.width_key} or model.{model.depth_key}"
            )


def _check_data_sizes(config: dict[str, Any], source: str) -> None:
    """Embedded photos against the crop and the network (synthetic MRI crops are checked by the MRI kinds)."""
    model = models.of(config["model"])
    smallest_val = model.min_side(models.params(config["model"]))
    for task, settings in config["tasks"].items():
        data = dataset(config, task)
        if data["source"] == "embedded":
            for split, minimum, needed_by in (
                ("train", settings["crop"], f"the {settings['crop']}×{settings['crop']} crop (tasks.{task}.crop)"),
                ("val", smallest_val, f"the {model.label}'s 2**model.{model.depth_key} = {smallest_val}"),
            ):
                for name in data[split]:
                    try:
                        width, height = scaled_size(*image_size(embedded_photo_path(name)), data["max_side"])
                    except (FileNotFoundError, ValueError) as error:
                        raise ConfigError(f"{source}: tasks.{task}.data.{split}: {error}") from None
                    if min(width, height) < minimum:
                        raise ConfigError(
                            f"{source}: tasks.{data_owner(config, task)}.data.{split}: photo {name!r} is"
                            f" {width}×{height} (after max_side {data['max_side']}), smaller than {needed_by}"
                        )


def _training_samples(config: dict[str, Any], task: str) -> tuple[int, str]:
    """At least how many samples one epoch of ``task`` trains on, as far as the configuration says, and why.

    Folders of images or fastMRI files are counted only when the job runs: one sample at least.
    """
    settings, data = config["tasks"][task], dataset(config, task)
    crops = settings.get("crops_per_image", 1)
    if data["source"] == "embedded":
        return len(data["train"]) * crops, f"{len(data['train'])} photographs × {crops} crops"
    if data["source"] == "imagenet":
        return data["train_images"] * crops, f"{data['train_images']} images × {crops} crops"
    if data["source"] == "synthetic":
        # The realistic preset draws 16-40 slices per volume, capped at `slices`.
        slices = min(data["train"]["slices"], 16) if data["preset"] == "realistic" else data["train"]["slices"]
        return data["train"]["volumes"] * slices, f"{data['train']['volumes']} volumes × {slices} slices"
    return crops, "at least one image" if crops == 1 else f"at least one image × {crops} crops"


def _check_steps(config: dict[str, Any], source: str) -> None:
    """Epochs against :data:`MAX_TRAINING_STEPS`, for every task's training and its learning-rate sweep."""
    for task, settings in config["tasks"].items():
        samples, what = _training_samples(config, task)
        per_epoch = -(-samples // settings["training"]["batch_size"])
        for key, epochs in (
            (f"tasks.{task}.training.epochs", settings["training"]["epochs"]),
            ("lr_sweep.epochs", config["lr_sweep"]["epochs"]),
        ):
            if epochs * per_epoch > MAX_TRAINING_STEPS:
                raise ConfigError(
                    f"{source}: {key}: {epochs} epochs × {per_epoch} steps per epoch ({what} of tasks.{task} in batches"
                    f" of {settings['training']['batch_size']}) = {epochs * per_epoch:.3g} training steps; expected at"
                    f" most {MAX_TRAINING_STEPS:.0e}"
                )


def _check_synthetic_sizes(config: dict[str, Any], source: str) -> None:
    """Synthetic fastMRI-format splits against :data:`MAX_SYNTHETIC_BYTES` of files.

    A slice takes :func:`lossbench.data.fastmri_synthetic.slice_bytes`. The realistic preset's layouts
    vary per volume; its 16-slice minimum and the default layout estimate them.
    """
    for task, settings in config["tasks"].items():
        data = settings.get("data", {})  # a task with data_from is checked under the task it names
        if data.get("source") != "synthetic":
            continue
        challenge, matrix = task_spec(config, task).challenge, data["matrix"]
        per_slice = slice_bytes(challenge, matrix)
        for split in ("train", "val"):
            volumes, slices = data[split]["volumes"], data[split]["slices"]
            slices = min(slices, 16) if data["preset"] == "realistic" else slices
            if volumes * slices * per_slice > MAX_SYNTHETIC_BYTES:
                raise ConfigError(
                    f"{source}: tasks.{task}.data.{split}: {volumes} volumes × {slices} slices of {matrix}×{matrix}"
                    f" synthetic {challenge} data take about {volumes * slices * per_slice / 2**30:.3g} GiB of files;"
                    f" expected at most {MAX_SYNTHETIC_BYTES // 2**30} GiB (fewer volumes or slices)"
                )


def _check_figures(config: dict[str, Any], source: str) -> None:
    """Each figure shows a configured task's validation image, and no two share a crop figure."""
    crops = set()
    for figure, spec in config["figures"].items():
        if spec["task"] not in config["tasks"]:
            raise ConfigError(f"{source}: figures.{figure}.task: task {spec['task']!r} is not configured under tasks")
        data = dataset(config, spec["task"])
        if data["source"] == "embedded" and isinstance(spec["image"], str) and spec["image"] not in data["val"]:
            raise ConfigError(
                f"{source}: figures.{figure}.image: {spec['image']!r} is not a validation image of task {spec['task']}"
                f" ({', '.join(data['val'])})"
            )
        crop = spec.get("crop_figure")
        if crop is not None:
            if crop in config["figures"] or crop in crops:
                raise ConfigError(f"{source}: figures.{figure}.crop_figure: {crop} is already used by another figure")
            crops.add(crop)
