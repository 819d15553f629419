"""Configuration: schema validation with defaults, semantic checks, and the per-job run specs.

The Snakefile and every CLI load configuration through :func:`load` or :func:`validate`, so a bad
value is rejected before any job runs, with one line that names the file, the key and what was
expected.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from lossbench import losses, metrics, models
from lossbench.core.specs import import_object, keywords
from lossbench.data import tasks
from lossbench.data.fastmri_synthetic import default_width
from lossbench.data.images import EMBEDDED_PHOTOS, IMAGE_SUFFIXES, embedded_photo_path, image_size, scaled_size
from lossbench.data.tasks import channels
from lossbench.pipeline.userstudy import check_userstudy

#: Packaged with the library (package data), so an installed lossbench finds it too.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"

#: Refuse a model whose training would need more memory than this (weights, gradients, Adam's
#: moments and the activations of one batch): more than any single accelerator or workstation has.
MAX_TRAINING_BYTES = 256 * 2**30

#: Most pooling levels of a network: 2**16-pixel crops, whose activations exceed MAX_TRAINING_BYTES at any width.
MAX_POOLING_LEVELS = 16

#: Refuse a training run of more optimiser steps than this (epochs × steps per epoch): 23 times the
#: thesis's largest (knee: 1000 epochs of fastMRI's 34,742 slices in batches of 8), two months at 20 steps/s.
MAX_TRAINING_STEPS = 10**8

#: Refuse a synthetic split whose files would take more disk than this (fastMRI's single-coil knee
#: training set, the real thing, is 88 GB).
MAX_SYNTHETIC_BYTES = 256 * 2**30

#: Refuse FLIP viewing conditions of more pixels per degree than this: FLIP's filters widen with the
#: ppd (radius 10 pixels at the thesis's 67, 136 at 1000), and 1000 ppd is far beyond the eye's acuity.
MAX_PPD = 1000.0

#: Limits of a YAML file read as configuration: far above any real one (config.yaml: 9 KiB, 391
#: values, 6 levels deep, no aliases), far below what takes the machine or the interpreter's stack.
#: The depth and the values bound a configuration given as a dict (:func:`validate`) too.
MAX_YAML_BYTES = 2**20
MAX_YAML_DEPTH = 100
MAX_YAML_VALUES = 100_000

#: torchvision's ImageNet AlexNet checkpoint, the only file ``evaluation.lpips_weights`` may name:
#: its name, size and SHA-256 (torchvision's file names carry the digest's first 8 hex digits).
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_BYTES = 244_408_911
ALEXNET_SHA256 = "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02"


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line naming the file and key."""


