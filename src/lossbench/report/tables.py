"""The result tables of the tasks (the thesis's 6.1, 6.3, 6.4, and ``table_<task>`` for other tasks) from per-image
metric files; :mod:`lossbench.report.table_files` writes them as CSV, Markdown and LaTeX.

Rows are the six metrics, then any other computed one (a user's ``own_metrics``), columns the
degraded input and the six losses, then any other; the best value per row among the losses is
bold, as in the thesis. A metric or loss that was not computed keeps an empty cell and a footnote
says why, and a row or column the thesis lacks has no published value: a value is never made up.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossbench.core.io import read_metrics
from lossbench.core.specs import Setting
from lossbench.data import tasks as task_registry
from lossbench.data.taskspec import PER_IMAGE, AnalysisUnit
from lossbench.losses import STUDY_LOSSES
from lossbench.metrics import STUDY_METRICS, MetricInfo
from lossbench.registry import PACKAGE, Registry
from lossbench.report import statistics as significance

#: The thesis's tables → the thesis's task of each (from the task kinds' specs).
THESIS_TABLES = {
    spec.thesis_table: spec.thesis_task for spec in task_registry.SPECS.values() if spec.thesis_table is not None
}


@dataclass(frozen=True)
class Subject:
    """What a metrics table is of.

    Attributes:
        name: Table name (``table_6_1``, ``table_<task>``).
        task: The configured task.
        caption: Table caption.
        input_label: Column label of the degraded input (``Noisy``).
        thesis: Whether the thesis published this table (then it is compared with the published values).
        kind: The task's kind, whose spec gives the statistics' unit of analysis.
    """

    name: str
    task: str
    caption: str
    input_label: str
    thesis: bool
    kind: str | None = None

    @property
    def unit(self) -> AnalysisUnit:
        """The unit the table's statistics count (images, or the volumes of MRI slices)."""
        return PER_IMAGE if self.kind is None else task_registry.spec(self.kind).unit


def subject(task: str, kind: str, settings: dict | None = None) -> Subject:
    """The table of ``task``, a task of ``kind`` with configuration ``settings`` (for the caption)."""
    spec = task_registry.spec(kind)
    return Subject(
        spec.table(task),
        task,
        spec.table_caption(task, settings or {}),
        spec.input_label,
        spec.is_thesis_task(task),
        kind,
    )


def thesis_subject(name: str) -> Subject:
    """The thesis's table ``name`` (``table_6_1``, ``table_6_3``, ``table_6_4``) of the thesis's task.

    Raises:
        ValueError: ``name`` is not one of the thesis's metric tables.
    """
    for spec in task_registry.SPECS.values():
        if spec.thesis_table == name:
            return subject(spec.thesis_task, spec.kind)
    raise ValueError(f"unknown thesis table {name!r}: expected one of {', '.join(THESIS_TABLES)}")


def as_subject(table: str | Subject) -> Subject:
    """``table`` itself, or the thesis table of that name (:func:`thesis_subject`)."""
    return thesis_subject(table) if isinstance(table, str) else table


def direction_mark(info: MetricInfo) -> str:
    """`` ↑`` when higher is better, `` ↓`` when lower is, for row labels."""
    return " ↑" if info.higher_is_better else " ↓"


def table_title(name: str) -> str:
    """``table_6_1`` → ``Table 6.1``."""
    return name.replace("table_", "Table ").replace("_", ".")


#: fastMRI's own leaderboard metrics, per volume (``fastmri.evaluate``), for the extra MRI tables.
FASTMRI_METRICS: dict[str, MetricInfo] = {
    "nmse": MetricInfo("NMSE", higher_is_better=False),
    "psnr": MetricInfo("PSNR", higher_is_better=True, decimals=2),
    "ssim": MetricInfo("SSIM", higher_is_better=True),
}
#: The fastMRI companion tables have one row per volume already.
_VOLUME_ROWS = AnalysisUnit("volume", "volumes")


