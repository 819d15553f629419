"""The result tables of the tasks (the thesis's 6.1, 6.3, 6.4, and ``table_<task>`` for other tasks) from per-image
metric files, as CSV, Markdown and LaTeX.

Rows are the six metrics, then any other computed one (a user's ``own_metrics``), columns the
degraded input and the six losses, then any other; the best value per row among the losses is
bold, as in the thesis. A metric or loss that was not computed keeps an empty cell and a footnote
says why, and a row or column the thesis lacks has no published value: a value is never made up.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossbench import losses as loss_registry
from lossbench import metrics as metric_registry
from lossbench.core.specs import Setting, tex_escape
from lossbench.data import tasks as task_registry
from lossbench.data.taskspec import PER_IMAGE, AnalysisUnit
from lossbench.metrics import STUDY_METRICS, MetricInfo
from lossbench.report import paper
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


def _subject(table: str | Subject) -> Subject:
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
_TEX_DIRECTION = {True: r" $\uparrow$", False: r" $\downarrow$"}


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
    losses: list[str] = field(default_factory=lambda: list(loss_registry.STUDY_LOSSES))

    @property
    def title(self) -> str:
        """Heading: the thesis table's number, or what a companion table is."""
        return table_title(self.name) if self.suite == "thesis" else f"fastMRI metrics, {self.task} (not in the thesis)"

    @property
    def columns(self) -> list[str]:
        return ["input", *self.losses]

    def column_label(self, column: str) -> str:
        return self.input_label if column == "input" else loss_registry.label(column, self.lpips_pretrained)


def _loss_columns(model_csvs: dict[str, list[str | Path]]) -> list[str]:
    """The thesis's losses in its order, then the other losses that have models, in their order."""
    return [*loss_registry.STUDY_LOSSES, *(loss for loss in model_csvs if loss not in loss_registry.STUDY_LOSSES)]


def _image_means(path: str | Path) -> dict[str, float]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path}: no per-image rows")
    key = next(iter(rows[0]))  # the image or volume id
    return {name: statistics.fmean(float(row[name]) for row in rows) for name in rows[0] if name != key}


