"""Plots of numbers: each loss's training curves, the own-metric race of every validation metric over the training,
and the models ranked per metric with their significance (:mod:`lossbench.report.statistics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from statistics import fmean

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lossbench.core.io import read_metrics, read_rows, save_figure  # noqa: E402
from lossbench.core.specs import MetricInfo  # noqa: E402
from lossbench.data.taskspec import PER_IMAGE, AnalysisUnit  # noqa: E402
from lossbench.metrics import STUDY_METRICS  # noqa: E402
from lossbench.registry import PACKAGE, Registry  # noqa: E402
from lossbench.report import statistics  # noqa: E402


def input_baseline(input_metrics: str | Path, val_images: int | None) -> dict[str, float]:
    """Mean of each metric of the degraded inputs over the validation images the curves use.

    Args:
        input_metrics: Per-image metrics of the degraded inputs (``evaluate_input``), in the
            validation set's order.
        val_images: How many of the first validation images the per-epoch validation scores
            (``training.val_images``; None: all), so the baseline is over the same images.
    """
    rows = list(read_metrics(input_metrics).values())[:val_images]
    return {name: fmean(row[name] for row in rows) for name in rows[0]}


def _baseline(axis: plt.Axes, value: float, label: str) -> None:
    """A dashed horizontal line at ``value``, kept inside the axis (a curve starting at it would put it on the
    frame)."""
    axis.axhline(value, color="black", linestyle="--", linewidth=1, label=label)
    low, high = axis.get_ylim()
    margin = 0.05 * (max(high, value) - min(low, value))
    axis.set_ylim(min(low, value - margin), max(high, value + margin))


def _epoch_axis(axis: plt.Axes, label: str = "epoch") -> None:
    axis.set_xlabel(label, fontsize=8)
    # min_n_ticks=1: with the default 2, a one-epoch run's narrow x range falls back to fractional ticks.
    axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    # Close values (a short run's PSNRs within 0.01 dB) would otherwise read as an offset plus thousandths.
    if axis.get_yscale() == "linear":
        axis.ticklabel_format(axis="y", useOffset=False)
    axis.grid(alpha=0.3)
    axis.tick_params(labelsize=7)


def _grid(panels: int, columns: int, width: float = 3.3, height: float = 2.6) -> tuple[plt.Figure, list[plt.Axes]]:
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows + 1.0), squeeze=False)
    for axis in axes.flat[panels:]:
        axis.axis("off")
    return figure, list(axes.flat[:panels])


def curves_figure(
    curves: dict[str, str | Path],
    out_paths: list[str | Path],
    title: str,
    lpips_pretrained: bool = True,
    input_metrics: str | Path | None = None,
    val_images: int | None = None,
    registry: Registry = PACKAGE,
) -> None:
    """Each loss's training and validation loss on an axis of its own, and every loss's validation PSNR in one panel.

    A loss's values have its own scale (the adaptive loss, a negative log-likelihood, goes below
    zero), so on a shared axis the others would be flat lines: each loss gets its own panel, on a
    linear axis over its own range.

    Args:
        curves: Loss name → its ``curve.csv`` (lossbench.train).
        out_paths: Files to write; the format follows the suffix.
        title: Figure title.
        lpips_pretrained: Whether LPIPS+l2 used the pretrained trunk (for its label).
        input_metrics: Per-image metrics of the degraded inputs (``evaluate_input``); their mean PSNR
            over the images the validation scores is a dashed baseline on the PSNR panel, so a
            model that does not restore shows.
        val_images: The number of validation images the curves score (``training.val_images``).
        registry: The configuration's losses, which label the panels.
    """
    figure, axes = _grid(len(curves) + 1, min(4, len(curves) + 1))
    psnr_axis = axes[-1]
    for index, ((loss, path), axis) in enumerate(zip(curves.items(), axes)):
        rows = read_rows(path)
        epochs = [int(row["epoch"]) for row in rows]
        label = registry.loss_label(loss, lpips_pretrained)
        train, validation = [float(row["train_loss"]) for row in rows], [float(row["val_loss"]) for row in rows]
        axis.plot(epochs, train, marker=".", color=f"C{index}", label="training")
        axis.plot(epochs, validation, marker=".", color=f"C{index}", linestyle=":", label="validation")
        axis.set_title(f"{label}: loss", fontsize=9)
        axis.legend(fontsize=7, frameon=False)
        _epoch_axis(axis)
        psnr_axis.plot(epochs, [float(row["val_psnr"]) for row in rows], marker=".", color=f"C{index}", label=label)
    psnr_axis.set_title("Validation PSNR (dB), every loss", fontsize=9)
    if input_metrics is not None:
        _baseline(psnr_axis, input_baseline(input_metrics, val_images)["psnr"], "input (no restoration)")
    _epoch_axis(psnr_axis)
    handles, labels = psnr_axis.get_legend_handles_labels()
    # Below the panels, so that the legend never covers a curve.
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(figure, out_paths)


def race_figure(
    curves: dict[str, str | Path],
    out_paths: list[str | Path],
    title: str,
    infos: Mapping[str, MetricInfo],
    own_metric: Mapping[str, str],
    lpips_pretrained: bool = True,
    input_metrics: str | Path | None = None,
    val_images: int | None = None,
    registry: Registry = PACKAGE,
) -> None:
    """The own-metric race: every validation metric against the training step, a line per loss.

    The thesis reported only end points. Seen over the training, a reader tells whether a loss
    is still gaining on its own metric when training stops, and how far it is from the leader.
    The loss that optimises a panel's metric is drawn thick.

    Args:
        curves: Loss name → its ``curve.csv`` with ``val_<metric>`` columns (lossbench.train.loop).
        out_paths: Files to write; the format follows the suffix.
        title: Figure title.
        infos: The metrics to draw, a panel each, with their labels, directions and display scales.
        own_metric: Metric → the loss that optimises it (its line is thick).
        lpips_pretrained: Whether LPIPS+l2 used the pretrained trunk (for its label).
        input_metrics: Per-image metrics of the degraded inputs; each panel's dashed baseline is their
            mean over the ``val_images`` images the validation scores.
        val_images: The number of validation images the curves score (``training.val_images``).
        registry: The configuration's losses, which label the lines.

    A metric no curve holds (models trained before validation metrics, or before the metric was
    configured) has no panel, and the title names it.
    """
    tables = {loss: read_rows(path) for loss, path in curves.items()}
    drawn = [metric for metric in infos if any(rows and f"val_{metric}" in rows[0] for rows in tables.values())]
    missing = [infos[metric].label for metric in infos if metric not in drawn]
    if missing:
        title += f"\nnot in the curves (trained without them as validation metrics): {', '.join(missing)}"
    baseline = input_baseline(input_metrics, val_images) if input_metrics is not None else {}
    figure, axes = _grid(len(drawn), min(3, len(drawn)), width=4.0, height=2.9)
    label = partial(registry.loss_label, lpips_pretrained=lpips_pretrained)
    for axis, metric in zip(axes, drawn):
        _race_panel(axis, metric, infos[metric], tables, own_metric.get(metric), baseline, label)
    # One legend for every panel, in the thin style: a panel's thick line is its own metric's loss.
    handles = [Line2D([], [], color=f"C{index}", linewidth=1.5, label=label(loss)) for index, loss in enumerate(tables)]
    if baseline:
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1, label="input (no restoration)"))
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(figure, out_paths)


def _race_panel(
    axis: plt.Axes,
    metric: str,
    info: MetricInfo,
    tables: dict[str, list[dict[str, str]]],
    own: str | None,
    baseline: dict[str, float],
    label: Callable[[str], str],
) -> None:
    """One metric's panel of the race: a line per loss (thick: ``own``, trained on it) and the input's baseline."""
    for index, (loss, rows) in enumerate(tables.items()):
        points = [
            (int(row["step"]), float(row[f"val_{metric}"]) * info.scale) for row in rows if row.get(f"val_{metric}")
        ]
        if points:
            steps, values = zip(*points)
            axis.plot(steps, values, color=f"C{index}", linewidth=2.6 if loss == own else 1.1, marker=".", markersize=4)
    if metric in baseline:
        _baseline(axis, baseline[metric] * info.scale, "input")
    owner = f"; thick: {label(own)}, trained on it" if own in tables else ""
    axis.set_title(f"{info.label} ({'higher' if info.higher_is_better else 'lower'} is better){owner}", fontsize=8)
    _epoch_axis(axis, "training step")


def ranking_figure(
    model_csvs: dict[str, list[str | Path]],
    out_paths: list[str | Path],
    title: str,
    lpips_pretrained: bool = True,
    infos: Mapping[str, MetricInfo] | None = None,
    unit: AnalysisUnit = PER_IMAGE,
    registry: Registry = PACKAGE,
) -> None:
    """Models ranked per metric with 95 % intervals; a bar joins models whose difference is not significant.

    In the style of a critical-difference diagram: one panel per metric, the best model on top,
    the mean over validation units of seed-averaged values with its t interval, and to the right
    a vertical bar over each maximal run of models that no Holm-corrected paired test separates
    (:mod:`lossbench.report.statistics`). With fewer units than a test needs there are neither intervals
    nor bars, and the title says so.

    Args:
        model_csvs: Loss → its models' per-image metric CSVs, one per seed.
        out_paths: Files to write; the format follows the suffix.
        title: Figure title.
        lpips_pretrained: Whether LPIPS+l2 used the pretrained trunk (for its label).
        infos: The metrics to rank, a panel each (:meth:`lossbench.registry.Registry.metric_rows` of the
            configuration's metrics, for its own ones); None: the thesis's six.
        unit: The unit of analysis (images, or volumes of MRI slices).
        registry: The configuration's losses, which label the models.
    """
    panels = statistics.compared(model_csvs, STUDY_METRICS if infos is None else infos, unit)
    if not panels:
        raise ValueError("a ranking figure needs at least two losses with a common metric")
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4.6 * columns, 0.45 * len(panels[0][2]) * rows + 1.4 * rows), squeeze=False
    )
    for axis in axes.flat[len(panels) :]:
        axis.axis("off")
    for axis, (_metric, info, losses, values) in zip(axes.flat, panels):
        _ranking_panel(axis, info, losses, values, partial(registry.loss_label, lpips_pretrained=lpips_pretrained))
    sample = statistics.sample_note(model_csvs, unit)
    if statistics.testable(panels[0][3].shape[2]):
        how = (
            f"95 % intervals over {unit.plural}; red bars join models not significantly different (paired t-test, Holm,"
            f" α = {statistics.ALPHA})"
        )
    else:
        how = (
            f"not tested: fewer than the {statistics.MIN_UNITS} independent {unit.plural} a test needs, so no intervals"
        )
    figure.suptitle(f"{title}\nmean over {unit.plural} of seed averages ({sample}); {how}", fontsize=9)
    figure.tight_layout()
    save_figure(figure, out_paths)


def _ranking_panel(
    axis: plt.Axes, info: MetricInfo, losses: list[str], values: np.ndarray, label: Callable[[str], str]
) -> None:
    """One metric's panel of the ranking: each loss's mean and interval, best on top, and the bars joining the runs of
    losses that no test separates."""
    intervals = {loss: statistics.mean_interval(values[index]) for index, loss in enumerate(losses)}
    order = sorted(losses, key=lambda loss: intervals[loss][0], reverse=info.higher_is_better)
    for rank, loss in enumerate(order):
        mean, low, high = intervals[loss]
        axis.errorbar(
            mean,
            rank,
            xerr=None if math.isnan(low) else [[mean - low], [high - mean]],
            fmt="o",
            color="C0",
            capsize=3,
        )
    axis.set_yticks(range(len(order)), [label(loss) for loss in order], fontsize=8)
    axis.invert_yaxis()
    low_x, high_x = axis.get_xlim()
    step = (high_x - low_x) * 0.04
    groups = (
        statistics.indistinct_groups(order, statistics.pairwise(losses, values))
        if statistics.testable(values.shape[2])
        else []
    )
    for offset, (first, last) in enumerate(groups):
        x = high_x + step * (1 + offset)
        axis.plot([x, x], [first - 0.15, last + 0.15], color="C3", linewidth=3, solid_capstyle="round")
    axis.set_xlim(low_x, high_x + step * (2 + len(order)))
    axis.set_title(f"{info.label} ({'higher' if info.higher_is_better else 'lower'} is better)", fontsize=9)
    axis.grid(axis="x", alpha=0.3)
