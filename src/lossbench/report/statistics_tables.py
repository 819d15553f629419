"""The tables of :mod:`lossbench.report.statistics`: the variance decomposition and the paired comparisons of the
losses, as rows and as CSV, Markdown and LaTeX files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from lossbench.core.io import latex_table, markdown_table, numbered, write_lines, write_rows
from lossbench.data.taskspec import PER_IMAGE, AnalysisUnit
from lossbench.metrics import STUDY_METRICS, MetricInfo
from lossbench.report.statistics import (
    ALPHA,
    MIN_UNITS,
    compared,
    decompose,
    not_tested,
    pairwise,
    sample,
    sample_note,
    testable,
)


def _format(value: float | None, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return "inf" if value == math.inf else f"{value:.{decimals}f}"


VARIANCE_COLUMNS = [
    "metric",
    "label",
    "losses",
    "seeds",
    "unit",
    "units",
    "images",
    "share_loss",
    "share_seed",
    "share_unit",
    "share_residual",
    "sd_loss",
    "sd_seed",
    "ratio_between_within",
    "F",
    "df_loss",
    "df_error",
    "p_loss",
    "tested",
]


def variance_rows(
    model_csvs: dict[str, list[str | Path]],
    infos: dict[str, MetricInfo] = STUDY_METRICS,
    unit: AnalysisUnit = PER_IMAGE,
) -> list[dict[str, str]]:
    """One row per metric: variance shares, between/within ratio and the loss effect's F-test (empty below
    :data:`MIN_UNITS` units)."""
    rows = []
    images = sample(model_csvs, unit)[2] if model_csvs else 0
    for metric, info, _losses, values in compared(model_csvs, infos, unit):
        if values.shape[2] < 2:
            continue
        result = decompose(values)
        tested = testable(result.units)
        rows.append(
            {
                "metric": metric,
                "label": info.label,
                "losses": str(result.losses),
                "seeds": str(result.seeds),
                "unit": unit.name,
                "units": str(result.units),
                "images": str(images),
                **{f"share_{part}": _format(result.share(part), 4) for part in ("loss", "seed", "unit", "residual")},
                "sd_loss": _format(math.sqrt(result.loss), info.decimals + 2),
                "sd_seed": _format(None if result.seed is None else math.sqrt(result.seed), info.decimals + 2),
                "ratio_between_within": _format(result.ratio, 3),
                "F": _format(result.f, 3) if tested else "",
                "df_loss": str(result.df[0]),
                "df_error": str(result.df[1]),
                "p_loss": _format(result.p, 4) if tested else "",
                "tested": "yes" if tested else "no",
            }
        )
    return rows


PAIR_COLUMNS = ["metric", "a", "b", "difference", "ci_low", "ci_high", "p", "p_holm", "significant", "better"]


def pair_rows(
    model_csvs: dict[str, list[str | Path]],
    infos: dict[str, MetricInfo] = STUDY_METRICS,
    unit: AnalysisUnit = PER_IMAGE,
) -> list[dict[str, str]]:
    """One row per (metric, pair of losses): mean difference a − b over units, 95 % interval, p, Holm's p, which is
    better.

    Below :data:`MIN_UNITS` units the interval and p-values are empty and ``significant`` says
    ``not tested (n = ...)``.
    """
    rows = []
    for metric, info, losses, values in compared(model_csvs, infos, unit):
        tested = testable(values.shape[2])
        for test in pairwise(losses, values):
            better = ""
            if test.significant():
                better = test.a if (test.difference > 0) == info.higher_is_better else test.b
            rows.append(
                {
                    "metric": metric,
                    "a": test.a,
                    "b": test.b,
                    "difference": _format(test.difference, info.decimals + 2),
                    "ci_low": _format(test.low, info.decimals + 2),
                    "ci_high": _format(test.high, info.decimals + 2),
                    "p": _format(test.p, 4),
                    "p_holm": _format(test.p_holm, 4),
                    "significant": (
                        ("yes" if test.significant() else "no") if tested else not_tested(unit, values.shape[2])
                    ),
                    "better": better,
                }
            )
    return rows


def _percent(share: str) -> str:
    return f"{100 * float(share):.1f} %" if share else "not measured"


def _f_test(row: dict[str, str], unit: AnalysisUnit) -> tuple[str, str]:
    if row["tested"] == "no":
        return not_tested(unit, int(row["units"])), "—"
    return f"{row['F']} ({row['df_loss']}, {row['df_error']})", row["p_loss"]


def _variance_notes(
    rows: list[dict[str, str]], model_csvs: dict[str, list[str | Path]], unit: AnalysisUnit
) -> list[str]:
    """What the variance table rests on and how to read it; with one seed or too few units, what it cannot say."""
    notes = [
        (
            f"{sample_note(model_csvs, unit) if model_csvs else 'no models'}; {rows[0]['losses'] if rows else 0}"
            f" losses. Shares of the variance of the per-{unit.name} values between losses, between seeds of one loss,"
            f" between {unit.plural}, and residual (loss × {unit.name} and seed × {unit.name})."
        ),
        (
            "between/within: the between-loss variance over the seed-to-seed variance of one loss; above 1, changing"
            " the loss moves the metric more than retraining does. F tests the loss effect against the seed variation"
            f" (nested ANOVA, {unit.plural} as blocks)."
        ),
    ]
    if (rows[0]["seeds"] if rows else "0") == "1":
        notes.append(
            "One seed: seed variation is not measured (run with several seeds, e.g. config/statistics.yaml); the loss"
            " effect is tested against the residual only."
        )
    if rows and rows[0]["tested"] == "no":
        notes.append(
            f"Not tested: {unit.count(int(rows[0]['units']))}, fewer than the {MIN_UNITS} independent {unit.plural} a"
            f" test needs; the shares describe these {unit.plural} only."
        )
    return notes


def write_variance(
    title: str,
    model_csvs: dict[str, list[str | Path]],
    prefix: str | Path,
    infos: dict[str, MetricInfo] = STUDY_METRICS,
    unit: AnalysisUnit = PER_IMAGE,
) -> list[Path]:
    """``prefix``_variance.csv/.md/.tex: the variance decomposition of every metric, over ``unit``.

    Args:
        title: The table's name as shown (``Table 6.1``).
        model_csvs: Loss → per-image CSVs, one per seed.
        prefix: Path prefix (``results/tables/table_6_1``).
        infos: The metrics and their display settings.
        unit: The unit of analysis (the task spec's: images, or volumes of MRI slices).
    """
    prefix = Path(prefix)
    rows = variance_rows(model_csvs, infos, unit)
    paths = [prefix.with_name(prefix.name + f"_variance{suffix}") for suffix in (".csv", ".md", ".tex")]
    write_rows(paths[0], rows, VARIANCE_COLUMNS)
    header = ["Metric", "loss", "seed", unit.name, "residual", "between/within", "F (loss)", "p (loss)"]
    body = [
        [
            row["label"],
            *(_percent(row[f"share_{part}"]) for part in ("loss", "seed", "unit", "residual")),
            row["ratio_between_within"] or "—",
            *_f_test(row, unit),
        ]
        for row in rows
    ]
    notes = _variance_notes(rows, model_csvs, unit)
    write_lines(
        paths[1], [f"**{title}, variance decomposition.**", "", markdown_table(header, body), "", *numbered(notes)]
    )
    tex = latex_table(
        f"{title}: variance decomposition of the per-{unit.name} metric values.",
        header,
        [[cell.replace("%", r"\%").replace("·", r"$\cdot$") for cell in cells] for cells in body],
        notes=[note.replace("%", r"\%").replace("×", r"$\times$") for note in notes],
    )
    paths[2].write_text(tex)
    return paths


def write_pairs(
    title: str,
    model_csvs: dict[str, list[str | Path]],
    prefix: str | Path,
    label_of: Callable[[str], str],
    infos: dict[str, MetricInfo] = STUDY_METRICS,
    unit: AnalysisUnit = PER_IMAGE,
) -> list[Path]:
    """``prefix``_pairs.csv/.md: every pair of losses per metric, paired over ``unit``, Holm-corrected.

    ``label_of`` maps a loss name to its display label.
    """
    prefix = Path(prefix)
    rows = pair_rows(model_csvs, infos, unit)
    paths = [prefix.with_name(prefix.name + f"_pairs{suffix}") for suffix in (".csv", ".md")]
    write_rows(paths[0], rows, PAIR_COLUMNS)
    body = []
    for row in rows:
        interval = f"[{row['ci_low']}, {row['ci_high']}]" if row["ci_low"] else "—"
        verdict = (
            label_of(row["better"]) if row["better"] else ("n.s." if row["significant"] == "no" else row["significant"])
        )
        labels = [infos[row["metric"]].label, label_of(row["a"]), label_of(row["b"])]
        body.append([*labels, row["difference"], interval, row["p"] or "—", row["p_holm"] or "—", verdict])
    header = ["Metric", "a", "b", "mean a − b", "95 % interval", "p", "p (Holm)", "better"]
    sample_text = sample_note(model_csvs, unit) if model_csvs else "no models"
    note = (
        f"{sample_text}. Paired t-test over validation {unit.plural} on seed-averaged values; Holm's correction over"
        f" the pairs of each metric; significant at α = {ALPHA}. n.s.: not significant. Fewer than {MIN_UNITS}"
        f" {unit.plural}: not tested."
    )
    title_line = f"**{title}, paired comparisons of the losses.**"
    write_lines(paths[1], [title_line, "", markdown_table(header, body, "lllrrrrl"), "", *numbered([note])])
    return paths