class _YAMLLimitError(yaml.MarkedYAMLError):
    """A YAML file nests deeper, or expands through its aliases to more values, than a configuration may."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the limits of a configuration file.

    A key repeated in one mapping is an error, not a silent overwrite. Nesting is limited while the
    document is composed, before PyYAML's recursive composer can exhaust the interpreter's stack;
    the composed document is then walked with every alias expanded, within a budget, so that an alias
    bomb or a recursive alias is refused before anything (the validator, ``copy``, the jobs) walks the
    exponentially larger or endless structure it stands for.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _YAMLLimitError(
                    None,
                    None,
                    f"nested deeper than the {MAX_YAML_DEPTH} levels a configuration may have",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node:
        document = super().compose_document()
        # Depth-first with a budget: terminates on recursive aliases too, which make the walk endless.
        stack, values = [(document, 1)], 0
        while stack:
            node, depth = stack.pop()
            values += 1
            if values > MAX_YAML_VALUES:
                raise _YAMLLimitError(
                    None,
                    None,
                    f"more than the {MAX_YAML_VALUES} values a configuration may have, its aliases expanded (an alias"
                    " bomb?)",
                    node.start_mark,
                )
            if depth > MAX_YAML_DEPTH:
                raise _YAMLLimitError(
                    None,
                    None,
                    f"nested deeper than the {MAX_YAML_DEPTH} levels a configuration may have, its aliases expanded (an"
                    " alias of a node inside itself?)",
                    node.start_mark,
                )
            if isinstance(node, yaml.SequenceNode):
                stack.extend((child, depth + 1) for child in node.value)
            elif isinstance(node, yaml.MappingNode):
                stack.extend((child, depth + 1) for pair in node.value for child in pair)
        return document

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
    """Parse the YAML file ``path`` within the limits of a configuration file.

    The file must be UTF-8 text of at most :data:`MAX_YAML_BYTES`, nest at most
    :data:`MAX_YAML_DEPTH` levels and hold at most :data:`MAX_YAML_VALUES` values with its aliases
    expanded, and give each key once per mapping. Messages name the file and the line, never the
    file's text: a configuration may name any file (``learning_rates_file``), and its contents must
    not reach a log.

    Raises:
        ConfigError: one line naming the file: missing, too large, not UTF-8, not valid YAML, over
            a limit, or a key given twice in one mapping (with its line).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file does not exist")
    with open(path, "rb") as handle:
        raw = handle.read(MAX_YAML_BYTES + 1)  # a file that grows while it is read is bounded too
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_YAML_BYTES // 2**20} MiB; expected a configuration file (a few KiB)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: not UTF-8 text ({error.reason} at byte {error.start}); expected a YAML file saved as"
            " UTF-8"
        ) from None
    return _parse_yaml(text, str(path))


def _parse_yaml(text: str, where: str) -> Any:
    """``text`` parsed by :class:`_StrictLoader`; errors are one line naming ``where`` (a file, or ``--config KEY``) and
    the line."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except yaml.constructor.ConstructorError as error:
        if not str(error.problem).startswith("duplicate key"):
            raise ConfigError(
                f"{where}: not valid YAML (line {error.problem_mark.line + 1}: {error.problem})"
            ) from None
        raise ConfigError(
            f"{where}: line {error.problem_mark.line + 1}: {error.problem} (each key may appear once per mapping)"
        ) from None
    except _YAMLLimitError as error:
        raise ConfigError(f"{where}: line {error.problem_mark.line + 1}: {error.problem}") from None
    except yaml.MarkedYAMLError as error:
        raise ConfigError(f"{where}: not valid YAML (line {error.problem_mark.line + 1}: {error.problem})") from None
    except yaml.reader.ReaderError as error:
        line = text[: error.position].count("\n") + 1
        raise ConfigError(
            f"{where}: not valid YAML (line {line}: character #x{ord(error.character):04x} is not allowed)"
        ) from None
    finally:
        loader.dispose()


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


def validate(
    config: dict[str, Any], source: str = "config", schema_path: str | Path = SCHEMA_PATH, require_data: bool = True
) -> dict[str, Any]:
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
    _check_finite(config, source)
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
        raise ConfigError(
            f"{source}: {'; '.join(missing)} (the run needs them; snakemake -n and the budget target work without them)"
        )
    return config


def typed_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Snakemake's ``--config KEY=VALUE`` overrides with the types a configuration file would give them.

    Snakemake reads a top-level value as a number or boolean, else as YAML with PyYAML's BaseLoader,
    which leaves every value inside a list or mapping a string (``seeds=[0, 1]`` gives ``['0', '1']``);
    those are read again here as YAML scalars, within the limits of a configuration file.

    Raises:
        ConfigError: naming ``--config KEY`` when such a string is not valid YAML or over a limit.
    """

    def retype(node: Any, path: tuple) -> Any:
        if isinstance(node, Mapping):
            return {key: retype(value, (*path, key)) for key, value in node.items()}
        if isinstance(node, list):
            return [retype(value, (*path, index)) for index, value in enumerate(node)]
        return _parse_yaml(node, f"--config {_key(path)}") if len(path) > 1 and isinstance(node, str) and node else node

    return {key: retype(value, (key,)) for key, value in overrides.items()}


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    # Dotted keys of the values of a mapping; lists are single values, as they replace a file's list whole.
    if not isinstance(node, dict) or not node:
        return [prefix]
    return [
        path for key, value in node.items() for path in _leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
    ]


