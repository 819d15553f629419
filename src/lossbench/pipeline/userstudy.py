"""File names of the user study in the workflow (``workflow/rules/userstudy.smk``).

Study ids: ``thesis_denoise`` and ``thesis_mri`` (the thesis's data, always analysed) and
``ours_<study>`` (our own studies, ``userstudy.studies``: study → the tasks whose stimuli it shows;
analysed when ``userstudy.responses`` is configured and ``<responses>/<study>/`` holds answer files).
Which of our studies have answers is decided when the workflow is planned, so that a study nobody
has answered yet is named (:func:`study_status`) rather than failing its jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lossbench.data.tasks import SPECS
from lossbench.pipeline.experiment import results_dir
from lossbench.userstudy import seeds as study_seeds
from lossbench.userstudy.counts import THESIS_STUDIES
from lossbench.userstudy.report import JOD_ORIGINS


def _configured(config: dict[str, Any], study: str) -> list[str]:
    """The tasks of ``study`` that are configured under ``tasks``."""
    return [task for task in config["userstudy"]["studies"][study] if task in config["tasks"]]


def check_userstudy(config: dict[str, Any]) -> None:
    """Raise a one-line ValueError where the ``userstudy`` block contradicts the rest of ``config``."""
    userstudy = config["userstudy"]
    # A study may name a thesis task this configuration leaves out (it is then skipped), never an unknown one.
    known = list(dict.fromkeys([*config["tasks"], *(spec.thesis_task for spec in SPECS.values() if spec.thesis_task)]))
    for study, tasks in userstudy["studies"].items():
        unknown = [(position, task) for position, task in enumerate(tasks) if task not in known]
        if unknown:
            position, task = unknown[0]
            raise ValueError(
                f"userstudy.studies.{study}.{position}: {task!r} is not one of {known} (the configured tasks and the"
                " thesis's)"
            )
        missing = [task for task in _configured(config, study) if task not in userstudy["stimuli"]]
        # A study without any stimuli is simply not run; one with some would silently lose a task.
        if missing and len(missing) < len(_configured(config, study)):
            raise ValueError(f"userstudy.studies.{study}: task {missing[0]} has no images under userstudy.stimuli")
    if seeds_as_conditions(config):
        if len(config["seeds"]) < 2:
            raise ValueError(
                f"userstudy.seeds: all shows every seed's model, but seeds lists {len(config['seeds'])}"
                f" ({config['seeds']}); give at least 2 seeds, or userstudy.seeds: first"
            )
        study_seeds.check_losses(list(config["losses"]))
    origin = userstudy["jod_origin"]
    if origin not in JOD_ORIGINS and origin not in config["losses"]:
        raise ValueError(
            f"userstudy.jod_origin: expected {', '.join(JOD_ORIGINS)} or a configured loss"
            f" ({', '.join(config['losses'])}), got {origin!r}"
        )


def study_tasks(config: dict[str, Any]) -> dict[str, list[str]]:
    """Our own studies → their tasks, those configured with stimuli; a study with none is left out."""
    studies = {
        study: [task for task in _configured(config, study) if task in config["userstudy"]["stimuli"]]
        for study in config["userstudy"]["studies"]
    }
    return {study: tasks for study, tasks in studies.items() if tasks}


def answer_files(config: dict[str, Any], study: str) -> list[str]:
    """The observers' answer files of our own ``study`` (``<userstudy.responses>/<study>/*.jsonl``), sorted."""
    return sorted(str(path) for path in Path(config["userstudy"]["responses"], study).glob("*.jsonl"))


def own_studies(config: dict[str, Any]) -> list[str]:
    """Our own studies to analyse: with a responses folder configured, those with answer files."""
    if not config["userstudy"]["responses"]:
        return []
    return [f"ours_{study}" for study in study_tasks(config) if answer_files(config, study)]


def study_status(config: dict[str, Any]) -> list[dict[str, str]]:
    """One row per own study: its tasks, answer files and whether it is analysed; none without a responses folder."""
    if not config["userstudy"]["responses"]:
        return []
    rows = []
    for study, tasks in study_tasks(config).items():
        folder, files = Path(config["userstudy"]["responses"], study), answer_files(config, study)
        status = (
            f"analysed: tables/userstudy_ours_{study}*, figures/userstudy_ours_{study}_*"
            if files
            else f"not analysed: no answers (no <observer>.jsonl in {folder})"
        )
        rows.append(
            {
                "study": study,
                "tasks": " + ".join(tasks),
                "responses": str(folder),
                "answer_files": str(len(files)),
                "status": status,
            }
        )
    return rows


