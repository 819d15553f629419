"""File names of the user study in the workflow (``workflow/rules/userstudy.smk``).

Study ids: ``thesis_denoise`` and ``thesis_mri`` (the thesis's data, always analysed) and
``ours_<task>`` (our own study of a task, analysed when ``userstudy.responses`` is configured).
"""

from __future__ import annotations

from typing import Any

from lossbench.userstudy.counts import THESIS_STUDIES


def stimuli_tasks(config: dict[str, Any]) -> list[str]:
    """Configured tasks with stimuli for our own study."""
    return [task for task in config["userstudy"]["stimuli"] if task in config["tasks"]]


def own_studies(config: dict[str, Any]) -> list[str]:
    """Our own studies to analyse: one per task with stimuli, when a responses folder is configured."""
    return [f"ours_{task}" for task in stimuli_tasks(config)] if config["userstudy"]["responses"] else []


def study_outputs(config: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Study id → (table name, JOD figure name, ranking-triangle figure name)."""
    outputs = {f"thesis_{key}": (study.table, study.jod_figure, study.triangle_figure) for key, study in THESIS_STUDIES.items()}
    outputs.update({study: (f"userstudy_{study}", f"userstudy_{study}_jod", f"userstudy_{study}_triangle") for study in own_studies(config)})
    return outputs


def counts_file(study: str) -> str:
    """Count matrices of a study: shipped with the package (thesis) or collected per observer (ours)."""
    if study.startswith("thesis_"):
        return str(THESIS_STUDIES[study.removeprefix("thesis_")].path)
    return f"results/userstudy/{study}/observer_counts.csv"


def title(study: str) -> str:
    """Title of a study's tables and figures."""
    if study.startswith("thesis_"):
        key = study.removeprefix("thesis_")
        thesis = THESIS_STUDIES[key]
        return f"Thesis user study, {'denoising' if key == 'denoise' else 'MRI reconstruction'} ({thesis.observers} observers × {thesis.images} images)"
    return f"Our user study, {study.removeprefix('ours_')}"


def table_files(name: str) -> list[str]:
    """The probability table and JOD table of a study, in CSV, Markdown and LaTeX."""
    return [f"results/tables/{name}{suffix}.{ext}" for suffix in ("", "_jod") for ext in ("csv", "md", "tex")]


def figure_files(name: str) -> list[str]:
    return [f"results/figures/{name}.{ext}" for ext in ("png", "pdf")]


def targets(config: dict[str, Any]) -> list[str]:
    """Every user-study file: tables, figures, the metric–observer agreement, stimuli, our analysis."""
    files = []
    for table, jod_figure, triangle_figure in study_outputs(config).values():
        files += table_files(table) + figure_files(jod_figure) + figure_files(triangle_figure)
    files += [f"results/tables/userstudy_kendall_{study}.{ext}" for study in ["thesis", *own_studies(config)] for ext in ("csv", "md")]
    files += [f"results/userstudy/stimuli/{task}/manifest.json" for task in stimuli_tasks(config)]
    return files
