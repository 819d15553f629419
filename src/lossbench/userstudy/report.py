"""Tables and figures of a user study: probability tables (thesis Tables 6.2, 6.5), JOD tables,
JOD plots with confidence intervals (Figs. 6.7, 6.17) and ranking triangles (Figs. 6.8, 6.18).

JOD scores are relative; where a table or figure puts its origin is chosen by ``origin``: the
thesis's "The model with the lowest score is scaled to 1" (captions of Figs. 6.7 and 6.17,
``lowest_is_1``), the scaling's own mean 0 (``mean0``), or one loss at 0 (its name).
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from lossbench.core.io import (  # noqa: E402
    latex_table,
    markdown_table,
    read_lists,
    read_rows,
    save_figure,
    write_lines,
    write_rows,
)
from lossbench.registry import PACKAGE, Registry  # noqa: E402
from lossbench.userstudy.counts import probabilities  # noqa: E402
from lossbench.userstudy.scaling import Summary, few_observers, from_samples  # noqa: E402
from lossbench.userstudy.seeds import label as condition_label  # noqa: E402
from lossbench.userstudy.seeds import members  # noqa: E402

#: The origins of JOD scores besides a loss's name (see the module's docstring).
JOD_ORIGINS = ("lowest_is_1", "mean0")
#: Significance threshold of the one-sided p-values (a two-tailed 5 % test), as pwcmp's triangles.
SIGNIFICANT = 0.025
#: How the files name a summary that was not resampled (:attr:`Summary.resampled` None).
NOT_RESAMPLED = "none"
#: Most conditions whose labels a JOD plot writes upright.
_UPRIGHT_LABELS = 8
#: Characters per line of a figure's note under its title.
_NOTE_WIDTH = 80


def _tex(name: str, registry: Registry, escape: bool = True) -> str:
    """A loss's own LaTeX label where its spec in ``registry`` gives one, else ``name`` (underscores escaped if
    ``escape``)."""
    tex = registry.losses[name].tex if name in registry.losses else None
    return tex if tex is not None else name.replace("_", r"\_") if escape else name


def _paths(prefix: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    return [prefix.with_name(prefix.name + suffix) for suffix in suffixes]


def _write_formats(
    prefix: str | Path,
    header: list[str],
    rows: list[list[str]],
    bold: list[list[bool]],
    caption: str,
    csv_rows: list[list[str]],
    registry: Registry,
) -> list[Path]:
    """Write a table as ``prefix``.csv (plain values), .md and .tex (bold cells marked; ``registry``'s LaTeX labels)."""
    csv_path, md_path, tex_path = _paths(prefix, (".csv", ".md", ".tex"))
    write_rows(csv_path, csv_rows)
    md = [[f"**{cell}**" if strong else cell for cell, strong in zip(row, marks)] for row, marks in zip(rows, bold)]
    write_lines(md_path, [caption, "", markdown_table(header, md)])
    tex = [
        [
            _tex(row[0], registry, escape=False),
            *(rf"\textbf{{{cell}}}" if strong else cell for cell, strong in zip(row[1:], marks[1:])),
        ]
        for row, marks in zip(rows, bold)
    ]
    tex_path.write_text(
        latex_table(caption.replace("%", chr(92) + "%"), [_tex(name, registry) for name in header], tex)
    )
    return [csv_path, md_path, tex_path]


def write_probability_table(
    conditions: list[str], counts: np.ndarray, prefix: str | Path, caption: str, registry: Registry = PACKAGE
) -> list[Path]:
    """P(column chosen over row) as ``prefix``.csv/.md/.tex; the winner of each comparison in bold; ``registry`` (the
    configuration's losses) labels the conditions.

    The CSV has the published tables' layout (``loser`` column, then one column per winner).
    """
    table = probabilities(counts)
    names = [condition_label(c, registry) for c in conditions]
    text = [[f"{value:.4f}" if np.isfinite(value) else "" for value in row] for row in table]
    # A comparison appears twice; its winner's cell is the one above 0.5, and a tie bolds neither.
    bold = [[False] + [bool(value > 0.5) for value in row] for row in table]
    rows = [[name, *cells] for name, cells in zip(names, text)]
    csv_rows = [["loser", *conditions]] + [[c, *cells] for c, cells in zip(conditions, text)]
    return _write_formats(prefix, ["Loser \\ Winner", *names], rows, bold, caption, csv_rows, registry)


def anchored(summary: Summary, origin: str, registry: Registry = PACKAGE) -> tuple[Summary, str]:
    """``summary`` with its scores shifted to ``origin``, and that origin in words for a caption (``registry``'s
    labels).

    A shift changes no difference between scores, no interval width and no p-value.

    Raises:
        ValueError: ``origin`` is neither of :data:`JOD_ORIGINS` nor a condition of the study, nor a loss whose
            (loss, seed) conditions the study has (:mod:`lossbench.userstudy.seeds`).
    """
    if origin == "lowest_is_1":
        lowest = int(np.argmin(summary.jod))
        offset, words = (
            1.0 - summary.jod[lowest],
            f"lowest-scoring loss, {condition_label(summary.conditions[lowest], registry)}, at 1",
        )
    elif origin == "mean0":
        offset, words = 0.0, "mean 0"
    elif origin in summary.conditions:
        offset, words = -summary.jod[summary.conditions.index(origin)], f"{registry.loss_label(origin)} at 0"
    elif members(summary.conditions, origin):  # a study of every seed's model: the loss's mean over its seeds
        offset = -float(np.mean(summary.jod[members(summary.conditions, origin)]))
        words = f"{registry.loss_label(origin)} (mean of its seeds) at 0"
    else:
        raise ValueError(
            f"jod_origin: expected {', '.join(JOD_ORIGINS)} or one of the study's losses"
            f" ({', '.join(summary.conditions)}), got {origin!r}"
        )
    shifted = dataclasses.replace(
        summary,
        jod=summary.jod + offset,
        low=summary.low + offset,
        high=summary.high + offset,
        samples=summary.samples + offset,
    )
    return shifted, words


def observer_note(summary: Summary) -> str:
    """How many observers a study had and what its intervals rest on, for every caption and JOD figure."""
    if summary.resampled is None:
        return few_observers(summary.observers)
    count = (
        "observer count not given"
        if summary.observers is None
        else f"{summary.observers} observer{'s' if summary.observers != 1 else ''}"
    )
    if summary.resampled == "observers":
        return f"{count}; 95 % intervals and p-values resample the observers"
    return f"{count}; 95 % intervals and p-values resample each pair's trials (pooled counts, not per observer)"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def write_jod_table(
    summary: Summary, prefix: str | Path, caption: str, origin: str = "mean0", registry: Registry = PACKAGE
) -> list[Path]:
    """JOD, 95 % interval and rank of each condition as ``prefix``.csv/.md/.tex; the best in bold.

    Scores are shifted to ``origin`` (see :func:`anchored`); ``caption`` should say where it is, and
    :func:`observer_note` follows it. The CSV states the observers and what was resampled in every
    row; a study that was not resampled has empty interval cells there and no interval column in
    the Markdown and LaTeX tables.
    """
    summary = anchored(summary, origin, registry)[0]
    intervals = summary.resampled is not None
    order = np.argsort(-summary.jod)
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(1, len(order) + 1)
    observers = "" if summary.observers is None else str(summary.observers)
    csv_rows = [["condition", "jod", "ci_low", "ci_high", "rank", "observers", "resampled"]]
    rows, bold = [], []
    for index, condition in enumerate(summary.conditions):
        jod = f"{summary.jod[index]:.3f}"
        low, high = (f"{summary.low[index]:.3f}", f"{summary.high[index]:.3f}") if intervals else ("", "")
        csv_rows.append([condition, jod, low, high, str(rank[index]), observers, summary.resampled or NOT_RESAMPLED])
        rows.append(
            [condition_label(condition, registry), jod, *([f"[{low}, {high}]"] if intervals else []), str(rank[index])]
        )
        bold.append([False, rank[index] == 1, *([False] if intervals else []), False])
    header = ["Loss", "JOD", *(["95 % CI"] if intervals else []), "Rank"]
    return _write_formats(
        prefix, header, rows, bold, f"{caption} {_sentence(observer_note(summary))}", csv_rows, registry
    )


def _number(value: float) -> str:
    """A value of a summary file: empty where there is none (NaN)."""
    return f"{value:.6f}" if np.isfinite(value) else ""


def write_summary(summary: Summary, folder: str | Path) -> None:
    """Save a scaling as ``folder``/jod.csv (JOD, interval, observers, what was resampled),
    samples.csv (bootstrap) and p_values.csv; intervals and p-values a summary lacks are empty cells.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    observers = "" if summary.observers is None else str(summary.observers)
    resampled = summary.resampled or NOT_RESAMPLED
    jod = [
        [condition, *(_number(value) for value in values), observers, resampled]
        for condition, *values in zip(summary.conditions, summary.jod, summary.low, summary.high)
    ]
    write_rows(folder / "jod.csv", jod, ["condition", "jod", "ci_low", "ci_high", "observers", "resampled"])
    for name, matrix in (("samples.csv", summary.samples), ("p_values.csv", summary.p_values)):
        write_rows(folder / name, [[_number(value) for value in row] for row in matrix], summary.conditions)


def read_summary(folder: str | Path) -> Summary:
    """Load a scaling saved by :func:`write_summary`."""
    folder = Path(folder)
    rows = read_rows(folder / "jod.csv")
    samples = [[float(value) for value in row] for row in read_lists(folder / "samples.csv")[1:]]
    conditions = [row["condition"] for row in rows]
    observers = int(rows[0]["observers"]) if rows[0]["observers"] else None
    resampled = None if rows[0]["resampled"] == NOT_RESAMPLED else rows[0]["resampled"]
    return from_samples(
        conditions,
        np.array([float(row["jod"]) for row in rows]),
        np.array(samples).reshape(-1, len(conditions)),
        observers=observers,
        resampled=resampled,
    )


def _title(axis: plt.Axes, title: str, summary: Summary) -> None:
    """``title`` with :func:`observer_note` beneath it: every JOD figure states its observers."""
    axis.set_title(f"{title}\n{textwrap.fill(observer_note(summary), _NOTE_WIDTH)}", fontsize=9)


def jod_plot(
    summary: Summary, paths: list[str | Path], title: str, origin: str = "lowest_is_1", registry: Registry = PACKAGE
) -> None:
    """JOD of each condition with its 95 % interval, shifted to ``origin`` (default as the thesis's figures).

    A study that was not resampled is drawn without intervals; the note under the title says why.
    """
    summary, words = anchored(summary, origin, registry)
    names = [condition_label(c, registry) for c in summary.conditions]
    figure, axis = plt.subplots(figsize=(6.4, 3.8))
    x = np.arange(len(names))
    if summary.resampled is not None:
        axis.errorbar(
            x,
            summary.jod,
            yerr=[summary.jod - summary.low, summary.high - summary.jod],
            fmt="o",
            capsize=4,
            color="tab:blue",
        )
    else:
        axis.plot(x, summary.jod, "o", color="tab:blue")
    if len(names) > _UPRIGHT_LABELS:  # e.g. every seed's model of six losses: slanted, so that labels do not overlap
        axis.set_xticks(x, names, rotation=45, ha="right")
    else:
        axis.set_xticks(x, names)
    axis.set_ylabel(f"JOD ({words})")
    axis.axhline(1.0 if origin == "lowest_is_1" else 0.0, color="0.8", linewidth=0.8, zorder=0)
    axis.grid(axis="y", color="0.9")
    _title(axis, title, summary)
    figure.tight_layout()
    save_figure(figure, paths)


def ranking_triangle(
    summary: Summary, paths: list[str | Path], title: str, origin: str = "lowest_is_1", registry: Registry = PACKAGE
) -> None:
    """pwcmp's ranking triangle: conditions on the JOD axis (shifted to ``origin``), alternately up
    and down, each joined to its neighbours at rank distance 1 and 2; blue solid where the
    difference is significant (p < 0.025, one-sided), red dashed otherwise; edges labelled with
    the JOD difference. A study that was not resampled has no p-values: its edges are grey dotted,
    "not tested".
    """
    summary, words = anchored(summary, origin, registry)
    tested = summary.resampled is not None
    order = [int(c) for c in np.argsort(summary.jod)]
    y = {c: float(1 - (k + 1) % 2) for k, c in enumerate(order)}
    figure, axis = plt.subplots(figsize=(7.0, 3.6))
    for k, c in enumerate(order):
        for other in order[max(0, k - 2) : k][::-1]:
            _triangle_edge(axis, summary, c, other, y, tested)
        axis.plot(summary.jod[c], y[c], "o", color="tab:red", zorder=3)
        axis.text(
            summary.jod[c],
            y[c] + (0.12 if y[c] else -0.12),
            condition_label(summary.conditions[c], registry),
            ha="center",
            va="bottom" if y[c] else "top",
            fontsize=9,
        )
    axis.set_ylim(-0.5, 1.5)
    axis.set_yticks([])
    axis.set_xlabel(f"JOD ({words})")
    _title(axis, title, summary)
    # Below the axes, so that it never covers a condition.
    figure.legend(handles=_triangle_legend(tested), loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    save_figure(figure, paths)


def _triangle_edge(axis: plt.Axes, summary: Summary, c: int, other: int, y: dict[int, float], tested: bool) -> None:
    """The edge between conditions ``c`` and ``other``, styled by its significance and labelled with their JOD
    difference."""
    if not tested:
        style = {"color": "0.5", "linestyle": ":"}
    elif summary.p_values[c, other] < SIGNIFICANT:
        style = {"color": "tab:blue", "linestyle": "-"}
    else:
        style = {"color": "tab:red", "linestyle": "--"}
    xs, ys = [summary.jod[c], summary.jod[other]], [y[c], y[other]]
    axis.plot(xs, ys, linewidth=1.3, zorder=1, **style)
    axis.text(
        np.mean(xs),
        np.mean(ys),
        f"{abs(summary.jod[c] - summary.jod[other]):.2f}",
        ha="center",
        va="center",
        fontsize=8,
        backgroundcolor="white",
        zorder=2,
    )


def _triangle_legend(tested: bool) -> list[Line2D]:
    """The legend of a ranking triangle: what its edges and points are."""
    if tested:
        edges = [
            Line2D([], [], color="tab:blue", linestyle="-", label=f"significant (p < {SIGNIFICANT:g}, one-sided)"),
            Line2D([], [], color="tab:red", linestyle="--", label="not significant"),
        ]
    else:
        edges = [Line2D([], [], color="0.5", linestyle=":", label="not tested (too few observers)")]
    return [
        *edges,
        Line2D([], [], color="tab:red", marker="o", linestyle="", label="loss at its JOD; edge labels: JOD difference"),
    ]


def write_study_status(rows: list[dict[str, str]], prefix: str | Path) -> list[Path]:
    """``prefix``.csv and .md of which of our studies have answers
    (:func:`lossbench.pipeline.userstudy.study_status`)."""
    csv_path, md_path = _paths(prefix, (".csv", ".md"))
    write_rows(csv_path, rows, ["study", "tasks", "responses", "answer_files", "status"])
    body = [[row["study"], row["tasks"], row["responses"], row["answer_files"], row["status"]] for row in rows]
    header = ["Study", "Tasks", "Responses", "Answer files", "Status"]
    intro = "Our user studies: a study is analysed once its responses folder holds answer files (<observer>.jsonl)."
    write_lines(md_path, [intro, "", markdown_table(header, body, "lllrl")])
    return [csv_path, md_path]
