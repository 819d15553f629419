"""How well each metric ranks the models as the observers do: Kendall τ-b between the metric's
values and the JOD scores, with a bootstrap interval from the JOD bootstrap samples.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from lossbench.core.io import markdown_table, write_lines, write_rows
from lossbench.registry import PACKAGE, Registry
from lossbench.report import paper
from lossbench.report.table_files import read_table
from lossbench.userstudy.scaling import Summary


def kendall_tau(reference: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Kendall τ-b between ``reference`` (N,) and each row of ``samples`` (B, N); ties count as in τ-b."""
    samples = np.atleast_2d(samples)
    upper = np.triu_indices(len(reference), 1)
    a = np.sign(reference[:, None] - reference[None, :])[upper]
    b = np.sign(samples[:, :, None] - samples[:, None, :])[:, upper[0], upper[1]]
    denominator = np.sqrt(np.count_nonzero(a) * np.count_nonzero(b, axis=1))
    return np.divide(b @ a, denominator, out=np.full(len(b), np.nan), where=denominator > 0)


def _models(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``table`` without its input column."""
    return {metric: {loss: value for loss, value in row.items() if loss != "input"} for metric, row in table.items()}


def published_values(table: str) -> dict[str, dict[str, float]]:
    """{metric: {loss: value}} of a published metric table (6.1, 6.3, 6.4), without the input column."""
    return _models(paper.table(table))


def measured_values(path: str | Path) -> dict[str, dict[str, float]]:
    """{metric: {loss: value}} from one of our table CSVs (``results/tables/table_6_X.csv``); empty cells skipped."""
    return _models(read_table(path))


def agreement_rows(
    summary: Summary,
    values: dict[str, dict[str, float]],
    source: str,
    alpha: float = 0.05,
    registry: Registry = PACKAGE,
) -> list[dict[str, str]]:
    """One row per metric: τ between the metric's ranking of the study's losses and the JOD ranking.

    Metric values are oriented so that larger means better before ranking. The interval holds
    the ``alpha`` / 2 and 1 − ``alpha`` / 2 percentiles of τ over the JOD bootstrap samples; a study
    with too few observers to resample has none (empty cells). ``registry`` (the configuration's metrics) gives
    each metric's direction.
    """
    rows = []
    for metric, by_loss in values.items():
        losses = [loss for loss in summary.conditions if loss in by_loss]
        if len(losses) < 3:
            continue
        index = [summary.conditions.index(loss) for loss in losses]
        sign = 1.0 if registry.metric(metric).info.higher_is_better else -1.0
        oriented = sign * np.array([by_loss[loss] for loss in losses])
        tau = float(kendall_tau(oriented, summary.jod[index])[0])
        interval = ["", ""]
        if summary.resampled is not None:
            interval = [
                f"{bound:.3f}"
                for bound in np.nanpercentile(
                    kendall_tau(oriented, summary.samples[:, index]), [100 * alpha / 2, 100 * (1 - alpha / 2)]
                )
            ]
        rows.append(
            {
                "metric": metric,
                "source": source,
                "models": str(len(losses)),
                "tau": f"{tau:.3f}",
                "ci_low": interval[0],
                "ci_high": interval[1],
                "p_chance": f"{chance_p_value(oriented, summary.jod[index]):.4f}",
            }
        )
    return rows


def chance_p_value(metric: np.ndarray, jod: np.ndarray) -> float:
    """One-sided exact p-value of τ ≥ the observed τ when the observers' ranking is unrelated to the metric.

    Under that null every ordering of the JOD scores over the models is equally likely, so the p-value
    is the share of all ``N!`` orderings whose τ with ``metric`` is at least the observed one.
    """
    observed = kendall_tau(metric, jod)[0]
    orderings = np.array(list(itertools.permutations(jod)))
    return float(np.mean(kendall_tau(metric, orderings) >= observed - 1e-12))


def _interval(row: dict[str, str]) -> str:
    """A row's interval for Markdown: "none" where the study had too few observers to resample."""
    return f"[{row['ci_low']}, {row['ci_high']}]" if row["ci_low"] else "none"


def write_agreement(
    rows: list[dict[str, str]], prefix: str | Path, caption: str, registry: Registry = PACKAGE
) -> list[Path]:
    """``prefix``.csv and .md of :func:`agreement_rows`; ``registry`` labels the metrics."""
    prefix = Path(prefix)
    csv_path, md_path = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".md")
    write_rows(csv_path, rows, ["metric", "source", "models", "tau", "ci_low", "ci_high", "p_chance"])
    header = ["Metric", "Metric values from", "Models", "Kendall τ", "95 % CI", "p (chance)"]
    body = [
        [registry.metric(r["metric"]).info.label, r["source"], r["models"], r["tau"], _interval(r), r["p_chance"]]
        for r in rows
    ]
    note = (
        "p (chance): the share of all orderings of the models that agree with the metric at least as well as the"
        " observers' ranking does (one-sided, exact); below 0.05 the agreement is beyond chance."
    )
    write_lines(md_path, [caption, "", markdown_table(header, body, "llrrlr"), "", note])
    return [csv_path, md_path]
