"""Tables and figures of a user study: probability tables (thesis Tables 6.2, 6.5), JOD tables,
JOD plots with confidence intervals (Figs. 6.7, 6.17) and ranking triangles (Figs. 6.8, 6.18).

JOD scores are relative; where a table or figure puts its origin is chosen by ``origin``: the
thesis's "The model with the lowest score is scaled to 1" (captions of Figs. 6.7 and 6.17,
``lowest_is_1``), the scaling's own mean 0 (``mean0``), or one loss at 0 (its name).
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import numpy as np  # noqa: E402

from lossbench import losses  # noqa: E402
from lossbench.userstudy.counts import probabilities  # noqa: E402
from lossbench.userstudy.scaling import Summary, from_samples  # noqa: E402

#: The origins of JOD scores besides a loss's name (see the module's docstring).
JOD_ORIGINS = ("lowest_is_1", "mean0")
#: Significance threshold of the one-sided p-values (a two-tailed 5 % test), as pwcmp's triangles.
SIGNIFICANT = 0.025


def label(condition: str) -> str:
    return losses.label(condition)


def _tex(name: str, escape: bool = True) -> str:
    """A loss's own LaTeX label where its spec gives one, else ``name`` (underscores escaped if ``escape``)."""
    tex = losses.SPECS[name].tex if name in losses.SPECS else None
    return tex if tex is not None else name.replace("_", r"\_") if escape else name


def _paths(prefix: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    return [prefix.with_name(prefix.name + suffix) for suffix in suffixes]


def _write_formats(prefix: str | Path, header: list[str], rows: list[list[str]], bold: list[list[bool]], caption: str, csv_rows: list[list[str]]) -> list[Path]:
    """Write a table as ``prefix``.csv (plain values), .md and .tex (bold cells marked)."""
    csv_path, md_path, tex_path = _paths(prefix, (".csv", ".md", ".tex"))
    with open(csv_path, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(csv_rows)
    md = [caption, "", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    md += ["| " + " | ".join(f"**{cell}**" if strong else cell for cell, strong in zip(row, marks)) + " |" for row, marks in zip(rows, bold)]
    md_path.write_text("\n".join(md) + "\n")
    tex_header = [_tex(name) for name in header]
    tex = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{caption.replace('%', chr(92) + '%')}}}", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule", " & ".join(tex_header) + r" \\", r"\midrule"]
    for row, marks in zip(rows, bold):
        cells = [_tex(row[0], escape=False)] + [rf"\textbf{{{cell}}}" if strong else cell for cell, strong in zip(row[1:], marks[1:])]
        tex.append(" & ".join(cells) + r" \\")
    tex += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    tex_path.write_text("\n".join(tex) + "\n")
    return [csv_path, md_path, tex_path]


def write_probability_table(conditions: list[str], counts: np.ndarray, prefix: str | Path, caption: str) -> list[Path]:
    """P(column chosen over row) as ``prefix``.csv/.md/.tex; the winner of each comparison in bold.

    The CSV has the published tables' layout (``loser`` column, then one column per winner).
    """
    table = probabilities(counts)
    names = [label(c) for c in conditions]
    text = [[f"{value:.4f}" if np.isfinite(value) else "" for value in row] for row in table]
    # A comparison appears twice; its winner's cell is the one above 0.5, and a tie bolds neither.
    bold = [[False] + [bool(value > 0.5) for value in row] for row in table]
    rows = [[name, *cells] for name, cells in zip(names, text)]
    csv_rows = [["loser", *conditions]] + [[c, *cells] for c, cells in zip(conditions, text)]
    return _write_formats(prefix, ["Loser \\ Winner", *names], rows, bold, caption, csv_rows)


def anchored(summary: Summary, origin: str) -> tuple[Summary, str]:
    """``summary`` with its scores shifted to ``origin``, and that origin in words for a caption.

    A shift changes no difference between scores, no interval width and no p-value.

    Raises:
        ValueError: ``origin`` is neither of :data:`JOD_ORIGINS` nor a condition of the study.
    """
    if origin == "lowest_is_1":
        lowest = int(np.argmin(summary.jod))
        offset, words = 1.0 - summary.jod[lowest], f"lowest-scoring loss, {label(summary.conditions[lowest])}, at 1"
    elif origin == "mean0":
        offset, words = 0.0, "mean 0"
    elif origin in summary.conditions:
        offset, words = -summary.jod[summary.conditions.index(origin)], f"{label(origin)} at 0"
    else:
        raise ValueError(f"jod_origin: expected {', '.join(JOD_ORIGINS)} or one of the study's losses ({', '.join(summary.conditions)}), got {origin!r}")
    shifted = Summary(summary.conditions, summary.jod + offset, summary.low + offset, summary.high + offset, summary.covariance, summary.samples + offset)
    return shifted, words


