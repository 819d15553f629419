"""Count matrices and probability tables of pairwise-comparison studies, and the thesis's own data.

A count matrix ``counts[i, j]`` holds how often condition i was chosen over condition j. The
thesis prints probability tables the other way round: rows are the losers, columns the winners,
and a cell is P(column chosen over row). Its two studies ship as count matrices beside this module
(``data/thesis_*.csv``), derived from the published Tables 6.2 and 6.5 by
:func:`counts_from_probabilities`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lossbench.core.io import read_lists, write_rows
from lossbench.report import paper
from lossbench.userstudy.thurstone import check_counts

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class ThesisStudy:
    """One of the thesis's user studies: where it is published and how many trials each pair had."""

    table: str
    task: str
    observers: int
    images: int
    jod_figure: str
    triangle_figure: str
    #: Pairs with another number of trials than observers × images, as the printed fractions show.
    other_trials: tuple[tuple[str, str, int], ...] = ()

    @property
    def path(self) -> Path:
        return DATA / f"thesis_{self.task}.csv"


#: The thesis's studies: §6.1.2 (14 observers × 8 images) and §6.2.2 (12 observers × 4 images;
#: LPIPS+l2 vs Adaptive has 58 trials, since 0.3276 = 19/58 and 0.6724 = 39/58).
THESIS_STUDIES = {
    "denoise": ThesisStudy("table_6_2", "denoise", 14, 8, "fig_6_7", "fig_6_8"),
    "mri": ThesisStudy("table_6_5", "mri", 12, 4, "fig_6_17", "fig_6_18", (("lpips_l2", "adaptive", 58),)),
}


def probabilities(counts: np.ndarray) -> np.ndarray:
    """The thesis's probability table: ``P[r, c]`` = P(c chosen over r); NaN where never compared."""
    counts = check_counts(counts)
    totals = counts + counts.T
    with np.errstate(invalid="ignore", divide="ignore"):
        table = np.where(totals > 0, counts.T / totals, np.nan)
    np.fill_diagonal(table, 0.0)
    return table


def counts_from_probabilities(table: np.ndarray, trials: np.ndarray, decimals: int = 4) -> np.ndarray:
    """Invert :func:`probabilities` for a table printed to ``decimals`` places.

    Args:
        table: ``P[r, c]`` = P(c chosen over r), rows losers, columns winners.
        trials: (N, N) symmetric number of trials per pair.
        decimals: Places the table was printed with.

    Raises:
        ValueError: if a cell is no fraction k / trials that rounds to the printed value, i.e. the
            assumed numbers of trials are wrong.
    """
    table, trials = np.asarray(table, dtype=float), np.asarray(trials, dtype=float)
    counts = np.round(table.T * trials)
    np.fill_diagonal(counts, 0.0)
    tolerance = 0.5 * 10.0**-decimals + 1e-12
    off = ~np.eye(len(table), dtype=bool)
    for r, c in zip(*np.nonzero(off & (np.abs(counts.T / trials - table) > tolerance))):
        raise ValueError(
            f"cell ({r}, {c}) = {table[r, c]} is not k/{int(trials[r, c])} for any k: wrong number of trials"
        )
    if np.any((counts + counts.T)[off] != trials[off]):
        raise ValueError("the table's P(a over b) and P(b over a) do not add up to the number of trials")
    return counts


def thesis_trials(study: ThesisStudy, conditions: list[str]) -> np.ndarray:
    """Trials per pair of a thesis study: observers × images, except the listed pairs."""
    trials = np.full((len(conditions), len(conditions)), study.observers * study.images, dtype=float)
    for a, b, n in study.other_trials:
        i, j = conditions.index(a), conditions.index(b)
        trials[i, j] = trials[j, i] = n
    return trials


def thesis_counts_from_paper(study: ThesisStudy) -> tuple[list[str], np.ndarray]:
    """(conditions, counts) of a thesis study, derived from its published probability table."""
    published = paper.table(study.table)
    conditions = list(published)
    table = np.array([[published[r][c] for c in conditions] for r in conditions])
    return conditions, counts_from_probabilities(table, thesis_trials(study, conditions))


