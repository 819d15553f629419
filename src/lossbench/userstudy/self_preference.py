"""Self-preference: does a metric favour the model trained on it, beyond what the observers saw?

For every metric that is a training loss's own metric (``LossSpec.own_metric``: l1, l2, MS-SSIM, LPIPS for
LPIPS+l2, FLIP, ...) and every task a study showed, the own model's JOD as the metric predicts it, through
the monotone map fitted on the other models, minus the observers' JOD of the own model
(:mod:`lossbench.userstudy.calibration` defines both gaps and states the map's assumption). Intervals are
percentiles over the study's JOD bootstrap samples: the observers resampled (our studies) or, for the
thesis's pooled counts, each pair's trials; the metric values are the published (or our) per-model means,
taken as fixed.

    python -m lossbench.userstudy.self_preference --out DIR     # the thesis's data: table, figure, agreement
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lossbench.core.io import markdown_table, save_figure, write_lines, write_rows  # noqa: E402
from lossbench.registry import PACKAGE, Registry  # noqa: E402
from lossbench.userstudy.agreement import (  # noqa: E402
    agreement_rows,
    baseline_note,
    oriented_values,
    published_values,
    thesis_label,
    thesis_sources,
    write_agreement,
)
from lossbench.userstudy.calibration import (  # noqa: E402
    MIN_FIT,
    fit,
    loo_residuals,
    ranks,
    self_preference_gap,
)
from lossbench.userstudy.counts import THESIS_STUDIES, read_counts  # noqa: E402
from lossbench.userstudy.report import observer_note  # noqa: E402
from lossbench.userstudy.scaling import Summary, summarize  # noqa: E402

COLUMNS = [
    "source",
    "metric",
    "loss",
    "models",
    "metric_rank",
    "observer_rank",
    "gap",
    "ci_low",
    "ci_high",
    "bounded_gap",
    "bounded_ci_low",
    "bounded_ci_high",
    "residual_rank",
    "others_rmse",
    "flat_map",
    "resampled",
]
TITLE = "Does a metric favour the model trained on it? Its JOD through the metric minus the observers' JOD"
ASSUMPTION = (
    "Gap: the own model's JOD predicted from its metric value by the monotone affine map (JOD = a + b·metric,"
    " b ≥ 0) fitted on the other models, minus the observers' JOD of the own model; positive: the metric favours"
    " the model trained on it by that many JOD. Assumes JOD affine in the metric over the models' range (far"
    " outside it the gap is an extrapolation). Bounded gap: the same through the isotonic map of the other models,"
    " flat beyond their range. Residual rank: the own model's gap among every model's leave-one-out residual"
    " (1 = the most overrated; by chance 1 in N). Others' RMSE: the other models' leave-one-out residuals."
)
FLAT = (
    "*: the metric ranks the other models against the observers, so their map is flat (their mean JOD): the gap is"
    " how far the observers put the own model below the others' mean, whatever its metric value."
)


@dataclass(frozen=True)
class Preference:
    """The self-preference of one metric on one task (``source``); JOD, NaN intervals where not resampled."""

    source: str
    metric: str
    loss: str
    conditions: list[str]
    metric_rank: int
    observer_rank: int
    gap: float
    interval: tuple[float, float]
    bounded: float
    bounded_interval: tuple[float, float]
    #: Every model's leave-one-out residual (predicted − observed JOD), in ``conditions`` order; the own one is
    #: ``gap``.
    residuals: np.ndarray
    resampled: str | None
    #: Whether the affine map of the other models is flat (they rank against the observers): the gap is then the
    #: others' mean JOD minus the own model's, whatever the metric's values.
    flat: bool = False

    @property
    def residual_rank(self) -> int:
        return int(ranks(self.residuals)[self.conditions.index(self.loss)])

    @property
    def others_rmse(self) -> float:
        others = np.delete(self.residuals, self.conditions.index(self.loss))
        return float(np.sqrt(np.mean(others**2)))


def _interval(samples: np.ndarray | None, alpha: float) -> tuple[float, float]:
    if samples is None:
        return (np.nan, np.nan)
    low, high = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(low), float(high))


def preferences(
    summary: Summary,
    values: dict[str, dict[str, float]],
    source: str,
    alpha: float = 0.05,
    registry: Registry = PACKAGE,
) -> list[Preference]:
    """The self-preference of each metric of ``values`` ({metric: {loss: value}}, one task) that a loss of
    ``registry`` optimises and whose loss the study compared, with ``1 − alpha`` intervals over the JOD bootstrap
    samples. Metrics with fewer than :data:`~calibration.MIN_FIT` + 1 models valued are left out."""
    found = []
    for metric, loss in registry.own_metrics().items():
        if metric not in values or loss not in summary.conditions or loss not in values[metric]:
            continue
        index, x = oriented_values(summary, values[metric], metric, registry)
        if len(index) <= MIN_FIT:
            continue
        conditions = [summary.conditions[i] for i in index]
        own = conditions.index(loss)
        jod = summary.jod[index]
        samples = summary.samples[:, index] if summary.resampled is not None else None
        found.append(
            Preference(
                source=source,
                metric=metric,
                loss=loss,
                conditions=conditions,
                metric_rank=int(ranks(x)[own]),
                observer_rank=int(ranks(jod)[own]),
                gap=float(self_preference_gap(x, jod, own)[0]),
                interval=_interval(None if samples is None else self_preference_gap(x, samples, own), alpha),
                bounded=float(self_preference_gap(x, jod, own, "isotonic")[0]),
                bounded_interval=_interval(
                    None if samples is None else self_preference_gap(x, samples, own, "isotonic"), alpha
                ),
                residuals=loo_residuals(x, jod)[0],
                resampled=summary.resampled,
                flat=bool(fit(np.delete(x, own), np.delete(jod, own))[1][0] == 0.0),
            )
        )
    return found


def _number(value: float) -> str:
    return f"{value:.3f}" if np.isfinite(value) else ""


def csv_rows(found: list[Preference]) -> list[dict[str, str]]:
    """The rows of the table's CSV (:data:`COLUMNS`); empty interval cells where the study was not resampled."""
    return [
        dict(
            zip(
                COLUMNS,
                [
                    p.source,
                    p.metric,
                    p.loss,
                    str(len(p.conditions)),
                    str(p.metric_rank),
                    str(p.observer_rank),
                    _number(p.gap),
                    *map(_number, p.interval),
                    _number(p.bounded),
                    *map(_number, p.bounded_interval),
                    str(p.residual_rank),
                    _number(p.others_rmse),
                    "yes" if p.flat else "no",
                    p.resampled or "none",
                ],
            )
        )
        for p in found
    ]


