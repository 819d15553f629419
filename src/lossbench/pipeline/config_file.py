"""Reading configuration files: YAML within limits, and the ``learning_rates_file`` a configuration names.

Every message is one line naming the file and, where it can, the line or key; never the file's
text: a configuration may name any file (``learning_rates_file``), and its contents must not reach a
log. :mod:`lossbench.pipeline.config` validates what is read here.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

#: Limits of a YAML file read as configuration: far above any real one (config.yaml: 9 KiB, 391
#: values, 6 levels deep, no aliases), far below what takes the machine or the interpreter's stack.
#: The depth and the values bound a configuration given as a dict (:func:`lossbench.pipeline.config.validate`) too.
MAX_YAML_BYTES = 2**20
MAX_YAML_DEPTH = 100
MAX_YAML_VALUES = 100_000


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
    return parse_yaml(text, str(path))


def parse_yaml(text: str, where: str) -> Any:
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
