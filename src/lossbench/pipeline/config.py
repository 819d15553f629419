"""Configuration: reading and schema validation with defaults; the checks beyond the schema are the specs'.

The Snakefile and every CLI load configuration through :func:`load` or :func:`validate`, so a bad
value is rejected before any job runs, with one line that names the file, the key and what was
expected. The YAML is read within limits (:mod:`lossbench.pipeline.config_file`); the schema's
enums and the ``model`` and ``tasks`` parts come from the registries; each section's spec then
checks its own keys, and :mod:`lossbench.pipeline.consistency` what lies between sections.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from lossbench import losses, metrics, models
from lossbench.data import tasks
from lossbench.pipeline.config_file import (
    MAX_YAML_DEPTH,
    MAX_YAML_VALUES,
    ConfigError,
    parse_yaml,
    read_yaml,
)
from lossbench.pipeline.consistency import check_consistency, missing_data_folders

#: Packaged with the library (package data), so an installed lossbench finds it too.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"

#: Most pooling levels of a network: 2**16-pixel crops, whose activations exceed the memory limit of training
#: (:data:`lossbench.pipeline.consistency.MAX_TRAINING_BYTES`) at any width.
MAX_POOLING_LEVELS = 16


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
    check_consistency(config, source)
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
        return parse_yaml(node, f"--config {_key(path)}") if len(path) > 1 and isinstance(node, str) and node else node

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
    :func:`lossbench.pipeline.consistency.check_consistency` imports them.
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


def load(path: str | Path, require_data: bool = True) -> dict[str, Any]:
    """Read (see :func:`read_yaml`) and :func:`validate` the YAML configuration at ``path`` (``require_data`` as
    there)."""
    config = read_yaml(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return validate(config, source=str(path), require_data=require_data)