@dataclass(frozen=True)
class Suite:
    """What a table's rows are: the configured metrics per image (the thesis's tables), or a fixed set per volume.

    Attributes:
        name: ``thesis`` or ``fastmri``, as the configuration's tables name it.
        metrics: The fixed rows; None: the configured metrics that the input's file holds, whose
            settings (FLIP's viewing conditions) a footnote states.
        caption: What follows the subject caption's ``Table x.y`` head; None: the subject's caption.
        title: The heading, ``{task}`` filled in; None: the thesis table's number.
        label_suffix: Appended to the LaTeX label, which would otherwise be the thesis table's.
    """

    name: str
    metrics: Mapping[str, MetricInfo] | None = None
    caption: str | None = None
    title: str | None = None
    label_suffix: str = ""

    def infos(self, computed: Mapping[str, float], registry: Registry) -> dict[str, MetricInfo]:
        """The table's rows, given the metrics the input's file holds and the ``registry`` that knows them."""
        return registry.metric_rows(computed) if self.metrics is None else dict(self.metrics)

    def unit(self, about: Subject) -> AnalysisUnit:
        """What the statistics count: the subject's unit, or a row per volume."""
        return about.unit if self.metrics is None else _VOLUME_ROWS

    def table_caption(self, caption: str) -> str:
        return caption if self.caption is None else caption.split(":")[0] + self.caption

    def heading(self, name: str, task: str) -> str:
        return table_title(name) if self.title is None else self.title.format(task=task)


#: The suites of tables, by the name the configuration gives them.
SUITES = {
    suite.name: suite
    for suite in (
        Suite("thesis"),
        Suite(
            "fastmri",
            FASTMRI_METRICS,
            ": fastMRI's per-volume NMSE, PSNR and SSIM (fastmri.evaluate), averaged over validation volumes.",
            "fastMRI metrics, {task} (not in the thesis)",
            "_fastmri",
        ),
    )
}


@dataclass
class Cell:
    """Mean (and std over seeds) of one metric for one model, on the table's display scale."""

    mean: float | None = None
    std: float | None = None
    seeds: int = 0
    bold: bool = False
    #: Not significantly different from the row's best (lossbench.report.statistics), marked † in the tables.
    tied: bool = False

    @property
    def dagger(self) -> bool:
        """Whether the cell shows †: a bold cell (the best shown value) already says it is the best."""
        return self.tied and not self.bold

    def text(self, decimals: int) -> str:
        if self.mean is None:
            return ""
        value = f"{self.mean:.{decimals}f}"
        return value + (f" ± {self.std:.{decimals}f}" if self.std is not None else "")


@dataclass
class Table:
    """A results table: ``cells[metric][model]``; ``model`` is ``input`` or a loss name."""

    name: str
    task: str
    caption: str
    input_label: str
    metric_labels: dict[str, str]
    cells: dict[str, dict[str, Cell]]
    footnotes: list[str] = field(default_factory=list)
    lpips_pretrained: bool = True
    infos: dict[str, MetricInfo] = field(default_factory=lambda: dict(STUDY_METRICS))
    #: ``thesis`` for the thesis's six metrics, ``fastmri`` for the fastMRI-metrics companion table.
    suite: str = "thesis"
    #: The loss columns: the thesis's six, then any other loss with models (e.g. ``mix``).
    losses: list[str] = field(default_factory=lambda: list(STUDY_LOSSES))
    #: The configuration's losses and metrics, which label the columns.
    registry: Registry = field(default=PACKAGE, repr=False, compare=False)

    @property
    def title(self) -> str:
        """Heading: the thesis table's number, or what a companion table is."""
        return SUITES[self.suite].heading(self.name, self.task)

    @property
    def columns(self) -> list[str]:
        return ["input", *self.losses]

    def column_label(self, column: str) -> str:
        return self.input_label if column == "input" else self.registry.loss_label(column, self.lpips_pretrained)