def validate_with_overrides(
    config: dict[str, Any], source: str, overrides: dict[str, Any], require_data: bool = True
) -> dict[str, Any]:
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
            related = (
                key == path
                or key.startswith(path + ".")
                or path.startswith(key + ".")
                or (key == "<top level>" and f"'{top}'" in detail)
            )
            if related:
                raise ConfigError(f"--config {path} (over {source}): {detail}") from None
        raise


def _fill_name_enums(schema: dict[str, Any], config: dict[str, Any]) -> None:
    """The schema's enums of loss and metric names, from the registries: the schema does not repeat them.

    A loss with ``module`` and a metric of ``own_metrics`` (the user's own) may take any name;
    :func:`_check_semantics` imports them.
    """
    configured = config.get("losses")
    own = (
        [name for name, settings in configured.items() if isinstance(settings, dict) and "module" in settings]
        if isinstance(configured, dict)
        else []
    )
    own_metrics = list(config["own_metrics"]) if isinstance(config.get("own_metrics"), dict) else []
    properties = schema["properties"]
    properties["losses"]["propertyNames"] = {
        "enum": [*losses.names(), *(name for name in own if name not in losses.names())]
    }
    properties["metrics"]["items"] = {
        "enum": [*metrics.names(), *(name for name in own_metrics if name not in metrics.names())]
    }
    _fill_model_schema(properties["model"], config.get("model"))


def _fill_model_schema(schema: dict[str, Any], section: Any) -> None:
    """The ``model`` section's keys, from the spec of the network it names: each declares its own schema part."""
    schema["properties"]["name"]["enum"] = models.names()
    name = section.get("name", models.DEFAULT) if isinstance(section, dict) else models.DEFAULT
    if name in models.SPECS:  # an unknown name is the one error reported (its enum lists the known ones)
        spec = models.spec(name)
        schema["properties"].update(copy.deepcopy(dict(spec.schema)))
        # Before any check computes 2**depth or a list per level: a depth of 10**12 would take the machine.
        schema["properties"][spec.depth_key]["maximum"] = MAX_POOLING_LEVELS
        schema["additionalProperties"] = False


def _fill_task_kinds(schema: dict[str, Any], config: dict[str, Any], source: str) -> None:
    """Task kinds from the registry: the enum of ``kind``, each kind's settings schema, and the kind of a thesis task
    that names none.

    A task named as one of the thesis's (denoise, knee, brain) without ``kind`` gets the thesis's
    kind, so that configurations written before kinds existed keep working; any other task must
    say its kind.

    Raises:
        ConfigError: a task of another name without ``kind``.
    """
    configured = config.get("tasks")
    for name, settings in configured.items() if isinstance(configured, dict) else ():
        if isinstance(settings, dict) and "kind" not in settings:
            if tasks.default_kind(name) is None:
                thesis = [spec.thesis_task for spec in tasks.SPECS.values() if spec.thesis_task is not None]
                raise ConfigError(
                    f"{source}: tasks.{name}.kind: missing (only the thesis's tasks {', '.join(thesis)} have a"
                    f" default); expected one of {', '.join(tasks.kinds())}"
                )
            settings["kind"] = tasks.default_kind(name)
    task_schema = schema["properties"]["tasks"]["additionalProperties"]
    task_schema["properties"]["kind"]["enum"] = tasks.kinds()
    # `required` in the condition: a task without a kind must not take every kind's defaults.
    task_schema["allOf"] = [
        {
            "if": {"required": ["kind"], "properties": {"kind": {"const": kind}}},
            "then": {"$ref": f"#/definitions/{spec.schema}"},
        }
        for kind, spec in tasks.SPECS.items()
    ]