def _shown(value: float, interval: tuple[float, float]) -> str:
    """``value [low, high]`` in Markdown, signed; without an interval where the study was not resampled."""
    text = f"{value:+.2f}"
    return f"{text} [{interval[0]:+.2f}, {interval[1]:+.2f}]" if np.isfinite(interval[0]) else text


def write_table(found: list[Preference], prefix: str | Path, caption: str, registry: Registry = PACKAGE) -> list[Path]:
    """``prefix``.csv and .md of :func:`preferences`; ``registry`` labels metrics and losses."""
    prefix = Path(prefix)
    csv_path, md_path = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".md")
    write_rows(csv_path, csv_rows(found), COLUMNS)
    header = [
        "Task (metric values)",
        "Metric",
        "Its model",
        "Rank by metric",
        "Rank by observers",
        "Gap, JOD (95 % CI)",
        "Bounded gap, JOD (95 % CI)",
        "Residual rank",
        "Others' RMSE, JOD",
    ]
    body = [
        [
            p.source,
            registry.metric(p.metric).info.label,
            registry.loss_label(p.loss),
            f"{p.metric_rank} of {len(p.conditions)}",
            f"{p.observer_rank} of {len(p.conditions)}",
            _shown(p.gap, p.interval) + ("*" if p.flat else ""),
            _shown(p.bounded, p.bounded_interval),
            f"{p.residual_rank} of {len(p.conditions)}",
            f"{p.others_rmse:.2f}",
        ]
        for p in found
    ]
    empty = []
    if not found:
        empty = [
            f"No metric of these tables is the own metric of a compared loss with {MIN_FIT + 1} or more models valued:"
            " nothing to measure.",
            "",
        ]
    write_lines(
        md_path,
        [
            caption,
            "",
            *empty,
            markdown_table(header, body, "lllrrllrr"),
            "",
            ASSUMPTION,
            *(["", FLAT] if any(p.flat for p in found) else []),
        ],
    )
    return [csv_path, md_path]