def loss_columns(model_csvs: dict[str, list[str | Path]]) -> list[str]:
    """The thesis's losses in its order, then the other losses that have models, in their order."""
    return [*STUDY_LOSSES, *(loss for loss in model_csvs if loss not in STUDY_LOSSES)]


def image_means(path: str | Path) -> dict[str, float]:
    """The mean of each metric of a per-image (or per-volume) metric CSV."""
    values = list(read_metrics(path).values())
    return {name: statistics.fmean(row[name] for row in values) for name in values[0]}


def metric_cell(per_seed: list[dict[str, float]], metric: str, info: MetricInfo) -> Cell:
    """The cell of ``metric`` from its mean in each seed's file (:func:`image_means`), on the display scale."""
    scale = info.scale
    values = [means[metric] * scale for means in per_seed if metric in means]
    if not values:
        return Cell()
    return Cell(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


def build_table(
    table: str | Subject,
    input_csv: str | Path,
    model_csvs: dict[str, list[str | Path]],
    lpips_pretrained: bool = True,
    suite: str = "thesis",
    loss_params: dict[str, dict] | None = None,
    evaluation: Mapping[str, Any] | None = None,
    registry: Registry = PACKAGE,
) -> Table:
    """Assemble a table from per-image (or per-volume) metric CSVs.

    Args:
        table: What the table is of (:func:`subject`), or the name of a thesis table
            (``table_6_1``, ``table_6_3``, ``table_6_4``) of the thesis's task.
        input_csv: Metrics of the degraded inputs.
        model_csvs: Loss name → metric CSVs of its models, one per seed.
        lpips_pretrained: Whether LPIPS (metric and loss) used the pretrained AlexNet trunk; if
            not, the LPIPS row and the LPIPS+l2 column say so.
        suite: ``thesis`` for the six metrics of the thesis, ``fastmri`` for fastMRI's per-volume
            NMSE, PSNR and SSIM (MRI tasks); see :data:`SUITES`.
        loss_params: Loss → its configured ``params``; the non-empty ones are stated in a footnote
            (the thesis gives none of them, e.g. LPIPS+l2's weights).
        evaluation: The configuration's ``evaluation`` section; the conditions it sets for a
            metric (FLIP's pixels per degree) are stated in a footnote.
        registry: The configuration's losses and metrics (:class:`lossbench.registry.Registry`), which label the
            rows and columns.
    """
    about, rows = as_subject(table), SUITES[suite]
    unit = rows.unit(about)
    input_means = image_means(input_csv)
    infos = rows.infos(input_means, registry)
    model_means = {loss: [image_means(path) for path in paths] for loss, paths in model_csvs.items()}
    columns = loss_columns(model_csvs)
    cells: dict[str, dict[str, Cell]] = {}
    tests_run = False
    for metric, info in infos.items():
        cells[metric] = {"input": metric_cell([input_means], metric, info)}
        cells[metric].update((loss, metric_cell(model_means.get(loss, []), metric, info)) for loss in columns)
        tests_run = _mark_best(cells[metric], columns, model_csvs, metric, info, unit) or tests_run
    labels = {metric: info.display(lpips_pretrained) + direction_mark(info) for metric, info in infos.items()}
    result = Table(
        about.name,
        about.task,
        rows.table_caption(about.caption),
        about.input_label,
        labels,
        cells,
        lpips_pretrained=lpips_pretrained,
        infos=infos,
        suite=suite,
        losses=columns,
        registry=registry,
    )
    result.footnotes += _missing_notes(result, model_csvs) + _run_notes(result, model_csvs, loss_params)
    if rows.metrics is None and evaluation is not None and about.kind is not None:
        result.footnotes += _conditions(result, Setting(task_registry.channels(about.kind), evaluation))
    if len(model_csvs) > 1:
        result.footnotes.append(_significance_note(result.name, model_csvs, unit, tests_run))
    return result


def _mark_best(
    row: dict[str, Cell],
    columns: list[str],
    model_csvs: dict[str, list[str | Path]],
    metric: str,
    info: MetricInfo,
    unit: AnalysisUnit,
) -> bool:
    """Bold the losses whose shown value is the row's best, and mark those not significantly different from the best
    (:func:`_mark_ties_with_best`); False when no test ran."""
    shown = {loss: round(row[loss].mean, info.decimals) for loss in columns if row[loss].mean is not None}
    if not shown:
        return False
    best = max(shown.values()) if info.higher_is_better else min(shown.values())
    for loss, value in shown.items():
        row[loss].bold = value == best
    return _mark_ties_with_best(row, model_csvs, metric, info, unit)


def _missing_notes(table: Table, model_csvs: dict[str, list[str | Path]]) -> list[str]:
    """Footnotes on what a table lacks: losses without models, metrics not computed, the pretrained LPIPS trunk."""
    notes = [
        f"{table.column_label(loss)}: no model trained (not in the configuration's losses)."
        for loss in STUDY_LOSSES
        if loss not in model_csvs
    ]
    for metric, info in table.infos.items():
        if table.cells[metric]["input"].mean is None:
            reason = (
                "not available in this version"
                if metric not in table.registry.metrics
                else "not in the configuration's metrics"
            )
            notes.append(f"{info.label}: not computed ({reason}).")
    if not table.lpips_pretrained:
        notes.append(
            "LPIPS and LPIPS+l2 used an untrained AlexNet trunk (the pretrained ImageNet weights were not found); their"
            " values are not comparable with the thesis's."
        )
    return notes


def _run_notes(table: Table, model_csvs: dict[str, list[str | Path]], loss_params: dict[str, dict] | None) -> list[str]:
    """Footnotes on how the models ran: the seeds averaged, the losses' configured parameters."""
    notes = []
    seeds = {
        cell.seeds
        for row in table.cells.values()
        for loss, cell in row.items()
        if loss != "input" and cell.mean is not None
    }
    if seeds - {1}:
        notes.append(f"Values are mean ± standard deviation over {', '.join(map(str, sorted(seeds)))} seeds.")
    stated = [
        f"{table.column_label(loss)}: " + ", ".join(f"{key} {value}" for key, value in params.items())
        for loss, params in (loss_params or {}).items()
        if params and loss in model_csvs
    ]
    if stated:
        notes.append("Loss parameters: " + "; ".join(stated) + ".")
    return notes


def _significance_note(name: str, model_csvs: dict[str, list[str | Path]], unit: AnalysisUnit, tests_run: bool) -> str:
    """The footnote on the † marks: what they test, or why there are none."""
    sample = significance.sample_note(model_csvs, unit)
    if tests_run:
        return (
            f"†: not significantly different from the row's best value (paired t-test over validation {unit.plural}"
            f" on seed-averaged values, Holm-corrected, α = {significance.ALPHA}; {sample}; {name}_pairs lists"
            " every pair)."
        )
    return (
        f"No significance marks: {sample}, fewer than the {significance.MIN_UNITS} independent {unit.plural} a"
        " test needs; differences between the losses are not tested."
    )


def _conditions(table: Table, setting: Setting) -> list[str]:
    """The viewing conditions (or other settings) under which the table's computed metrics were measured, as their specs
    state them."""
    specs = [
        table.registry.metric(metric)
        for metric in table.infos
        if table.cells[metric]["input"].mean is not None and metric in table.registry.metrics
    ]
    return [note for note in (spec.conditions(spec.params(setting)) for spec in specs) if note]


def _mark_ties_with_best(
    row: dict[str, Cell], model_csvs: dict[str, list[str | Path]], metric: str, info: MetricInfo, unit: AnalysisUnit
) -> bool:
    """Mark the losses not significantly different from the row's best; False when no test could run."""
    tied = significance.tied_with_best(model_csvs, metric, info, unit)
    for loss in tied or ():
        row[loss].tied = True
    return tied is not None