def study_outputs(config: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Study id → (table name, JOD figure name, ranking-triangle figure name)."""
    outputs = {
        f"thesis_{key}": (study.table, study.jod_figure, study.triangle_figure) for key, study in THESIS_STUDIES.items()
    }
    outputs.update(
        {
            study: (f"userstudy_{study}", f"userstudy_{study}_jod", f"userstudy_{study}_triangle")
            for study in own_studies(config)
        }
    )
    return outputs


def conditions(config: dict[str, Any]) -> list[str]:
    """The conditions of our studies, loss after loss, in the order of :func:`stimulus_seeds`' models: the losses'
    names, or every (loss, seed) with ``userstudy.seeds: all`` (:mod:`lossbench.userstudy.seeds`)."""
    return study_seeds.conditions(list(config["losses"]), config["seeds"], study_seeds.choice(config["userstudy"]))


def stimulus_seeds(config: dict[str, Any]) -> list[int]:
    """The seeds whose models our studies show: the first configured one, or all with ``userstudy.seeds: all``."""
    return list(config["seeds"]) if seeds_as_conditions(config) else config["seeds"][:1]


def seeds_as_conditions(config: dict[str, Any]) -> bool:
    """Whether our studies show every seed's model (``userstudy.seeds: all``), and so get the seed analysis."""
    return study_seeds.choice(config["userstudy"]) == "all"


def scores(config: dict[str, Any]) -> str:
    """The folder, under the results, of the JOD (``jod.csv``, ``samples.csv``) of each loss of one of our studies
    that the metrics are compared with, as a pattern of ``{study}``: the study's scaling, or with every seed's
    model the means over each loss's seeds (:func:`lossbench.userstudy.seed_spread.loss_summary`)."""
    return "userstudy/{study}/losses" if seeds_as_conditions(config) else "userstudy/{study}"


def seed_files(study: str, results: str) -> list[str]:
    """The seed analysis of one of our studies: its table (CSV, Markdown, LaTeX), the ratio's CSV, and each loss's
    JOD over its seeds (:func:`scores`)."""
    return [f"{results}/tables/userstudy_{study}_seeds{suffix}" for suffix in (".csv", "_variance.csv", ".md", ".tex")]


def counts_file(study: str, results: str) -> str:
    """Count matrices of a study: shipped with the package (thesis) or collected per observer (ours, under
    ``results``)."""
    if study.startswith("thesis_"):
        return str(THESIS_STUDIES[study.removeprefix("thesis_")].path)
    return f"{results}/userstudy/{study}/observer_counts.csv"


def analysis_inputs(study: str, results: str) -> dict[str, str]:
    """Inputs of a study's analysis: its counts and, for our own studies, the lines skipped in their answer files."""
    inputs = {"counts": counts_file(study, results)}
    if not study.startswith("thesis_"):
        inputs["skipped"] = f"{results}/userstudy/{study}/skipped_lines.csv"
    return inputs


def observers(study: str) -> int | None:
    """Observers of a study whose counts are pooled (the thesis's); None where the counts are per observer (ours)."""
    return THESIS_STUDIES[study.removeprefix("thesis_")].observers if study.startswith("thesis_") else None


def status_files(config: dict[str, Any]) -> list[str]:
    """The table of our studies' answers (:func:`study_status`), when a responses folder is configured."""
    return (
        [f"{results_dir(config)}/tables/userstudy_ours_studies.{ext}" for ext in ("csv", "md")]
        if config["userstudy"]["responses"]
        else []
    )


def title(study: str, config: dict[str, Any]) -> str:
    """Title of a study's tables and figures."""
    if study.startswith("thesis_"):
        key = study.removeprefix("thesis_")
        thesis = THESIS_STUDIES[key]
        return (
            f"Thesis user study, {'denoising' if key == 'denoise' else 'MRI reconstruction'} ({thesis.observers}"
            f" observers × {thesis.images} images)"
        )
    name = study.removeprefix("ours_")
    tasks = study_tasks(config)[name]
    return f"Our user study, {name}" + ("" if tasks == [name] else f" ({' + '.join(tasks)})")


def table_files(name: str, results: str) -> list[str]:
    """The probability table and JOD table of a study, in CSV, Markdown and LaTeX, under the experiment's
    ``results``."""
    return [f"{results}/tables/{name}{suffix}.{ext}" for suffix in ("", "_jod") for ext in ("csv", "md", "tex")]


def figure_files(name: str, results: str) -> list[str]:
    return [f"{results}/figures/{name}.{ext}" for ext in ("png", "pdf")]


def targets(config: dict[str, Any]) -> list[str]:
    """Every user-study file: tables, figures, the metric–observer agreement and self-preference, stimuli, our analysis
    and which of our studies have answers."""
    results = results_dir(config)
    files = []
    for table, jod_figure, triangle_figure in study_outputs(config).values():
        files += (
            table_files(table, results) + figure_files(jod_figure, results) + figure_files(triangle_figure, results)
        )
    for study in ["thesis", *own_studies(config)]:
        files += [f"{results}/tables/userstudy_kendall_{study}.{ext}" for ext in ("csv", "md")]
        files += [f"{results}/tables/userstudy_self_preference_{study}.{ext}" for ext in ("csv", "md")]
        files += figure_files(f"userstudy_self_preference_{study}", results)
    files += [f"{results}/userstudy/stimuli/{study}/manifest.json" for study in study_tasks(config)]
    files += [path for study in own_studies(config) for path in screening_files(study, results)]
    if seeds_as_conditions(config):
        files += [path for study in own_studies(config) for path in seed_files(study, results)]
    return files + status_files(config)


def screening_files(study: str, results: str) -> list[str]:
    """Observer screening of one of our studies: its table, and the JOD table without the flagged observers."""
    return [f"{results}/tables/userstudy_{study}_screening.{ext}" for ext in ("csv", "md")] + [
        f"{results}/tables/userstudy_{study}_jod_without_flagged.{ext}" for ext in ("csv", "md", "tex")
    ]