def _cell(per_seed: list[dict[str, float]], metric: str, info: MetricInfo) -> Cell:
    scale = info.scale
    values = [means[metric] * scale for means in per_seed if metric in means]
    if not values:
        return Cell()
    return Cell(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


#: The fastMRI companion tables have one row per volume already.
_VOLUME_ROWS = AnalysisUnit("volume", "volumes")


def build_table(
    table: str | Subject,
    input_csv: str | Path,
    model_csvs: dict[str, list[str | Path]],
    lpips_pretrained: bool = True,
    suite: str = "thesis",
    loss_params: dict[str, dict] | None = None,
    evaluation: Mapping[str, Any] | None = None,
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
            NMSE, PSNR and SSIM (MRI tasks).
        loss_params: Loss → its configured ``params``; the non-empty ones are stated in a footnote
            (the thesis gives none of them, e.g. LPIPS+l2's weights).
        evaluation: The configuration's ``evaluation`` section; the conditions it sets for a
            metric (FLIP's pixels per degree) are stated in a footnote.
    """
    about = _subject(table)
    name, caption = about.name, about.caption
    unit = about.unit if suite == "thesis" else _VOLUME_ROWS
    input_means = _image_means(input_csv)
    infos = metric_registry.rows(input_means) if suite == "thesis" else dict(FASTMRI_METRICS)
    if suite == "fastmri":
        caption = (
            caption.split(":")[0]
            + ": fastMRI's per-volume NMSE, PSNR and SSIM (fastmri.evaluate), averaged over validation volumes."
        )
    model_means = {loss: [_image_means(path) for path in paths] for loss, paths in model_csvs.items()}
    cells: dict[str, dict[str, Cell]] = {}
    columns = _loss_columns(model_csvs)
    tests_run = False
    for metric, info in infos.items():
        row = {"input": _cell([input_means], metric, info)}
        for loss in columns:
            row[loss] = _cell(model_means.get(loss, []), metric, info)
        shown = {loss: round(row[loss].mean, info.decimals) for loss in columns if row[loss].mean is not None}
        if shown:
            best = max(shown.values()) if info.higher_is_better else min(shown.values())
            for loss, value in shown.items():
                row[loss].bold = value == best
            tested = _mark_ties_with_best(row, model_csvs, metric, info, unit)
            tests_run = tests_run or tested
        cells[metric] = row
    labels = {metric: info.display(lpips_pretrained) + direction_mark(info) for metric, info in infos.items()}
    table = Table(
        name,
        about.task,
        caption,
        about.input_label,
        labels,
        cells,
        lpips_pretrained=lpips_pretrained,
        infos=infos,
        suite=suite,
        losses=columns,
    )
    for loss in loss_registry.STUDY_LOSSES:
        if loss not in model_csvs:
            table.footnotes.append(f"{table.column_label(loss)}: no model trained (not in the configuration's losses).")
    for metric in infos:
        if cells[metric]["input"].mean is None:
            reason = (
                "not available in this version"
                if metric not in metric_registry.names()
                else "not in the configuration's metrics"
            )
            table.footnotes.append(f"{infos[metric].label}: not computed ({reason}).")
    if not lpips_pretrained:
        table.footnotes.append(
            "LPIPS and LPIPS+l2 used an untrained AlexNet trunk (the pretrained ImageNet weights were not found); their"
            " values are not comparable with the thesis's."
        )
    seeds = {
        cell.seeds for row in cells.values() for loss, cell in row.items() if loss != "input" and cell.mean is not None
    }
    if seeds - {1}:
        table.footnotes.append(f"Values are mean ± standard deviation over {', '.join(map(str, sorted(seeds)))} seeds.")
    stated = [
        f"{loss_registry.label(loss, lpips_pretrained)}: "
        + ", ".join(f"{key} {value}" for key, value in params.items())
        for loss, params in (loss_params or {}).items()
        if params and loss in model_csvs
    ]
    if stated:
        table.footnotes.append("Loss parameters: " + "; ".join(stated) + ".")
    if suite == "thesis" and evaluation is not None and about.kind is not None:
        table.footnotes += _conditions(infos, cells, Setting(task_registry.channels(about.kind), evaluation))
    if len(model_csvs) > 1:
        sample = significance.sample_note(model_csvs, unit)
        if tests_run:
            table.footnotes.append(
                f"†: not significantly different from the row's best value (paired t-test over validation {unit.plural}"
                f" on seed-averaged values, Holm-corrected, α = {significance.ALPHA}; {sample}; {name}_pairs lists"
                " every pair)."
            )
        else:
            table.footnotes.append(
                f"No significance marks: {sample}, fewer than the {significance.MIN_UNITS} independent {unit.plural} a"
                " test needs; differences between the losses are not tested."
            )
    return table


def _conditions(infos: dict[str, MetricInfo], cells: dict[str, dict[str, Cell]], setting: Setting) -> list[str]:
    """The viewing conditions (or other settings) under which the table's computed metrics were measured, as their specs
    state them."""
    notes = []
    for metric in infos:
        if cells[metric]["input"].mean is None or metric not in metric_registry.names():
            continue
        spec = metric_registry.spec(metric)
        note = spec.conditions(spec.params(setting))
        if note:
            notes.append(note)
    return notes


def _mark_ties_with_best(
    row: dict[str, Cell], model_csvs: dict[str, list[str | Path]], metric: str, info: MetricInfo, unit: AnalysisUnit
) -> bool:
    """Mark the losses not significantly different from the row's best; False when no test could run."""
    losses, values = significance.stack(model_csvs, metric, info.scale, unit)
    if len(losses) < 2 or not significance.testable(values.shape[2]):
        return False
    means = values.mean(axis=(1, 2))
    best = losses[int(means.argmax() if info.higher_is_better else means.argmin())]
    for loss in significance.not_different_from_best(losses, values, best):
        row[loss].tied = True
    return True


def write_csv(table: Table, path: str | Path) -> None:
    """Wide CSV: one row per metric, a mean column per model (``<model>_std`` too with several seeds), ``best``."""
    with_std = any(cell.std is not None for row in table.cells.values() for cell in row.values())
    header = ["metric", "label", *table.columns]
    if with_std:
        header += [f"{column}_std" for column in table.columns if column != "input"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*header, "best", "not_different_from_best"])
        for metric, row in table.cells.items():
            decimals = table.infos[metric].decimals + 2
            values = [f"{row[c].mean:.{decimals}f}" if row[c].mean is not None else "" for c in table.columns]
            if with_std:
                values += [
                    f"{row[c].std:.{decimals}f}" if row[c].std is not None else ""
                    for c in table.columns
                    if c != "input"
                ]
            best = " ".join(c for c in table.columns if row[c].bold)
            writer.writerow(
                [metric, table.metric_labels[metric], *values, best, " ".join(c for c in table.columns if row[c].tied)]
            )


def _notes(footnotes: list[str], prefix: str) -> list[str]:
    return [f"{prefix}{index}. {note}" for index, note in enumerate(footnotes, 1)]


def to_markdown(table: Table) -> str:
    """The table in GitHub Markdown, best values in bold, footnotes below."""
    lines = [f"**{table.title}.** {table.caption}", ""]
    lines.append("| Metric | " + " | ".join(table.column_label(c) for c in table.columns) + " |")
    lines.append("|---|" + "---:|" * len(table.columns))
    for metric, row in table.cells.items():
        decimals = table.infos[metric].decimals
        cells = [
            (f"**{row[c].text(decimals)}**" if row[c].bold else row[c].text(decimals)) + ("†" if row[c].dagger else "")
            for c in table.columns
        ]
        lines.append(f"| {table.metric_labels[metric]} | " + " | ".join(cells) + " |")
    if table.footnotes:
        lines += ["", *_notes(table.footnotes, "")]
    return "\n".join(lines) + "\n"


def to_latex(table: Table) -> str:
    """The table as a LaTeX ``table`` with booktabs rules, best values in ``\\textbf``."""
    columns = [
        tex_escape(table.column_label(c)) if c == "input" else loss_registry.tex_label(c, table.lpips_pretrained)
        for c in table.columns
    ]
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        rf"\caption{{{tex_escape(table.caption)}}}",
        rf"\label{{tab:{table.name}{'' if table.suite == 'thesis' else '_' + table.suite}}}",
        r"\begin{tabular}{l" + "r" * len(table.columns) + "}",
        r"\toprule",
        "Metric & " + " & ".join(columns) + r" \\",
        r"\midrule",
    ]
    for metric, row in table.cells.items():
        decimals = table.infos[metric].decimals
        cells = [tex_escape(row[c].text(decimals)) for c in table.columns]
        cells = [
            (rf"\textbf{{{text}}}" if row[c].bold else text) + (r"$^\dagger$" if row[c].dagger else "")
            for c, text in zip(table.columns, cells)
        ]
        info = table.infos[metric]
        label = (
            info.tex_label + _TEX_DIRECTION[info.higher_is_better]
            if info.tex is not None
            else tex_escape(table.metric_labels[metric])
        )
        lines.append(f"{label} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.footnotes:
        lines += [r"\par\smallskip\footnotesize"] + [tex_escape(note) + r"\\" for note in _notes(table.footnotes, "")]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


#: Marks a published value known to be wrong (:func:`lossbench.report.paper.errata`); † is significance's mark.
ERRATUM_MARK = "‡"

#: What a reader should expect of the comparison with the thesis: only the degraded input is computed the same way.
VS_PAPER_NOTE = (
    "Only the input column ({input}) is expected to match the thesis on the thesis's data; on the embedded demo data "
    "(other images, smaller models, minutes of CPU training) the models' values are not, and the comparison shows the "
    "direction and the ordering of the losses, not the published values."
)


def _published_cell(
    table: Table,
    published: dict[str, dict[str, float]],
    errata: dict[tuple[str, str, str], str],
    metric: str,
    column: str,
) -> tuple[float | None, str | None]:
    """The thesis's value of a cell (None where the thesis has none) and its erratum, if any."""
    return published.get(metric, {}).get(column), errata.get((table.name, metric, column))


def comparison_rows(table: Table) -> list[dict[str, str]]:
    """Ours beside the thesis's published value, one row per (metric, model).

    A model or metric the thesis lacks has an empty ``paper`` cell; a published cell listed in
    :func:`lossbench.report.paper.errata` is shown but not compared, with the erratum in ``note``.
    """
    published, errata = paper.table(table.name), paper.errata()
    rows = []
    for metric, row in table.cells.items():
        decimals = table.infos[metric].decimals
        for column in table.columns:
            ours = row[column].mean
            theirs, erratum = _published_cell(table, published, errata, metric, column)
            comparable = ours is not None and theirs is not None and erratum is None
            rows.append(
                {
                    "metric": metric,
                    "model": column,
                    "ours": f"{ours:.{decimals}f}" if ours is not None else "",
                    "paper": f"{theirs:.{decimals}f}" if theirs is not None else "",
                    "difference": f"{ours - theirs:+.{decimals}f}" if comparable else "",
                    "note": erratum or "",
                }
            )
    return rows


def comparison_markdown(table: Table) -> str:
    """Markdown table whose cells read ``ours (paper)``; flagged published cells carry :data:`ERRATUM_MARK` and a
    footnote."""
    published, errata = paper.table(table.name), paper.errata()
    lines = [f"**{table_title(table.name)}, ours (thesis).** {table.caption}", ""]
    lines.append("| Metric | " + " | ".join(table.column_label(c) for c in table.columns) + " |")
    lines.append("|---|" + "---:|" * len(table.columns))
    notes = list(table.footnotes)
    for metric, row in table.cells.items():
        decimals = table.infos[metric].decimals
        cells = []
        for column in table.columns:
            theirs, erratum = _published_cell(table, published, errata, metric, column)
            shown = "—" if theirs is None else f"{theirs:.{decimals}f}" + (ERRATUM_MARK if erratum else "")
            cells.append(f"{row[column].text(decimals) or '—'} ({shown})")
            if erratum:
                notes.append(f"{ERRATUM_MARK} {table.metric_labels[metric]}, {table.column_label(column)}: {erratum}")
        lines.append(f"| {table.metric_labels[metric]} | " + " | ".join(cells) + " |")
    notes.append(VS_PAPER_NOTE.format(input=table.input_label))
    lines += ["", *_notes(notes, "")]
    return "\n".join(lines) + "\n"


def write_per_seed(
    table: str | Subject,
    model_csvs: dict[str, list[str | Path]],
    seeds: list[int],
    prefix: str | Path,
    lpips_pretrained: bool = True,
) -> list[Path]:
    """Each seed's value beside the mean ± std (the thesis's future work), as ``prefix``_per_seed.csv/.md.

    Args:
        table: As in :func:`build_table`.
        model_csvs: Loss name → its models' metric CSVs, in the order of ``seeds``.
        seeds: The seeds of the CSVs.
        prefix: Path prefix of the thesis table (``results/tables/table_6_1``).
        lpips_pretrained: As in :func:`build_table`, for the labels.
    """
    prefix = Path(prefix)
    means = {loss: dict(zip(seeds, map(_image_means, paths), strict=True)) for loss, paths in model_csvs.items()}
    losses = [loss for loss in _loss_columns(model_csvs) if loss in means]
    about = _subject(table)
    rows, lines = [], [f"**{table_title(about.name)}, per seed.** {about.caption}", ""]
    lines += [
        "| Metric | Seed | " + " | ".join(loss_registry.label(loss, lpips_pretrained) for loss in losses) + " |",
        "|---|---|" + "---:|" * len(losses),
    ]
    computed = [name for by_seed in means.values() for seed_means in by_seed.values() for name in seed_means]
    for metric, info in metric_registry.rows(computed).items():
        if not any(metric in by_seed[seed] for by_seed in means.values() for seed in seeds):
            continue
        for seed in seeds:
            values = {loss: means[loss][seed][metric] * info.scale for loss in losses if metric in means[loss][seed]}
            rows += [
                {"metric": metric, "model": loss, "seed": seed, "value": f"{value:.{info.decimals + 2}f}"}
                for loss, value in values.items()
            ]
            lines.append(
                f"| {info.label} | {seed} | "
                + " | ".join(f"{values[loss]:.{info.decimals}f}" if loss in values else "" for loss in losses)
                + " |"
            )
        summary = [_cell(list(means[loss].values()), metric, info).text(info.decimals) for loss in losses]
        lines.append(f"| {info.label} | mean ± std | " + " | ".join(summary) + " |")
    paths = [prefix.with_name(prefix.name + "_per_seed.csv"), prefix.with_name(prefix.name + "_per_seed.md")]
    with open(paths[0], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["metric", "model", "seed", "value"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    paths[1].write_text("\n".join(lines) + "\n")
    return paths


def write_all(table: Table, prefix: str | Path, with_paper: bool = True) -> list[Path]:
    """Write ``prefix``.csv/.md/.tex and, ``with_paper``, ``prefix``_vs_paper.csv/.md; returns the paths."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [prefix.with_name(prefix.name + s) for s in (".csv", ".md", ".tex")]
    write_csv(table, paths[0])
    paths[1].write_text(to_markdown(table))
    paths[2].write_text(to_latex(table))
    if not with_paper:
        return paths
    vs = prefix.with_name(prefix.name + "_vs_paper")
    with open(vs.with_name(vs.name + ".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["metric", "model", "ours", "paper", "difference", "note"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(comparison_rows(table))
    vs.with_name(vs.name + ".md").write_text(comparison_markdown(table))
    return paths + [vs.with_name(vs.name + ".csv"), vs.with_name(vs.name + ".md")]
