"""A one-screen summary of a finished study: how much each model restores, and whether each loss wins its own metric.

The thesis's structure (Tables 6.1, 6.3, 6.4) in two checks per task, read from the table CSVs that
:func:`lossbench.tables.write_csv` writes:

- the PSNR gain of every model over its degraded input, in dB;
- the "own-metric winner": which loss is best on each metric (direction from its spec, a user's
  ``own_metrics`` too), and whether the loss that optimises a metric is the one
  that wins it (l2 on 1000·l2, MS-SSIM on MS-SSIM, LPIPS+l2 on LPIPS, FLIP on FLIP).

CLI:
    python -m lossbench.summary results/tables/table_6_1.csv results/tables/table_6_3.csv --out results/summary.md
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from lossbench.losses import SPECS, label
from lossbench.metrics import spec as metric_spec
from lossbench.tables import THESIS_TABLES

#: Metric → the loss that optimises it (the thesis expects each to win its own metric).
OWN_METRIC = {spec.own_metric: name for name, spec in SPECS.items() if spec.own_metric is not None}
#: Columns of a table CSV that are not models.
_NOT_MODELS = ("metric", "label", "best", "not_different_from_best")


def read_table(path: str | Path) -> dict[str, dict[str, float]]:
    """``{metric: {column: value}}`` of a table CSV; empty cells (not computed) are left out.

    Raises:
        ValueError: naming the file when it is not a table CSV of :func:`lossbench.tables.write_csv`.
    """
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "metric" not in rows[0] or "input" not in rows[0]:
        raise ValueError(f"{path}: not a lossbench table CSV (expected columns metric, label, input, <losses>)")
    columns = [column for column in rows[0] if column not in _NOT_MODELS and not column.endswith("_std")]
    return {row["metric"]: {column: float(row[column]) for column in columns if row.get(column)} for row in rows}


def winners(values: dict[str, float], metric: str) -> list[str]:
    """The losses with the best value of ``metric`` (ties share the win); the input is not a contender."""
    models = {loss: value for loss, value in values.items() if loss != "input"}
    if not models:
        return []
    best = (max if metric_spec(metric).info.higher_is_better else min)(models.values())
    return [loss for loss, value in models.items() if value == best]


def relative_gap(values: dict[str, float], metric: str, loss: str) -> float | None:
    """How far ``loss`` is behind the best model on ``metric``, as a fraction of the best value (0 when it wins)."""
    best = values[winners(values, metric)[0]]
    if loss not in values or best == 0:
        return None
    return abs(values[loss] - best) / abs(best)


def task_summary(name: str, table: dict[str, dict[str, float]], task: str | None = None) -> list[str]:
    """Markdown lines for the table ``name`` of ``task`` (default: the thesis's task of a thesis table, else the name): PSNR gain per model, then the winner of every metric."""
    task = task or THESIS_TABLES.get(name, name)
    lines = [f"## {task} ({name})", ""]
    psnr = table.get("psnr", {})
    if "input" in psnr:
        lines += [f"Input PSNR {psnr['input']:.2f} dB. PSNR gain over the input:", ""]
        lines += ["| Model | PSNR (dB) | Gain (dB) |", "|---|---:|---:|"]
        for loss in psnr:
            if loss != "input":
                lines.append(f"| {label(loss)} | {psnr[loss]:.2f} | {psnr[loss] - psnr['input']:+.2f} |")
        lines.append("")
    lines += ["| Metric | Best model | Own-metric check |", "|---|---|---|"]
    for metric, values in table.items():
        best = winners(values, metric)
        if not best:
            continue
        check = ""
        own = OWN_METRIC.get(metric)
        if own is not None and own in values:
            gap = relative_gap(values, metric, own)
            behind = f" ({100 * gap:.1f} % behind)" if gap is not None else ""
            check = f"{label(own)} wins" if own in best else f"{label(own)} does not win{behind}"
        lines.append(f"| {metric_spec(metric).info.label} | {', '.join(label(loss) for loss in best)} | {check} |")
    return lines + [""]


def summarise(tables: dict[str, str | Path], tasks: dict[str, str] | None = None) -> str:
    """The summary in Markdown of the tables ``{table name: CSV path}`` of the tasks ``{table name: task}`` (as :func:`task_summary`)."""
    lines = ["# Summary: does every model restore, and does each loss win its own metric?", ""]
    for name, path in tables.items():
        lines += task_summary(name, read_table(path), (tasks or {}).get(name))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lossbench.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+", help="table CSVs (results/tables/table_6_*.csv)")
    parser.add_argument("--out", help="also write the summary here (Markdown)")
    args = parser.parse_args(argv)
    try:
        text = summarise({Path(path).stem: path for path in args.tables})
    except (OSError, ValueError) as error:
        parser.exit(1, f"lossbench.summary: {error}\n")
    if args.out:
        Path(args.out).write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
