"""The files of a results table (:mod:`lossbench.report.tables`): CSV, Markdown and LaTeX, the comparison with the
thesis's published values, each seed's values, and the table CSV read back (:func:`read_table`).
"""

from __future__ import annotations

from pathlib import Path

from lossbench.core.io import latex_table, markdown_table, numbered, read_rows, write_lines, write_rows
from lossbench.core.specs import tex_escape
from lossbench.registry import PACKAGE, Registry
from lossbench.report import paper
from lossbench.report.tables import (
    SUITES,
    Cell,
    Subject,
    Table,
    as_subject,
    image_means,
    loss_columns,
    metric_cell,
    table_title,
)

_TEX_DIRECTION = {True: r" $\uparrow$", False: r" $\downarrow$"}
#: Columns of a table CSV that are not models.
_NOT_MODELS = ("metric", "label", "best", "not_different_from_best")


def _marked(table: Table, row: dict[str, Cell], mark: str) -> str:
    """The columns whose cell has ``mark`` (``bold``, ``tied``), space-separated."""
    return " ".join(column for column in table.columns if getattr(row[column], mark))


def write_csv(table: Table, path: str | Path) -> None:
    """Wide CSV: one row per metric, a mean column per model (``<model>_std`` too with several seeds), ``best``."""
    with_std = any(cell.std is not None for row in table.cells.values() for cell in row.values())
    losses = [column for column in table.columns if column != "input"]
    header = ["metric", "label", *table.columns, *([f"{loss}_std" for loss in losses] if with_std else [])]
    rows = []
    for metric, row in table.cells.items():
        decimals = table.infos[metric].decimals + 2
        values = [f"{row[c].mean:.{decimals}f}" if row[c].mean is not None else "" for c in table.columns]
        if with_std:
            values += [f"{row[c].std:.{decimals}f}" if row[c].std is not None else "" for c in losses]
        rows.append(
            [metric, table.metric_labels[metric], *values, _marked(table, row, "bold"), _marked(table, row, "tied")]
        )
    write_rows(path, rows, [*header, "best", "not_different_from_best"])


def read_table(path: str | Path) -> dict[str, dict[str, float]]:
    """``{metric: {column: value}}`` of a table CSV of :func:`write_csv`, the input's column included; empty cells (not
    computed) are left out.

    Raises:
        ValueError: naming the file when it is not a table CSV of :func:`write_csv`.
    """
    rows = read_rows(path)
    if not rows or "metric" not in rows[0] or "input" not in rows[0]:
        raise ValueError(f"{path}: not a lossbench table CSV (expected columns metric, label, input, <losses>)")
    columns = [column for column in rows[0] if column not in _NOT_MODELS and not column.endswith("_std")]
    return {row["metric"]: {column: float(row[column]) for column in columns if row.get(column)} for row in rows}


def read_spread(path: str | Path) -> dict[str, float]:
    """The standard deviation over seeds of each model's PSNR in a table CSV (empty with one seed)."""
    psnr = {row["metric"]: row for row in read_rows(path)}.get("psnr", {})
    return {
        column.removesuffix("_std"): float(value) for column, value in psnr.items() if column.endswith("_std") and value
    }


def _shown(cell: Cell, decimals: int) -> str:
    """A cell's Markdown: bold when best, † when not significantly different from the best."""
    text = cell.text(decimals)
    return (f"**{text}**" if cell.bold else text) + ("†" if cell.dagger else "")


def to_markdown(table: Table) -> str:
    """The table in GitHub Markdown, best values in bold, footnotes below."""
    body = [
        [table.metric_labels[metric], *(_shown(row[c], table.infos[metric].decimals) for c in table.columns)]
        for metric, row in table.cells.items()
    ]
    header = ["Metric", *(table.column_label(c) for c in table.columns)]
    lines = [f"**{table.title}.** {table.caption}", "", markdown_table(header, body)]
    if table.footnotes:
        lines += ["", *numbered(table.footnotes)]
    return "\n".join(lines) + "\n"


def _tex_cell(cell: Cell, decimals: int) -> str:
    text = tex_escape(cell.text(decimals))
    return (rf"\textbf{{{text}}}" if cell.bold else text) + (r"$^\dagger$" if cell.dagger else "")


def to_latex(table: Table) -> str:
    """The table as a LaTeX ``table`` with booktabs rules, best values in ``\\textbf``."""
    columns = [
        tex_escape(table.column_label(c)) if c == "input" else table.registry.loss_tex_label(c, table.lpips_pretrained)
        for c in table.columns
    ]
    body = []
    for metric, row in table.cells.items():
        info = table.infos[metric]
        label = (
            info.tex_label + _TEX_DIRECTION[info.higher_is_better]
            if info.tex is not None
            else tex_escape(table.metric_labels[metric])
        )
        body.append([label, *(_tex_cell(row[c], info.decimals) for c in table.columns)])
    return latex_table(
        tex_escape(table.caption),
        ["Metric", *columns],
        body,
        label=f"tab:{table.name}{SUITES[table.suite].label_suffix}",
        notes=[tex_escape(note) for note in numbered(table.footnotes)],
    )


