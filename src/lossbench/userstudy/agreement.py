"""How well each metric ranks and predicts the models as the observers do: Kendall τ-b and Spearman ρ between
the metric's values and the JOD scores, and the leave-one-condition-out error in JOD of the metric's monotone
map to JOD (:mod:`lossbench.userstudy.calibration`).

Intervals are the percentiles of each statistic over the JOD bootstrap samples (what they resample, a
study's observers or each pair's trials, is the study's: :attr:`Summary.resampled`); the metric values are
per-model means, taken as fixed. The chance p-values are exact: the share of all N! orderings of the JOD
scores over the models whose τ (ρ) with the metric is at least the observed one (beyond
:data:`EXACT_MODELS` models, a seeded sample of orderings).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.stats import rankdata

from lossbench.core.io import markdown_table, write_lines, write_rows
from lossbench.data.tasks import SPECS
from lossbench.registry import PACKAGE, Registry
from lossbench.report import paper
from lossbench.report.table_files import read_table
from lossbench.userstudy.calibration import MIN_FIT, constant_rmse, direct_rmse, loo_rmse
from lossbench.userstudy.scaling import Summary

#: Most models whose orderings the chance p-values enumerate (8! = 40,320); beyond, :data:`SAMPLED_ORDERINGS`.
EXACT_MODELS = 8
SAMPLED_ORDERINGS = 20_000
#: The unit (``MetricInfo.unit``) of a metric that predicts JOD itself: also compared with the observers directly.
JOD_UNIT = "JOD"
COLUMNS = [
    "metric",
    "source",
    "models",
    "tau",
    "ci_low",
    "ci_high",
    "p_chance",
    "rho",
    "rho_ci_low",
    "rho_ci_high",
    "rho_p_chance",
    "loo_rmse",
    "rmse_ci_low",
    "rmse_ci_high",
    "isotonic_rmse",
    "isotonic_ci_low",
    "isotonic_ci_high",
    "direct_rmse",
    "direct_ci_low",
    "direct_ci_high",
]


def kendall_tau(reference: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Kendall τ-b between ``reference`` (N,) and each row of ``samples`` (B, N); ties count as in τ-b."""
    samples = np.atleast_2d(samples)
    upper = np.triu_indices(len(reference), 1)
    a = np.sign(reference[:, None] - reference[None, :])[upper]
    b = np.sign(samples[:, :, None] - samples[:, None, :])[:, upper[0], upper[1]]
    denominator = np.sqrt(np.count_nonzero(a) * np.count_nonzero(b, axis=1))
    return np.divide(b @ a, denominator, out=np.full(len(b), np.nan), where=denominator > 0)