#: Gaps beyond this many JOD are drawn at the axis's edge with their value: an affine map's extrapolation would
#: otherwise squeeze every other point into a line.
_CLIP = 3.0


def _limit(found: list[Preference]) -> float:
    """Half the figure's JOD range: every residual, bounded gap and gap within :data:`_CLIP`, with their
    intervals."""
    values = [0.5]
    for p in found:
        values += [*np.abs(p.residuals[np.abs(p.residuals) <= _CLIP]), abs(p.bounded), *np.abs(p.bounded_interval)]
        values += [abs(v) for v in (p.gap, *p.interval) if abs(v) <= _CLIP]
    return 1.15 * float(np.nanmax(values))


def _own(axis: plt.Axes, k: float, value: float, interval: tuple[float, float], filled: bool, limit: float) -> None:
    """The own model's gap at ``k`` with its interval, or an arrow at the edge with its value beyond ``limit``."""
    label = "own model: gap (affine map)" if filled else "own model: bounded gap (isotonic map)"
    face = "tab:red" if filled else "white"
    if abs(value) > limit:
        edge = np.sign(value) * 0.93 * limit
        axis.plot(k, edge, "^" if value > 0 else "v", color="tab:red", markerfacecolor=face, label=label)
        text = f"{value:+.1f}" + (f"\n[{interval[0]:+.1f}, {interval[1]:+.1f}]" if np.isfinite(interval[0]) else "")
        axis.annotate(
            text,
            (k, edge),
            xytext=(5, -4 if value > 0 else 4),
            textcoords="offset points",
            fontsize=7,
            va="top" if value > 0 else "bottom",
            color="tab:red",
        )
        return
    error = None
    if np.isfinite(interval[0]):
        error = np.clip([[value - interval[0]], [interval[1] - value]], 0, 2 * limit)
    axis.errorbar(
        k, value, yerr=error, fmt="o" if filled else "s", capsize=3, color="tab:red", markerfacecolor=face, label=label
    )