#: Marks a published value known to be wrong (:func:`lossbench.report.paper.errata`); † is significance's mark.
ERRATUM_MARK = "‡"

#: What a reader should expect of the comparison with the thesis: only the degraded input is computed the same way.
VS_PAPER_NOTE = (
    "Only the input column ({input}) is expected to match the thesis on the thesis's data; on the embedded demo data "
    "(other images, smaller models, minutes of CPU training) the models' values are not, and the comparison shows the "
    "direction and the ordering of the losses, not the published values."
)
#: Columns of the comparison with the thesis.
COMPARISON_COLUMNS = ["metric", "model", "ours", "paper", "difference", "note"]


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
    notes, body = list(table.footnotes), []
    for metric, row in table.cells.items():
        decimals = table.infos[metric].decimals
        cells = []
        for column in table.columns:
            theirs, erratum = _published_cell(table, published, errata, metric, column)
            shown = "—" if theirs is None else f"{theirs:.{decimals}f}" + (ERRATUM_MARK if erratum else "")
            cells.append(f"{row[column].text(decimals) or '—'} ({shown})")
            if erratum:
                notes.append(f"{ERRATUM_MARK} {table.metric_labels[metric]}, {table.column_label(column)}: {erratum}")
        body.append([table.metric_labels[metric], *cells])
    notes.append(VS_PAPER_NOTE.format(input=table.input_label))
    header = ["Metric", *(table.column_label(c) for c in table.columns)]
    lines = [f"**{table_title(table.name)}, ours (thesis).** {table.caption}", "", markdown_table(header, body)]
    return "\n".join([*lines, "", *numbered(notes)]) + "\n"


def write_per_seed(
    table: str | Subject,
    model_csvs: dict[str, list[str | Path]],
    seeds: list[int],
    prefix: str | Path,
    lpips_pretrained: bool = True,
    registry: Registry = PACKAGE,
) -> list[Path]:
    """Each seed's value beside the mean ± std (the thesis's future work), as ``prefix``_per_seed.csv/.md.

    Args:
        table: As in :func:`lossbench.report.tables.build_table`.
        model_csvs: Loss name → its models' metric CSVs, in the order of ``seeds``.
        seeds: The seeds of the CSVs.
        prefix: Path prefix of the thesis table (``results/tables/table_6_1``).
        lpips_pretrained: As in :func:`lossbench.report.tables.build_table`, for the labels.
        registry: As in :func:`lossbench.report.tables.build_table`.
    """
    prefix = Path(prefix)
    means = {loss: dict(zip(seeds, map(image_means, paths), strict=True)) for loss, paths in model_csvs.items()}
    losses = [loss for loss in loss_columns(model_csvs) if loss in means]
    about = as_subject(table)
    rows, body = [], []
    computed = [name for by_seed in means.values() for seed_means in by_seed.values() for name in seed_means]
    for metric, info in registry.metric_rows(computed).items():
        if not any(metric in by_seed[seed] for by_seed in means.values() for seed in seeds):
            continue
        for seed in seeds:
            values = {loss: means[loss][seed][metric] * info.scale for loss in losses if metric in means[loss][seed]}
            rows += [
                {"metric": metric, "model": loss, "seed": seed, "value": f"{value:.{info.decimals + 2}f}"}
                for loss, value in values.items()
            ]
            shown = [f"{values[loss]:.{info.decimals}f}" if loss in values else "" for loss in losses]
            body.append([info.label, str(seed), *shown])
        summary = [metric_cell(list(means[loss].values()), metric, info).text(info.decimals) for loss in losses]
        body.append([info.label, "mean ± std", *summary])
    paths = [prefix.with_name(prefix.name + "_per_seed.csv"), prefix.with_name(prefix.name + "_per_seed.md")]
    write_rows(paths[0], rows, ["metric", "model", "seed", "value"])
    header = ["Metric", "Seed", *(registry.loss_label(loss, lpips_pretrained) for loss in losses)]
    title = f"**{table_title(about.name)}, per seed.** {about.caption}"
    write_lines(paths[1], [title, "", markdown_table(header, body, "ll" + "r" * len(losses))])
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
    vs = [prefix.with_name(prefix.name + "_vs_paper" + suffix) for suffix in (".csv", ".md")]
    write_rows(vs[0], comparison_rows(table), COMPARISON_COLUMNS)
    vs[1].write_text(comparison_markdown(table))
    return paths + vs