def spearman_rho(reference: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Spearman ρ between ``reference`` (N,) and each row of ``samples`` (B, N): Pearson's r of the ranks, ties
    given their mean rank (as :func:`scipy.stats.spearmanr`); NaN where either side has one value only."""
    samples = np.atleast_2d(np.asarray(samples, dtype=float))
    a = rankdata(reference)
    b = rankdata(samples, axis=1)
    a, b = a - a.mean(), b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a @ a) * np.sum(b * b, axis=1))
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


def thesis_sources() -> dict[str, list[str]]:
    """Thesis study id (``thesis_denoise``, ``thesis_mri``) → the published metric tables of the tasks it showed
    (the MRI study showed knee and brain images: Tables 6.3 and 6.4)."""
    studies = dict.fromkeys(spec.thesis_study for spec in SPECS.values() if spec.thesis_study)
    return {
        f"thesis_{study}": [spec.thesis_table for spec in SPECS.values() if spec.thesis_study == study]
        for study in studies
    }


def thesis_label(study: str, table: str) -> str:
    """How a row names a thesis study's task: ``thesis_mri, knee: thesis Table 6.3``."""
    task = next(spec.thesis_task for spec in SPECS.values() if spec.thesis_table == table)
    return f"{study}, {task}: thesis {table.replace('table_', 'Table ').replace('_', '.')}"


def oriented_values(
    summary: Summary, by_loss: dict[str, float], metric: str, registry: Registry = PACKAGE
) -> tuple[list[int], np.ndarray]:
    """(indices into ``summary.conditions``, metric values oriented so that larger is better) of the study's losses
    that ``by_loss`` has a value for; ``registry`` gives the metric's direction."""
    losses = [loss for loss in summary.conditions if loss in by_loss]
    sign = 1.0 if registry.metric(metric).info.higher_is_better else -1.0
    return [summary.conditions.index(loss) for loss in losses], sign * np.array([by_loss[loss] for loss in losses])


def _cells(value: float, samples: np.ndarray | None, alpha: float, decimals: int = 3) -> list[str]:
    """``value`` and its percentile interval over ``samples``: empty cells where there are none."""
    if samples is None:
        return [f"{value:.{decimals}f}", "", ""]
    low, high = np.nanpercentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return [f"{value:.{decimals}f}", f"{low:.{decimals}f}", f"{high:.{decimals}f}"]


def agreement_rows(
    summary: Summary,
    values: dict[str, dict[str, float]],
    source: str,
    alpha: float = 0.05,
    registry: Registry = PACKAGE,
) -> list[dict[str, str]]:
    """One row per metric: τ and ρ between the metric's ranking of the study's losses and the JOD ranking, and the
    leave-one-condition-out RMSE (JOD) of its affine and its isotonic map to JOD; a metric whose unit is
    :data:`JOD_UNIT` is also compared with the JOD scores directly (:func:`~calibration.direct_rmse`).

    Metric values are oriented so that larger means better. Each interval holds the ``alpha`` / 2 and
    1 − ``alpha`` / 2 percentiles of the statistic over the JOD bootstrap samples; a study with too few
    observers to resample has none (empty cells). The RMSE needs :data:`~calibration.MIN_FIT` + 1 models
    (empty below). ``registry`` (the configuration's metrics) gives each metric's direction.
    """
    rows = []
    resampled = summary.resampled is not None
    for metric, by_loss in values.items():
        index, oriented = oriented_values(summary, by_loss, metric, registry)
        if len(index) < 3:
            continue
        jod, samples = summary.jod[index], summary.samples[:, index] if resampled else None
        tau = _cells(kendall_tau(oriented, jod)[0], None if samples is None else kendall_tau(oriented, samples), alpha)
        rho = _cells(
            spearman_rho(oriented, jod)[0], None if samples is None else spearman_rho(oriented, samples), alpha
        )
        rmse = ["", "", ""] * 2
        if len(index) > MIN_FIT:
            rmse = [
                cell
                for kind in ("affine", "isotonic")
                for cell in _cells(
                    loo_rmse(oriented, jod, kind)[0],
                    None if samples is None else loo_rmse(oriented, samples, kind),
                    alpha,
                )
            ]
        direct = ["", "", ""]
        if registry.metric(metric).info.unit == JOD_UNIT:
            direct = _cells(
                direct_rmse(oriented, jod)[0], None if samples is None else direct_rmse(oriented, samples), alpha
            )
        rows.append(
            dict(
                zip(
                    COLUMNS,
                    [
                        metric,
                        source,
                        str(len(index)),
                        *tau,
                        f"{chance_p_value(oriented, jod):.4f}",
                        *rho,
                        f"{chance_p_value(oriented, jod, spearman_rho):.4f}",
                        *rmse,
                        *direct,
                    ],
                )
            )
        )
    return rows


def chance_p_value(
    metric: np.ndarray, jod: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], np.ndarray] = kendall_tau
) -> float:
    """One-sided exact p-value of ``statistic`` (τ, or ρ) ≥ the observed one when the observers' ranking is
    unrelated to the metric.

    Under that null every ordering of the JOD scores over the models is equally likely, so the p-value
    is the share of all ``N!`` orderings whose statistic with ``metric`` is at least the observed one.
    Beyond :data:`EXACT_MODELS` models, the share among :data:`SAMPLED_ORDERINGS` orderings drawn with seed 0 and the
    observed one.
    """
    observed = statistic(metric, jod)[0]
    if len(jod) <= EXACT_MODELS:
        orderings = np.array(list(itertools.permutations(jod)))
        return float(np.mean(statistic(metric, orderings) >= observed - 1e-12))
    rng = np.random.default_rng(0)
    orderings = np.array([rng.permutation(jod) for _ in range(SAMPLED_ORDERINGS)])
    # The observed ordering counts as one of the sample, so that a sampled p-value is never 0.
    return float((1 + np.sum(statistic(metric, orderings) >= observed - 1e-12)) / (1 + SAMPLED_ORDERINGS))