def write_jod_table(summary: Summary, prefix: str | Path, caption: str, origin: str = "mean0") -> list[Path]:
    """JOD, 95 % interval and rank of each condition as ``prefix``.csv/.md/.tex; the best in bold.

    Scores are shifted to ``origin`` (see :func:`anchored`); the caption should say where it is.
    """
    summary = anchored(summary, origin)[0]
    order = np.argsort(-summary.jod)
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(1, len(order) + 1)
    csv_rows = [["condition", "jod", "ci_low", "ci_high", "rank"]]
    rows, bold = [], []
    for index, condition in enumerate(summary.conditions):
        values = [f"{summary.jod[index]:.3f}", f"{summary.low[index]:.3f}", f"{summary.high[index]:.3f}"]
        csv_rows.append([condition, *values, str(rank[index])])
        rows.append([label(condition), values[0], f"[{values[1]}, {values[2]}]", str(rank[index])])
        bold.append([False, rank[index] == 1, False, False])
    return _write_formats(prefix, ["Loss", "JOD", "95 % CI", "Rank"], rows, bold, caption, csv_rows)


def write_summary(summary: Summary, folder: str | Path) -> None:
    """Save a scaling as ``folder``/jod.csv (JOD, interval), samples.csv (bootstrap) and p_values.csv."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "jod.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["condition", "jod", "ci_low", "ci_high"])
        for row in zip(summary.conditions, summary.jod, summary.low, summary.high):
            writer.writerow([row[0], *(f"{value:.6f}" for value in row[1:])])
    np.savetxt(folder / "samples.csv", summary.samples, fmt="%.6f", delimiter=",", header=",".join(summary.conditions), comments="")
    np.savetxt(folder / "p_values.csv", summary.p_values, fmt="%.6f", delimiter=",", header=",".join(summary.conditions), comments="")


def read_summary(folder: str | Path) -> Summary:
    """Load a scaling saved by :func:`write_summary`."""
    folder = Path(folder)
    with open(folder / "jod.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    conditions = [row["condition"] for row in rows]
    samples = np.loadtxt(folder / "samples.csv", delimiter=",", skiprows=1, ndmin=2)
    return from_samples(conditions, np.array([float(row["jod"]) for row in rows]), samples)


def _save(figure: plt.Figure, paths: list[str | Path]) -> None:
    for path in paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=150, metadata={"CreationDate": None} if Path(path).suffix == ".pdf" else None)
    plt.close(figure)


def jod_plot(summary: Summary, paths: list[str | Path], title: str, origin: str = "lowest_is_1") -> None:
    """JOD of each condition with its 95 % interval, shifted to ``origin`` (default as the thesis's figures)."""
    summary, words = anchored(summary, origin)
    names = [label(c) for c in summary.conditions]
    figure, axis = plt.subplots(figsize=(6.4, 3.8))
    x = np.arange(len(names))
    axis.errorbar(x, summary.jod, yerr=[summary.jod - summary.low, summary.high - summary.jod], fmt="o", capsize=4, color="tab:blue")
    axis.set_xticks(x, names)
    axis.set_ylabel(f"JOD ({words})")
    axis.axhline(1.0 if origin == "lowest_is_1" else 0.0, color="0.8", linewidth=0.8, zorder=0)
    axis.grid(axis="y", color="0.9")
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    _save(figure, paths)


def ranking_triangle(summary: Summary, paths: list[str | Path], title: str, origin: str = "lowest_is_1") -> None:
    """pwcmp's ranking triangle: conditions on the JOD axis (shifted to ``origin``), alternately up
    and down, each joined to its neighbours at rank distance 1 and 2; blue solid where the
    difference is significant (p < 0.025, one-sided), red dashed otherwise; edges labelled with
    the JOD difference.
    """
    summary, words = anchored(summary, origin)
    p = summary.p_values
    order = np.argsort(summary.jod)
    y = {int(c): float(1 - (k + 1) % 2) for k, c in enumerate(order)}
    figure, axis = plt.subplots(figsize=(7.0, 3.4))
    for k, c in enumerate(order):
        c = int(c)
        for back in (1, 2):
            if k - back < 0:
                continue
            other = int(order[k - back])
            style = {"color": "tab:blue", "linestyle": "-"} if p[c, other] < SIGNIFICANT else {"color": "tab:red", "linestyle": "--"}
            xs, ys = [summary.jod[c], summary.jod[other]], [y[c], y[other]]
            axis.plot(xs, ys, linewidth=1.3, zorder=1, **style)
            axis.text(np.mean(xs), np.mean(ys), f"{abs(summary.jod[c] - summary.jod[other]):.2f}", ha="center", va="center", fontsize=8, backgroundcolor="white", zorder=2)
        axis.plot(summary.jod[c], y[c], "o", color="tab:red", zorder=3)
        axis.text(summary.jod[c], y[c] + (0.12 if y[c] else -0.12), label(summary.conditions[c]), ha="center", va="bottom" if y[c] else "top", fontsize=9)
    axis.set_ylim(-0.5, 1.5)
    axis.set_yticks([])
    axis.set_xlabel(f"JOD ({words})")
    axis.set_title(title, fontsize=10)
    # Below the axes, so that it never covers a condition.
    handles = [
        Line2D([], [], color="tab:blue", linestyle="-", label=f"significant (p < {SIGNIFICANT:g}, one-sided)"),
        Line2D([], [], color="tab:red", linestyle="--", label="not significant"),
        Line2D([], [], color="tab:red", marker="o", linestyle="", label="loss at its JOD; edge labels: JOD difference"),
    ]
    figure.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    _save(figure, paths)
