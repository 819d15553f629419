"""The thesis's published numbers (Tables 6.1–6.5), shipped as data files beside this module."""

from __future__ import annotations

import csv
from pathlib import Path

HERE = Path(__file__).parent


def table(name: str) -> dict[str, dict[str, float]]:
    """Published table ``name`` (e.g. ``"table_6_1"``) as {row: {column: value}}.

    Metric tables (6.1, 6.3, 6.4) are keyed by metric then model (``input`` is the Noisy/Masked
    column; l1 and l2 are ×1000 as printed). User-study tables (6.2, 6.5) are keyed by the losing
    loss (row) then the winning loss (column).
    """
    path = HERE / f"{name}.csv"
    if not path.is_file():
        available = sorted(p.stem for p in HERE.glob("table_*.csv"))
        raise ValueError(f"no published table {name!r}: expected one of {', '.join(available)}")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0][1:]
    return {row[0]: {column: float(value) for column, value in zip(header, row[1:])} for row in rows[1:]}


def errata() -> dict[tuple[str, str, str], str]:
    """Published cells known to be wrong: (table, metric, model) → why; they are flagged, not compared."""
    with open(HERE / "errata.csv", newline="") as handle:
        return {(row["table"], row["metric"], row["model"]): row["note"] for row in csv.DictReader(handle)}