def write_counts(
    conditions: list[str], counts: np.ndarray, path: str | Path, observers: list[str] | None = None
) -> None:
    """Write count matrices as CSV, one row per chosen condition: header ``chosen,<conditions>``,
    or with ``observers`` (counts of shape (K, N, N)) header ``observer,chosen,<conditions>``.
    """
    counts = np.asarray(counts, dtype=float)
    per_observer = counts if observers is not None else counts[None]
    if observers is not None and len(observers) != len(per_observer):
        raise ValueError(f"{path}: {len(per_observer)} count matrices for {len(observers)} observers")
    rows = [
        [*([] if observers is None else [observers[index]]), name, *(int(value) for value in row)]
        for index, matrix in enumerate(per_observer)
        for name, row in zip(conditions, check_counts(matrix, str(path)))
    ]
    write_rows(path, rows, ([] if observers is None else ["observer"]) + ["chosen", *conditions])


def read_counts(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read count matrices written by :func:`write_counts`: (conditions, (N, N) or (K, N, N) counts)."""
    rows = read_lists(path)
    per_observer = bool(rows) and rows[0][:1] == ["observer"]
    skip = 2 if per_observer else 1
    if not rows or rows[0][skip - 1] != "chosen":
        raise ValueError(f"{path}: expected a header 'chosen,<condition>,...' or 'observer,chosen,<condition>,...'")
    conditions = rows[0][skip:]
    blocks = [rows[1 + start : 1 + start + len(conditions)] for start in range(0, len(rows) - 1, len(conditions))]
    matrices = []
    for block in blocks:
        if [row[skip - 1] for row in block] != conditions:
            raise ValueError(
                f"{path}: row names {[row[skip - 1] for row in block]} differ from the columns {conditions}"
            )
        try:
            matrices.append(
                check_counts(np.array([[float(value) for value in row[skip:]] for row in block]), str(path))
            )
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error
    return conditions, np.stack(matrices) if per_observer else matrices[0]


def observer_names(path: str | Path) -> list[str]:
    """The observers of a per-observer counts file written by :func:`write_counts`, in the order of its matrices."""
    conditions, counts = read_counts(path)
    if counts.ndim != 3:
        raise ValueError(f"{path}: pooled counts, no observer column")
    return [row[0] for row in read_lists(path)[1 :: len(conditions)]]


def main(argv: list[str] | None = None) -> None:
    """Derive the thesis's count matrices from the published tables: check the shipped ones, or write copies.

    Never writes into the package's data folder: the shipped files are inputs of the workflow, and
    a new modification time would rerun the user-study analysis.
    """
    parser = argparse.ArgumentParser(
        prog="python -m lossbench.userstudy.counts",
        description="Count matrices of the thesis's user studies, derived from the published Tables 6.2 and 6.5.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--check", action="store_true", help=f"check that the shipped {DATA}/thesis_*.csv equal the derivation"
    )
    action.add_argument(
        "--out",
        type=Path,
        help="folder to write thesis_<study>.csv into (not the package's data folder; existing files are kept)",
    )
    args = parser.parse_args(argv)
    if args.check:
        for study in THESIS_STUDIES.values():
            conditions, counts = thesis_counts_from_paper(study)
            shipped_conditions, shipped = read_counts(study.path)
            if shipped_conditions != conditions or not np.array_equal(shipped, counts):
                sys.exit(f"{study.path}: differs from the counts derived from thesis {study.table}")
            print(f"{study.path}: equals the counts derived from thesis {study.table}")
        return
    if args.out.resolve() == DATA.resolve():
        sys.exit(f"--out {args.out}: refusing to write into the package's data folder; choose another folder")
    paths = [args.out / study.path.name for study in THESIS_STUDIES.values()]
    for path in paths:
        if path.exists():
            sys.exit(f"--out {args.out}: {path.name} exists already; remove it or choose another folder")
    for study, path in zip(THESIS_STUDIES.values(), paths):
        write_counts(*thesis_counts_from_paper(study), path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