def figure(
    found: list[Preference], paths: list[str | Path], title: str, note: str = "", registry: Registry = PACKAGE
) -> None:
    """One panel per task: each own metric's gap (filled, 95 % interval) and bounded gap (open), with the other
    models' leave-one-out residuals (grey) for the misfit a model not trained on the metric gets. Gaps beyond
    the others' range are drawn at the edge with their value; "(flat map)" under a metric marks a gap whose map of
    the other models is flat (the table's *). ``note``: a line under ``title``."""
    sources = list(dict.fromkeys(p.source for p in found)) or ["no own metric"]
    limit = _limit(found)
    fig, axes = plt.subplots(1, len(sources), figsize=(3.6 * len(sources) + 0.8, 4.2), squeeze=False, sharey=True)
    for axis, source in zip(axes[0], sources):
        shown = [p for p in found if p.source == source]
        for k, p in enumerate(shown):
            others = np.clip(np.delete(p.residuals, p.conditions.index(p.loss)), -limit, limit)
            axis.plot(np.full(len(others), k - 0.2), others, ".", color="0.55", label="other models (LOO residual)")
            _own(axis, k, p.gap, p.interval, True, limit)
            _own(axis, k + 0.2, p.bounded, p.bounded_interval, False, limit)
        axis.axhline(0.0, color="0.5", linewidth=0.8, zorder=0)
        # The table's *: the map of the other models is flat, the gap is where the observers put the own model.
        names = [registry.metric(p.metric).info.label + ("\n(flat map)" if p.flat else "") for p in shown]
        axis.set_xticks(np.arange(len(shown)), names, fontsize=7.5)
        axis.set_xlim(-0.6, max(len(shown), 1) - 0.2)
        axis.set_title(source, fontsize=9)
        axis.grid(axis="y", color="0.9")
    axes[0][0].set_ylim(-limit, limit)
    axes[0][0].set_ylabel("JOD through the metric − observers' JOD")
    labels = {}
    for handle, label in zip(*axes[0][0].get_legend_handles_labels()):
        labels.setdefault(label, handle)
    fig.suptitle(title + ("\n" + textwrap.fill(note, 140) if note else ""), fontsize=9)
    fig.legend(list(labels.values()), list(labels), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_figure(fig, paths)


def write_study(
    studies: dict[str, tuple[Summary, dict[str, dict[str, dict[str, float]]]]],
    table: str | Path,
    figure_paths: list[str | Path],
    what: str,
    registry: Registry = PACKAGE,
) -> list[Preference]:
    """The self-preference table (``table``.csv, .md) and figure of ``studies``: study id → (its JOD summary,
    {row label of a task: that task's metric values {metric: {loss: value}}}); ``what`` names the data in the
    title ("the thesis's data")."""
    found, notes = [], []
    for study, (summary, tasks) in studies.items():
        notes.append(f"{study}: {observer_note(summary)}.")
        for label, values in tasks.items():
            found += preferences(summary, values, label, registry=registry)
    note = " ".join(notes)
    write_table(found, table, f"{TITLE}, {what}. {note}", registry)
    figure(found, figure_paths, f"{TITLE}, {what}", note, registry)
    return found


def thesis_studies(samples: int = 1000, seed: int = 0) -> dict[str, tuple[Summary, dict[str, dict]]]:
    """The thesis's studies as :func:`write_study` takes them: the shipped counts scaled with ``samples`` bootstrap
    samples (each pair's trials resampled), and the published metric tables of their tasks."""
    studies = {}
    for key, tables in thesis_sources().items():
        study = THESIS_STUDIES[key.removeprefix("thesis_")]
        conditions, counts = read_counts(study.path)
        summary = summarize(conditions, counts, samples, seed, observers=study.observers)
        studies[key] = (summary, {thesis_label(key, table): published_values(table) for table in tables})
    return studies


def main(argv: list[str] | None = None) -> None:
    """Self-preference and the metric–observer agreement on the thesis's published tables and shipped counts."""
    parser = argparse.ArgumentParser(
        prog="python -m lossbench.userstudy.self_preference",
        description=(
            "Does each metric favour the model trained on it? The thesis's Tables 6.1/6.3/6.4 against the JOD of its"
            " Tables 6.2/6.5 (from the shipped counts): self_preference.{csv,md,png,pdf} and agreement.{csv,md}"
            " (Kendall τ, Spearman ρ, leave-one-out RMSE in JOD) in --out."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the tables and the figure")
    parser.add_argument("--samples", type=int, default=1000, help="bootstrap samples of each study's JOD")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    args = parser.parse_args(argv)
    try:
        studies = thesis_studies(args.samples, args.seed)
        args.out.mkdir(parents=True, exist_ok=True)
        figures = [args.out / f"self_preference.{ext}" for ext in ("png", "pdf")]
        write_study(studies, args.out / "self_preference", figures, "the thesis's data")
        rows, notes = [], []
        for key, (summary, tasks) in studies.items():
            notes += [f"{key}: {observer_note(summary)}.", f"{baseline_note(summary, key)}."]
            for label, values in tasks.items():
                rows += agreement_rows(summary, values, label)
        caption = f"Agreement of each metric with the observers, the thesis's data. {' '.join(notes)}"
        write_agreement(rows, args.out / "agreement", caption)
    except (ValueError, OSError) as error:
        sys.exit(f"error: {error}")
    print(f"wrote self_preference.{{csv,md,png,pdf}} and agreement.{{csv,md}} to {args.out}")


if __name__ == "__main__":
    main()
