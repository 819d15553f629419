"""What a validated configuration says about its tasks: the data section each uses, its kind's spec, its table."""

from __future__ import annotations

from typing import Any

from lossbench.data import tasks
from lossbench.data.taskspec import TaskSpec


def data_owner(config: dict[str, Any], task: str) -> str:
    """The task whose ``data`` section ``task`` uses: itself, or the task its ``data_from`` names."""
    return config["tasks"][task].get("data_from", task)


def dataset(config: dict[str, Any], task: str) -> dict[str, Any]:
    """The ``data`` section ``task`` uses (its own, or that of its ``data_from`` task)."""
    return config["tasks"][data_owner(config, task)]["data"]


def task_spec(config: dict[str, Any], task: str) -> TaskSpec:
    """The :class:`lossbench.data.taskspec.TaskSpec` of the kind of ``task``."""
    return tasks.spec(config["tasks"][task]["kind"])


def task_tables(config: dict[str, Any]) -> dict[str, str]:
    """Table name → task, for every configured task (``table_6_1`` for the thesis's denoise task, ``table_<task>`` for
    others)."""
    return {task_spec(config, task).table(task): task for task in config["tasks"]}