def _check_finite(config: dict[str, Any], source: str) -> None:
    """Every number of ``config`` is finite, and ``config`` is a tree of bounded size and depth.

    JSON schema's bounds are comparisons, which NaN passes: ``lr: .nan`` would reach the jobs. The
    walk counts a value each time it is reached, so a structure that shares parts (YAML aliases) or
    contains itself is refused within :data:`MAX_YAML_VALUES` steps, before the validator, ``copy``
    or a job walks all of it (for ever, if it contains itself).

    Raises:
        ConfigError: naming the key of the first non-finite number, or where a limit was passed.
    """
    stack: list[tuple[Any, tuple]] = [(config, ())]
    values = 0
    while stack:
        node, path = stack.pop()
        values += 1
        if values > MAX_YAML_VALUES:
            raise ConfigError(
                f"{source}: {_key(path)}: more than the {MAX_YAML_VALUES} values a configuration may have, counting"
                " each reference to a shared part (a YAML alias?)"
            )
        if len(path) > MAX_YAML_DEPTH:
            # The path of a part that contains itself repeats: its first keys show where.
            raise ConfigError(
                f"{source}: {_key(path[:8])}...: nested deeper than the {MAX_YAML_DEPTH} levels a configuration may"
                " have (a part that contains itself?)"
            )
        if isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{source}: {_key(path)}: {node} is not a finite number")
        # Reversed onto the stack, so that the first non-finite number in the file's order is reported.
        if isinstance(node, dict):
            stack.extend((value, (*path, key)) for key, value in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((value, (*path, index)) for index, value in reversed(list(enumerate(node))))


def _check_model(config: dict[str, Any], source: str) -> None:
    """The network's own checks, and against every task's crop: each pooling level must keep a pixel, the kernels must
    fit the levels, and the size must fit a machine."""
    model = models.of(config["model"])
    params = models.params(config["model"])
    problem = model.check_params(params)
    if problem is not None:
        raise ConfigError(f"{source}: model.{problem}")
    depth = params[model.depth_key]
    for task, settings in config["tasks"].items():
        crop = settings["crop"]
        if model.min_side(params) > crop:
            raise ConfigError(
                f"{source}: model.{model.depth_key}: {depth} pooling levels need crops of at least 2**{depth} ="
                f" {model.min_side(params)} pixels, but tasks.{task}.crop is {crop} ({model.depth_key} at most"
                f" {crop.bit_length() - 1})"
            )
    # After the depth, which gives the kernels their levels; before the memory, which a huge kernel would blow for the
    # kernel's fault.
    _check_kernels(config, source)
    for task, settings in config["tasks"].items():
        crop, batch_size = settings["crop"], settings["training"]["batch_size"]
        needed = model.training_bytes(params, channels(settings["kind"]), crop, batch_size)
        if needed > MAX_TRAINING_BYTES:
            raise ConfigError(
                f"{source}: model: {model.describe(params)} needs about {needed / 2**30:.3g} GiB to train on"
                f" tasks.{task} ({batch_size} crops of {crop}×{crop}), over the {MAX_TRAINING_BYTES // 2**30} GiB"
                f" limit; reduce model.{model.width_key} or model.{model.depth_key}"
            )


def _check_kernels(config: dict[str, Any], source: str) -> None:
    """The U-net's kernels against every task's training crop.

    A kernel wider than 2·side − 1 on a side × side feature map has taps that reach only the zero
    padding for every output pixel: they get no gradient and keep their random initial weights,
    which then act on real pixels when validation feeds larger images. Only the thesis's U-net has
    configurable kernels (fastmri_unet's are 3×3).
    """
    params = config["model"]
    if "kernel_size" not in params:
        return
    depth = params["depth"]
    key = "kernel_sizes" if params.get("kernel_sizes") is not None else "kernel_size"
    sizes = list(params["kernel_sizes"]) if key == "kernel_sizes" else [params["kernel_size"]] * (depth + 1)
    for task, settings in config["tasks"].items():
        crop = settings["crop"]
        # The U-net reflect-pads its input to a multiple of 2**depth; level l works on that side / 2**l.
        padded = -(-crop // 2**depth) * 2**depth
        for level in reversed(range(depth + 1)):  # the deepest level first: its maps are the smallest
            side = padded // 2**level
            if sizes[level] > 2 * side - 1:
                where = f"{key}.{level}" if key == "kernel_sizes" else key
                raise ConfigError(
                    f"{source}: model.{where}: {sizes[level]} is wider than the {2 * side - 1} pixels (2·{side} − 1) a"
                    f" kernel can use on the {side}×{side} feature maps of level {level} (tasks.{task}.crop {crop}"
                    f" pooled {level} times); expected at most {2 * side - 1}, or a larger crop"
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

    Each slice stores complex64 k-space (2·matrix rows, the phase-encoding columns, 4 coils for
    multi-coil) and a float32 matrix × matrix target, uncompressed. The realistic preset's layouts
    vary per volume; its 16-slice minimum and the default layout estimate them.
    """
    for task, settings in config["tasks"].items():
        data = settings.get("data", {})  # a task with data_from is checked under the task it names
        if data.get("source") != "synthetic":
            continue
        challenge, matrix = task_spec(config, task).challenge, data["matrix"]
        coils = 4 if challenge == "multicoil" else 1
        per_slice = 8 * 2 * matrix * default_width(challenge, matrix) * coils + 4 * matrix * matrix
        for split in ("train", "val"):
            volumes, slices = data[split]["volumes"], data[split]["slices"]
            slices = min(slices, 16) if data["preset"] == "realistic" else slices
            if volumes * slices * per_slice > MAX_SYNTHETIC_BYTES:
                raise ConfigError(
                    f"{source}: tasks.{task}.data.{split}: {volumes} volumes × {slices} slices of {matrix}×{matrix}"
                    f" synthetic {challenge} data take about {volumes * slices * per_slice / 2**30:.3g} GiB of files;"
                    f" expected at most {MAX_SYNTHETIC_BYTES // 2**30} GiB (fewer volumes or slices)"
                )


@functools.lru_cache(maxsize=8)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    # Keyed by size and modification time too, so a file replaced in place is hashed again.
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_lpips_weights(weights: str | None, source: str) -> None:
    """``evaluation.lpips_weights`` is torchvision's AlexNet checkpoint, by its size and then its SHA-256.

    The size is compared first, so that a wrong file is refused without being read; the matching
    size bounds what is hashed, in chunks, to the checkpoint's 233 MiB. A checkpoint is unpickled
    by the jobs, so only the published file is accepted.
    """
    if weights is None:
        return
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(f"{source}: evaluation.lpips_weights: file {weights!r} does not exist")
    expected = f"expected torchvision's {ALEXNET_FILE} ({ALEXNET_BYTES} bytes, SHA-256 {ALEXNET_SHA256[:16]}...)"
    stat = path.stat()
    if stat.st_size != ALEXNET_BYTES:
        raise ConfigError(f"{source}: evaluation.lpips_weights: {weights!r} has {stat.st_size} bytes; {expected}")
    digest = _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)
    if digest != ALEXNET_SHA256:
        raise ConfigError(f"{source}: evaluation.lpips_weights: {weights!r} has SHA-256 {digest[:16]}...; {expected}")


def _check_ppd(config: dict[str, Any], source: str) -> None:
    """FLIP's pixels per degree from the viewing geometry (a ``ppd`` given is bounded by the schema).

    Computed in float64, without FLIP's float32 rounding, which overflows with a warning on an
    absurd geometry; an overflow here is inf, which the bound refuses.
    """
    flip = config["evaluation"]["flip"]
    if flip["ppd"] is not None:
        return
    ppd = flip["distance_m"] * flip["monitor_pixels"] / flip["monitor_width_m"] * math.pi / 180
    if ppd > MAX_PPD:
        geometry = ", ".join(f"{key} {flip[key]}" for key in ("distance_m", "monitor_width_m", "monitor_pixels"))
        raise ConfigError(
            f"{source}: evaluation.flip: {geometry} give {ppd:.4g} pixels per degree; expected at most {MAX_PPD:g}"
            " (FLIP's filters widen with it)"
        )


def _check_keywords(source: str, key: str, what: str, params: Mapping[str, Any], factory: Any) -> None:
    """Every key of the configured ``params`` (at ``key``) is a keyword of ``factory``, the class or function of
    ``what``."""
    accepted = keywords(factory)
    for name in params:
        if accepted is not None and name not in accepted:
            raise ConfigError(
                f"{source}: {key}.{name}: not a parameter of {what} (it takes"
                f" {', '.join(accepted) if accepted else 'none'})"
            )


def _check_loss_params(config: dict[str, Any], source: str) -> None:
    for name, settings in config["losses"].items():
        _check_keywords(
            source, f"losses.{name}.params", f"the {name} loss", settings["params"], losses.spec(name).factory
        )
        if settings["params"].get("reduction", "mean") == "none":
            raise ConfigError(
                f"{source}: losses.{name}.params.reduction: 'none' gives one loss per image; training needs a scalar"
                " ('mean' or 'sum')"
            )


def _check_data_sizes(config: dict[str, Any], source: str) -> None:
    """Embedded photos against the crop and the U-net (synthetic MRI crops are checked in _check_semantics)."""
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


def _check_folders(config: dict[str, Any], source: str) -> None:
    """Data folders exist and hold data (the first file found is enough: a tree of a million images is not listed)."""
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
                found, expected = (
                    any(path.suffix.lower() in IMAGE_SUFFIXES for path in folder.rglob("*")),
                    f"image files ({', '.join(IMAGE_SUFFIXES)})",
                )
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
    if "image" in config["own_metrics"]:
        raise ConfigError(
            f"{source}: own_metrics.image: 'image' names the image column of the per-image metric files; choose another"
            " name"
        )
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
    for task, settings in config["tasks"].items():
        data = settings.get("data", {})
        if "mask" in settings and settings["mask"]["center_fraction"] * settings["mask"]["acceleration"] > 1:
            mask = settings["mask"]
            raise ConfigError(
                f"{source}: tasks.{task}.mask.center_fraction: {mask['center_fraction']} exceeds 1/acceleration ="
                f" {1 / mask['acceleration']:.4g}: the fully sampled centre alone would be more than the"
                f" {mask['acceleration']}× acceleration allows"
            )
        task_spec = tasks.spec(settings["kind"])
        problem = task_spec.check(task, {**settings, "data": dataset(config, task)})
        if problem is not None:
            raise ConfigError(f"{source}: tasks.{task}.{problem}")
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
        if task_spec.crop_sized_validation:
            # Metrics are computed on crop × crop images, which every configured metric must fit.
            for metric in config["metrics"]:
                reason = metrics.spec(metric).too_small(settings["crop"])
                if reason is not None:
                    raise ConfigError(f"{source}: tasks.{task}.crop: {settings['crop']} is too small for {reason}")
    _check_model(config, source)
    _check_data_sizes(config, source)
    _check_steps(config, source)
    _check_synthetic_sizes(config, source)
    learning_rate_overrides(config, source)
    _check_lpips_weights(config["evaluation"]["lpips_weights"], source)
    _check_ppd(config, source)
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
    try:
        check_userstudy(config)
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from error


def _check_own_metrics(config: dict[str, Any], source: str) -> None:
    """A metric of the user's own takes its configured ``params``."""
    for name, settings in config["own_metrics"].items():
        _check_keywords(
            source,
            f"own_metrics.{name}.params",
            f"{settings['module']} (the {name} metric)",
            settings["params"],
            import_object(settings["module"]),
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


def data_owner(config: dict[str, Any], task: str) -> str:
    """The task whose ``data`` section ``task`` uses: itself, or the task its ``data_from`` names."""
    return config["tasks"][task].get("data_from", task)


def dataset(config: dict[str, Any], task: str) -> dict[str, Any]:
    """The ``data`` section ``task`` uses (its own, or that of its ``data_from`` task)."""
    return config["tasks"][data_owner(config, task)]["data"]


def task_spec(config: dict[str, Any], task: str) -> Any:
    """The :class:`lossbench.data.taskspec.TaskSpec` of the kind of ``task``."""
    return tasks.spec(config["tasks"][task]["kind"])


def task_tables(config: dict[str, Any]) -> dict[str, str]:
    """Table name → task, for every configured task (``table_6_1`` for the thesis's denoise task, ``table_<task>`` for
    others)."""
    return {task_spec(config, task).table(task): task for task in config["tasks"]}


def _check_channels(config: dict[str, Any], source: str) -> None:
    """Every configured loss and metric accepts the channel count of every task."""
    for task, settings in config["tasks"].items():
        count = channels(settings["kind"])
        for key, names, registry in (
            ("losses", list(config["losses"]), losses),
            ("metrics", config["metrics"], metrics),
        ):
            for name in names:
                accepted = registry.spec(name).channels
                if count not in accepted:
                    raise ConfigError(
                        f"{source}: {key}: {name} takes images of {' or '.join(map(str, accepted))} channel(s), but"
                        f" tasks.{task} has {count}"
                    )


def load(path: str | Path, require_data: bool = True) -> dict[str, Any]:
    """Read (see :func:`read_yaml`) and :func:`validate` the YAML configuration at ``path`` (``require_data`` as
    there)."""
    config = read_yaml(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return validate(config, source=str(path), require_data=require_data)


def _described(value: Any) -> str:
    """What ``value`` is, without its text: a message about a file must not show the file."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return (
            "a non-finite number"
            if not math.isfinite(value)
            else "zero"
            if value == 0
            else "a negative number"
            if value < 0
            else "a number"
        )
    return {str: "text", list: "a list", dict: "a mapping"}.get(type(value), f"a {type(value).__name__}")


def _is_name(key: Any) -> bool:
    """Whether a key read from a file may be shown: it has the shape of a task or loss name, a short identifier, not of
    a line of text."""
    return isinstance(key, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key) is not None


def learning_rate_overrides(config: dict[str, Any], source: str = "config") -> dict[str, dict[str, float]]:
    """``{task: {loss: lr}}`` from the ``learning_rates_file`` (one or several; later files win); empty if unset.

    Messages name the file, and the keys where they can be task or loss names, never the file's
    values: ``learning_rates_file`` may name any file, and its contents must not reach a log.

    Raises:
        ConfigError: naming the file when it is missing or not a mapping of tasks to positive rates.
    """
    files = config.get("learning_rates_file")
    overrides: dict[str, dict[str, float]] = {}
    expected = f"expected {{task: {{loss: positive learning rate}}}} with tasks among {', '.join(config['tasks'])}"
    for path in [files] if isinstance(files, str) else files or []:
        if not Path(path).is_file():
            raise ConfigError(
                f"{source}: learning_rates_file: file {path!r} does not exist (run snakemake lr_sweep_<task> first?)"
            )
        content = read_yaml(path)
        if not isinstance(content, dict):
            raise ConfigError(f"{path}: {expected}, got {_described(content)} (learning_rates_file of {source})")
        for position, (task, rates) in enumerate(content.items()):
            if task not in config["tasks"]:
                raise ConfigError(
                    f"{path}: {expected}, got {repr(task) if _is_name(task) else f'key {position + 1}'}, not a"
                    " configured task"
                )
            if not isinstance(rates, dict):
                raise ConfigError(f"{path}: {task}: expected {{loss: positive learning rate}}, got {_described(rates)}")
            for index, (loss, lr) in enumerate(rates.items()):
                if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
                    raise ConfigError(
                        f"{path}: {task}.{loss if _is_name(loss) else f'<key {index + 1}>'}: expected a positive finite"
                        f" learning rate, got {_described(lr)}"
                    )
            overrides.setdefault(task, {}).update({loss: float(lr) for loss, lr in rates.items()})
    return overrides
