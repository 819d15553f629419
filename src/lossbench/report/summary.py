"""A one-screen summary of a finished study: what it rests on, how much each model restores, and whether each loss wins
its own metric.

The thesis's structure (Tables 6.1, 6.3, 6.4) in two checks per task, read from the table CSVs that
:func:`lossbench.report.table_files.write_csv` writes, under a head that says what the numbers rest on:

- the experiment's ``description`` and, per task, its scale (:class:`Scale`): validation images
  and the units the statistics count, seeds, training steps, and what a single run is good to;
- the PSNR gain of every model over its degraded input, in dB;
- the "own-metric winner": which loss is best on each metric (direction from its spec, a user's
  ``own_metrics`` too), and whether the loss that optimises a metric is the one that wins it (l1
  on 1000·l1, l2 on 1000·l2, MS-SSIM on MS-SSIM, LPIPS+l2 on LPIPS, FLIP on FLIP). A miss gets a
  line of measured reason from the own-metric race (the metric over the last quarter of the
  training, from the models' curves) and the loss's notes on how it trains.

CLI (the tables' checks only):
    python -m lossbench.report.summary results/demo/tables/table_6_1.csv results/demo/tables/table_6_3.csv --out
    summary.md
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lossbench.core.io import markdown_table, read_metrics, read_rows
from lossbench.data import tasks
from lossbench.data.taskspec import counted
from lossbench.registry import PACKAGE, Registry
from lossbench.report.statistics import MIN_UNITS, testable
from lossbench.report.table_files import read_spread, read_table
from lossbench.report.tables import THESIS_TABLES

#: The share of the training whose change the race note reports (its last quarter).
LATE_SHARE = 0.25


@dataclass(frozen=True)
class Scale:
    """What one task's numbers rest on.

    Attributes:
        data: What the validation data are (``3 photographs bundled with ...``), or None for the
            thesis's (real) data.
        images: Validation images.
        units: Units the statistics count (:class:`lossbench.data.taskspec.AnalysisUnit`).
        unit: The unit's name, plural (``images``, ``volumes``).
        members: What a unit's images are, plural (``slices`` of a volume).
        seeds: Models per loss.
        steps: Training steps of each model (None: not known).
        race_images: Validation images the curves and the race score (None: all).
    """

    data: str | None
    images: int
    units: int
    unit: str
    members: str
    seeds: int
    steps: int | None
    race_images: int | None

    def validation(self) -> str:
        """``9 slices of 3 volumes`` or ``3 images``."""
        if self.unit == self.members:
            return counted(self.images, self.members)
        return f"{counted(self.images, self.members)} of {counted(self.units, self.unit)}"


def scale(kind: str, settings: Mapping, input_csv: str | Path, curve_csv: str | Path | None, seeds: int) -> Scale:
    """The :class:`Scale` of a task of ``kind`` with configuration ``settings``, from its inputs' per-image metrics and
    a model's curve."""
    spec = tasks.spec(kind)
    images = list(read_metrics(input_csv))
    curve = read_rows(curve_csv) if curve_csv is not None else []
    return Scale(
        spec.data_description(settings) if "data" in settings else None,
        len(images),
        len({spec.unit.of(image) for image in images}),
        spec.unit.plural,
        spec.unit.members,
        seeds,
        int(curve[-1]["step"]) if curve else None,
        settings.get("training", {}).get("val_images"),
    )