def baseline_note(summary: Summary, source: str) -> str:
    """What the leave-one-out RMSE of a metric that predicts nothing is on ``summary`` (each model predicted by
    the others' mean JOD), one sentence naming ``source``."""
    return f"{source}: a map that ignores the metric has leave-one-out RMSE {constant_rmse(summary.jod)[0]:.3f} JOD"


def _interval(low: str, high: str) -> str:
    """An interval for Markdown: "none" where the study had too few observers to resample."""
    return f"[{low}, {high}]" if low else "none"


def write_agreement(
    rows: list[dict[str, str]], prefix: str | Path, caption: str, registry: Registry = PACKAGE
) -> list[Path]:
    """``prefix``.csv and .md of :func:`agreement_rows`; ``registry`` labels the metrics."""
    prefix = Path(prefix)
    csv_path, md_path = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".md")
    write_rows(csv_path, rows, COLUMNS)
    header = [
        "Metric",
        "Metric values from",
        "Models",
        "Kendall τ",
        "95 % CI",
        "p (chance)",
        "Spearman ρ",
        "95 % CI",
        "p (chance)",
        "LOO RMSE (JOD)",
        "95 % CI",
        "isotonic",
        "95 % CI",
    ]
    body = [
        [
            registry.metric(r["metric"]).info.label,
            r["source"],
            r["models"],
            r["tau"],
            _interval(r["ci_low"], r["ci_high"]),
            r["p_chance"],
            r["rho"],
            _interval(r["rho_ci_low"], r["rho_ci_high"]),
            r["rho_p_chance"],
            r["loo_rmse"] or "–",
            _interval(r["rmse_ci_low"], r["rmse_ci_high"]) if r["loo_rmse"] else "–",
            r["isotonic_rmse"] or "–",
            _interval(r["isotonic_ci_low"], r["isotonic_ci_high"]) if r["isotonic_rmse"] else "–",
        ]
        for r in rows
    ]
    notes = [
        "p (chance): the share of all orderings of the models that agree with the metric at least as well as the"
        " observers' ranking does (one-sided, exact); below 0.05 the agreement is beyond chance.",
        "LOO RMSE: each model's JOD predicted by the metric's monotone affine map to JOD fitted on the other models"
        " (JOD assumed affine in the metric over the models' range), root mean square error over the models;"
        " isotonic: the same through the isotonic map, flat beyond the other models' range, which needs no such"
        f" assumption but cannot predict beyond the best or worst of them. Both need {MIN_FIT + 1} models.",
    ]
    align = "llrrlrrlrrlrl"
    if any(r["direct_rmse"] for r in rows):
        header += ["In JOD directly: RMSE", "95 % CI"]
        align += "rl"
        for cells, r in zip(body, rows):
            cells += [
                r["direct_rmse"] or "–",
                _interval(r["direct_ci_low"], r["direct_ci_high"]) if r["direct_rmse"] else "–",
            ]
        notes.append(
            "In JOD directly: a metric that predicts JOD, its values against the observers' JOD without a map, each"
            " side's mean over the models removed (JOD scores have no origin)."
        )
    table = markdown_table(header, body, align)
    write_lines(md_path, [caption, "", table, *(line for note in notes for line in ("", note))])
    return [csv_path, md_path]
