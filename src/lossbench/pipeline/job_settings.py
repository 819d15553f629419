"""The run settings of a validated configuration: what each training job is built from, as typed, frozen data.

:func:`run_settings` builds the :class:`~lossbench.train.run_settings.RunSettings` of one (task, loss, seed) job;
the helpers beside it give the pieces the workflow's other jobs need (the evaluation settings with the
LPIPS trunk resolved, a loss's constructor arguments, the metrics scored at every validation).

Each takes the configuration's registry (:class:`lossbench.registry.Registry`), which the Snakefile builds once; a
caller without one gets the configuration's, built for the call.
"""

from __future__ import annotations

import copy
from typing import Any

from lossbench.core.specs import Setting
from lossbench.data.tasks import channels
from lossbench.metrics.lpips import resolve_trunk
from lossbench.pipeline.config_file import ConfigError, learning_rate_overrides
from lossbench.pipeline.sections import dataset
from lossbench.registry import Registry
from lossbench.train.device import resolve_layout
from lossbench.train.run_settings import LossSettings, RunSettings, Trainer, Training


def learning_rate(config: dict[str, Any], task: str, loss: str) -> float:
    """The Adam learning rate of ``loss`` on ``task``: from ``learning_rates_file`` if it has one, else ``losses``."""
    override = learning_rate_overrides(config).get(task, {}).get(loss)
    if override is not None:
        return override
    lr = config["losses"][loss]["lr"]
    return float(lr[task] if isinstance(lr, dict) else lr)


def evaluation_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The ``evaluation`` section with ``lpips_trunk: auto`` resolved to ``pretrained`` or ``untrained``.

    Resolving ``auto`` here, rather than inside each job, puts the trunk actually used into every
    job's parameters: when the weights appear, the LPIPS+l2 models and LPIPS values are recomputed,
    and labels never claim a pretrained trunk for results made without one. ``auto`` reads local files
    only, never the network (:func:`lossbench.metrics.lpips.resolve_trunk`): ``pretrained`` where a
    verified trunk is there, else ``untrained``; inside a workflow run, the value the run was planned
    with. ``pretrained`` stays as it is: the workflow's ``lpips_weights`` rule fetches the weights
    before any job needs them.
    """
    evaluation = dict(config["evaluation"])
    if evaluation["lpips_trunk"] == "auto":
        try:
            evaluation["lpips_trunk"] = resolve_trunk("auto", evaluation["lpips_weights"])
        except FileNotFoundError as error:
            raise ConfigError(f"evaluation.lpips_weights: {error}") from error
    return evaluation


def loss_params(config: dict[str, Any], task: str, loss: str, registry: Registry | None = None) -> dict[str, Any]:
    """Constructor arguments of ``loss`` on ``task``: the configured ``params`` plus the defaults its spec gives for the
    task.

    The evaluation settings (FLIP's viewing conditions and grayscale mode, the LPIPS trunk) are
    those of :func:`evaluation_settings`, with ``lpips_trunk: auto`` resolved.
    """
    setting = Setting(channels(config["tasks"][task]["kind"]), evaluation_settings(config))
    registry = registry or Registry.from_config(config)
    return registry.loss(loss).params(setting, config["losses"][loss]["params"])


def task_data(config: dict[str, Any], task: str) -> dict[str, Any]:
    """The settings that shape a task's samples (crop, noise levels, mask), without the data's location."""
    return {
        key: value
        for key, value in config["tasks"][task].items()
        if key not in ("kind", "training", "data", "data_from")
    }


def run_settings(
    config: dict[str, Any], task: str, loss: str, seed: int, registry: Registry | None = None
) -> RunSettings:
    """Everything a training job of (task, loss, seed) depends on, as a typed run settings.

    Snakemake passes it as a parameter (:meth:`RunSettings.to_dict`), so a change to any of these values
    reruns exactly the affected jobs; its hash, with the identity of the training files (computed by
    the job, see :func:`lossbench.train.checkpoint.data_identity`), names the checkpoint folder. ``dataset`` is the
    task's
    ``data`` section (source, photo names, folders, ``max_side``, volume counts): a change of the
    training set is a new run, never a resume of the old one.
    """
    task_config = config["tasks"][task]
    return RunSettings(
        task=task,
        kind=task_config["kind"],
        # A loss of the user's own (``module``): another class is another run.
        loss=LossSettings(loss, loss_params(config, task, loss, registry), config["losses"][loss].get("module")),
        lr=learning_rate(config, task, loss),
        seed=int(seed),
        model=dict(config["model"]),
        training=Training.from_dict(
            {key: value for key, value in task_config["training"].items() if key != "schedule"}, "training"
        ),
        # RESULT_FREE_KEYS change no result: changing them neither reruns nor restarts a job.
        trainer=Trainer.from_dict(
            resolve_layout(
                {key: value for key, value in config["trainer"].items() if key not in RESULT_FREE_KEYS}
                | {"schedule": task_config["training"].get("schedule", config["trainer"]["schedule"])},
                config["device"],
            ),
            "trainer",
        ),
        data=task_data(config, task),
        dataset=copy.deepcopy(dataset(config, task)),
    )


#: Trainer settings of the live view of a job (:class:`lossbench.train.live.LiveView`).
LIVE_KEYS = ("snapshots", "tensorboard")
#: Trainer settings that change no result, so no part of the run settings: changing them neither reruns nor restarts
#: a job.
RESULT_FREE_KEYS = ("checkpoint_every", "finite_check_every", "validation_metrics", *LIVE_KEYS)


def live_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The ``trainer`` settings of the live view, as :func:`lossbench.train.loop.run` takes them (``live``)."""
    return {key: config["trainer"][key] for key in LIVE_KEYS}


def validation_metrics(
    config: dict[str, Any], task: str, evaluation: dict[str, Any], registry: Registry | None = None
) -> dict[str, dict[str, Any]]:
    """The configured metrics a training of ``task`` scores at every validation, name → parameters (``metrics`` in
    :func:`lossbench.train.loop.run`).

    Args:
        config: The validated configuration.
        task: The task trained.
        evaluation: :func:`evaluation_settings` of the configuration (the LPIPS trunk resolved).
        registry: The configuration's registry, which knows its own metrics.
    """
    setting = Setting(channels(config["tasks"][task]["kind"]), evaluation)
    registry = registry or Registry.from_config(config)
    return {name: registry.metric(name).params(setting) for name in validated_metric_names(config, registry)}


def validated_metric_names(config: dict[str, Any], registry: Registry) -> list[str]:
    """The metrics of ``metrics`` that ``trainer.validation_metrics`` scores at every validation, in their table order
    (the others are scored by the evaluation only).

    Args:
        config: The validated configuration (its names are checked against ``metrics`` by the consistency checks).
        registry: The configuration's registry, which knows which metrics are the thesis's.
    """
    chosen = config["trainer"]["validation_metrics"]
    if chosen == "all":
        return list(config["metrics"])
    if chosen == "thesis":
        return [name for name in config["metrics"] if registry.metric(name).thesis]
    return [name for name in config["metrics"] if name in chosen]