def scale_lines(scales: Mapping[str, Scale], spreads: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The summary's head: one row per task, and what a single run is good to."""
    body = []
    for task, about in scales.items():
        data = f" ({about.data})" if about.data else ""
        tested = (
            f"tested over {counted(about.units, about.unit)}"
            if testable(about.units)
            else f"not tested: n = {counted(about.units, about.unit)}, fewer than {MIN_UNITS}"
        )
        steps = about.steps if about.steps is not None else "—"
        body.append([task, f"{about.validation()}{data}", str(about.seeds), str(steps), tested])
    header = ["Task", "Validation", "Seeds", "Training steps per model", "Differences between losses"]
    lines = ["## What these numbers rest on", "", markdown_table(header, body, "llrrl")]
    lines.append("")
    measured = {task: max(spread.values()) for task, spread in spreads.items() if spread}
    if measured:
        lines.append(
            "PSNR's standard deviation over seeds, largest model per task: "
            + ", ".join(f"{task} {value:.2f} dB" for task, value in measured.items())
            + ". Differences smaller than that are within what retraining moves."
        )
    else:
        lines.append(
            "One seed per model: how far retraining moves these numbers is not measured in this run, so a difference"
            " between two models is not a finding until several seeds show it (config/statistics.yaml)."
        )
    return lines + [""]


def winners(values: dict[str, float], metric: str, registry: Registry = PACKAGE) -> list[str]:
    """The losses with the best value of ``metric`` of ``registry`` (ties share the win); the input is not a
    contender."""
    models = {loss: value for loss, value in values.items() if loss != "input"}
    if not models:
        return []
    best = (max if registry.metric(metric).info.higher_is_better else min)(models.values())
    return [loss for loss, value in models.items() if value == best]


def relative_gap(values: dict[str, float], metric: str, loss: str, registry: Registry = PACKAGE) -> float | None:
    """How far ``loss`` is behind the best model on ``metric``, as a fraction of the best value (0 when it wins)."""
    best = values[winners(values, metric, registry)[0]]
    if loss not in values or best == 0:
        return None
    return abs(values[loss] - best) / abs(best)


def late_change(curve: list[dict[str, str]], metric: str) -> tuple[float, int] | str:
    """How much ``metric`` (its ``val_<metric>`` column) moved over the last :data:`LATE_SHARE` of the training, and the
    steps trained.

    Returns:
        The change and the steps, or why it cannot be measured: the curve has no such column
        (trained without validation metrics) or a single validation.
    """
    points = [(int(row["step"]), float(row[f"val_{metric}"])) for row in curve if row.get(f"val_{metric}")]
    if not points:
        return "its curve has no validation metrics to tell whether it was still improving"
    if len(points) < 2:
        return "a single validation: whether it was still improving is not measured"
    last_step, last = points[-1]
    late = [value for step, value in points[:-1] if step >= (1 - LATE_SHARE) * last_step]
    return last - (late[0] if late else points[-2][1]), last_step


def miss_reason(
    metric: str,
    own: str,
    leader: str,
    values: dict[str, float],
    curves: Mapping[str, list[dict[str, str]]],
    race: str,
    registry: Registry = PACKAGE,
) -> str:
    """One line on why ``own`` does not win its own ``metric``: the race's late change of both models, and the loss's
    notes (from ``registry``, which labels the losses)."""
    info, label = registry.metric(metric).info, registry.loss_label
    gap = abs(values[own] - values[leader])
    decimals = info.decimals + 1
    text = f"{label(own)} is {gap:.{info.decimals}f} behind {label(leader)} on {info.label}"
    own_change, leader_change = late_change(curves.get(own, []), metric), late_change(curves.get(leader, []), metric)
    if isinstance(own_change, str):
        text += f" ({own_change})"
    else:
        change, steps = own_change
        improving = change != 0 and (change > 0) == info.higher_is_better
        text += (
            f". In the race ({race}), over the last quarter of its {steps} steps its {info.label} moved"
            f" {change * info.scale:+.{decimals}f}"
        )
        if not isinstance(leader_change, str):
            text += f", {label(leader)}'s {leader_change[0] * info.scale:+.{decimals}f}"
        text += (
            ": still improving when training stopped, so more steps may narrow the gap"
            if improving
            else ": no longer improving"
        )
    notes = registry.loss(own).training_notes if own in registry.losses else ""
    return text + (f". {notes}" if notes else ".")


def task_summary(
    name: str,
    table: dict[str, dict[str, float]],
    task: str | None = None,
    curves: Mapping[str, list[dict[str, str]]] | None = None,
    registry: Registry = PACKAGE,
) -> list[str]:
    """Markdown lines for the table ``name`` of ``task`` (default: the thesis's task of a thesis table, else the name):
    PSNR gain per model, then the winner of every metric.

    Args:
        curves: Loss → its first seed's curve rows, for the race notes of the own-metric misses.
        registry: The configuration's losses and metrics, which label the models and rows.
    """
    label = registry.loss_label
    task = task or THESIS_TABLES.get(name, name)
    lines = [f"## {task} ({name})", ""]
    psnr = table.get("psnr", {})
    if "input" in psnr:
        gains = [
            [label(loss), f"{psnr[loss]:.2f}", f"{psnr[loss] - psnr['input']:+.2f}"] for loss in psnr if loss != "input"
        ]
        lines += [f"Input PSNR {psnr['input']:.2f} dB. PSNR gain over the input:", ""]
        lines += [markdown_table(["Model", "PSNR (dB)", "Gain (dB)"], gains), ""]
    owners, misses, body = registry.own_metrics(), [], []
    for metric, values in table.items():
        best = winners(values, metric, registry)
        if not best:
            continue
        check = ""
        own = owners.get(metric)
        if own is not None and own in values:
            gap = relative_gap(values, metric, own, registry)
            behind = f" ({100 * gap:.1f} % behind)" if gap is not None else ""
            check = f"{label(own)} wins" if own in best else f"{label(own)} does not win{behind}"
            if own not in best:
                race = f"[figures/race_{task}.png](figures/race_{task}.png)"
                misses.append(miss_reason(metric, own, best[0], values, curves or {}, race, registry))
        body.append([registry.metric(metric).info.label, ", ".join(label(loss) for loss in best), check])
    lines.append(markdown_table(["Metric", "Best model", "Own-metric check"], body, "lll"))
    if misses:
        lines += ["", "Own-metric misses:", "", *(f"- {miss}" for miss in misses)]
    return lines + [""]


def summarise(
    tables: dict[str, str | Path],
    tasks: dict[str, str] | None = None,
    description: str | None = None,
    scales: Mapping[str, Scale] | None = None,
    curves: Mapping[str, Mapping[str, list[dict[str, str]]]] | None = None,
    registry: Registry = PACKAGE,
) -> str:
    """The summary in Markdown.

    Args:
        tables: Table name → its CSV.
        tasks: Table name → its task (as :func:`task_summary`).
        description: The experiment's ``description``, its first paragraph.
        scales: Task → its :class:`Scale`, the head's rows (none: no head).
        curves: Table name → loss → the first seed's curve rows (the race notes).
        registry: The configuration's losses and metrics (:class:`lossbench.registry.Registry`).
    """
    lines = ["# Summary: does every model restore, and does each loss win its own metric?", ""]
    if description:
        lines += [description.strip(), ""]
    if scales:
        lines += scale_lines(
            scales, {(tasks or {}).get(name, name): read_spread(path) for name, path in tables.items()}
        )
    for name, path in tables.items():
        lines += task_summary(name, read_table(path), (tasks or {}).get(name), (curves or {}).get(name), registry)
    return "\n".join(lines)


def read_curves(paths: Mapping[str, str | Path]) -> dict[str, list[dict[str, str]]]:
    """Loss → the rows of its ``curve.csv``."""
    return {loss: read_rows(path) for loss, path in paths.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lossbench.report.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+", help="table CSVs (results/<experiment>/tables/table_6_*.csv)")
    parser.add_argument("--out", help="also write the summary here (Markdown)")
    args = parser.parse_args(argv)
    try:
        text = summarise({Path(path).stem: path for path in args.tables})
    except (OSError, ValueError) as error:
        parser.exit(1, f"lossbench.report.summary: {error}\n")
    if args.out:
        Path(args.out).write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
