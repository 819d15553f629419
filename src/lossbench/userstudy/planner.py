"""Plan a pairwise study: how many observers each design needs for a target precision of the JOD, by simulation.

The truth is either assumed JOD scores or a pilot's answers scaled as the analysis scales them (pwcmp's
``pw_scale``): the plan then assumes the pilot's scores are the true ones. Simulated careful observers answer from
that truth (Thurstone Case V, :mod:`lossbench.userstudy.simulation`), each ``trials_per_observer`` comparisons,
under each design (full round-robin, random pairs, active sampling); after every further observer the pooled counts
are scaled again.

Precision, as the planner defines it: a study reaches ±p JOD when **every JOD difference** between two conditions
lies within ±p of the true difference in at least 95 % of the simulated studies, i.e. for each pair (i, j) the 95th
percentile over studies of ``|(q̂_i − q̂_j) − (t_i − t_j)|`` is at most p (p is the half-width of a 95 % interval of
the JOD differences; the worst pair decides). The mean RMSE of the centred scores is reported beside it.

Simulated observers are identical and careful: the plan holds no observer who disagrees with the others or who
answers at random, so it is a lower bound for a real study (screen and add a margin).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lossbench.core.io import read_rows, write_rows
from lossbench.userstudy.counts import read_counts
from lossbench.userstudy.responses import observer_counts, read_folder
from lossbench.userstudy.simulation import DESIGNS, rmse, simulate
from lossbench.userstudy.thurstone import scale, scale_many

#: The share of simulated studies whose every JOD difference must lie within the target.
COVERAGE = 0.95
#: Comparisons per observer in the thesis's denoising study (§6.1.2: 15 pairs × 8 images).
TRIALS_PER_OBSERVER = 120
STUDIES = 100
MAX_OBSERVERS = 30


@dataclass(frozen=True)
class DesignPlan:
    """What one design needs.

    Attributes:
        design: One of :data:`~lossbench.userstudy.simulation.DESIGNS`.
        observers: Fewest observers from which on (up to the limit) the target holds; None: not within the limit.
        error: (K,) the worst pair's 95th-percentile error of the JOD difference after 1..K observers, JOD.
        rmse: (K,) mean RMSE of the centred scores after 1..K observers, JOD.
    """

    design: str
    observers: int | None
    error: np.ndarray
    rmse: np.ndarray


def parse_jod(text: str) -> tuple[list[str], np.ndarray]:
    """``--jod``: comma-separated JOD scores (conditions c1, c2, …) or a JOD CSV as ``analyse`` writes (jod.csv:
    columns ``condition`` and ``jod``)."""
    if text.lower().endswith(".csv") or Path(text).exists():
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"--jod {text}: no such file (expected comma-separated JODs or analyse's jod.csv)")
        rows = read_rows(path)
        if not rows or not {"condition", "jod"} <= set(rows[0]):
            raise ValueError(f"--jod {text}: expected a CSV with columns condition and jod (analyse's jod.csv)")
        names, values = [row["condition"] for row in rows], [row["jod"] for row in rows]
    else:
        values = [value.strip() for value in text.split(",")]
        names = [f"c{index + 1}" for index in range(len(values))]
    try:
        jod = np.array([float(value) for value in values])
    except ValueError:
        raise ValueError(f"--jod {text}: expected numbers separated by commas, got {values}") from None
    if len(jod) < 2 or not np.all(np.isfinite(jod)):
        raise ValueError(f"--jod {text}: expected at least 2 finite JOD scores, got {len(jod)}: {values}")
    return names, jod


def check_settings(precision: float, trials_per_observer: int, studies: int, max_observers: int) -> None:
    """One-line errors for settings the simulation cannot plan with."""
    if not precision > 0:
        raise ValueError(f"--precision: expected a positive half-width in JOD, got {precision}")
    if trials_per_observer < 1:
        raise ValueError(f"--trials-per-observer: expected at least 1, got {trials_per_observer}")
    if studies < 20:
        raise ValueError(f"--studies: expected at least 20 (a 95th percentile needs them), got {studies}")
    if max_observers < 1:
        raise ValueError(f"--max-observers: expected at least 1, got {max_observers}")


def difference_errors(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|error| of every JOD difference: scores (..., N) against truth (N,) → (..., N (N − 1) / 2), pairs i < j."""
    rows, cols = np.triu_indices(len(truth), 1)
    return np.abs((scores[..., rows] - scores[..., cols]) - (truth[rows] - truth[cols]))


def fewest(error: np.ndarray, precision: float) -> int | None:
    """Fewest observers k (1-based) with ``error`` ≤ ``precision`` at k and every larger number simulated.

    Requiring it from k on, rather than at k alone, keeps a chance dip of the simulated curve from counting and makes
    the answer monotone in the precision.
    """
    above = np.flatnonzero(error > precision)
    if not len(above):
        return 1
    last = int(above[-1]) + 1  # observers of the last miss
    return None if last == len(error) else last + 1


def plan(
    truth: np.ndarray,
    precision: float,
    trials_per_observer: int = TRIALS_PER_OBSERVER,
    studies: int = STUDIES,
    max_observers: int = MAX_OBSERVERS,
    seed: int = 0,
) -> list[DesignPlan]:
    """Simulate ``studies`` studies of each design up to ``max_observers`` and find the observers each needs.

    Args:
        truth: (N,) true JOD scores, N ≥ 2.
        precision: Target half-width p in JOD (see the module's docstring).
        trials_per_observer: Comparisons each observer answers.
        studies: Simulated studies per design (at least 20).
        max_observers: The most observers simulated.
        seed: Seed of the simulation; study s of design d draws from ``(seed, s, d)``.

    Returns:
        One :class:`DesignPlan` per design, in the order of :data:`DESIGNS`.
    """
    check_settings(precision, trials_per_observer, studies, max_observers)
    truth = np.asarray(truth, dtype=float)
    marks = [trials_per_observer * k for k in range(1, max_observers + 1)]
    plans = []
    for design_index, design in enumerate(DESIGNS):
        counts = np.stack(
            [
                simulate(design, truth, marks, np.random.default_rng([seed, study, design_index]))
                for study in range(studies)
            ]
        )
        scores = scale_many(counts.reshape(-1, len(truth), len(truth))).reshape(studies, max_observers, len(truth))
        # The 95th percentile over studies of each pair's error, then the worst pair: (max_observers,).
        error = np.quantile(difference_errors(scores, truth), COVERAGE, axis=0).max(axis=1)
        mean_rmse = np.array([[rmse(row, truth) for row in study] for study in scores]).mean(axis=0)
        plans.append(DesignPlan(design, fewest(error, precision), error, mean_rmse))
    return plans


def rows(plans: list[DesignPlan], trials_per_observer: int) -> list[dict[str, object]]:
    """One row per design: observers, comparisons and the errors there (at the limit where not reached)."""
    table = []
    for entry in plans:
        k = entry.observers or len(entry.error)
        table.append(
            {
                "design": entry.design,
                "reached": entry.observers is not None,
                "observers": k,
                "trials_per_observer": trials_per_observer,
                "comparisons": k * trials_per_observer,
                "error95": round(float(entry.error[k - 1]), 4),
                "rmse": round(float(entry.rmse[k - 1]), 4),
            }
        )
    return table


def markdown(table: list[dict[str, object]], precision: float) -> str:
    """The table as Markdown; a design not reaching the target shows "> K" observers."""
    lines = [
        f"| Design | Observers for ±{precision:.2f} JOD | Trials per observer | Comparisons | Worst difference's 95 %"
        " error (JOD) | Mean RMSE (JOD) |",
        "|---|---|---|---|---|---|",
    ]
    for row in table:
        observers = row["observers"] if row["reached"] else f"> {row['observers']} (not reached)"
        lines.append(
            f"| {row['design']} | {observers} | {row['trials_per_observer']} | {row['comparisons']} |"
            f" {row['error95']:.3f} | {row['rmse']:.3f} |"
        )
    return "\n".join(lines)


def sentences(table: list[dict[str, object]], precision: float, studies: int) -> list[str]:
    """One plain line per design."""
    lines = []
    for row in table:
        size = f"{row['observers']} observers × {row['trials_per_observer']} trials = {row['comparisons']} comparisons"
        if row["reached"]:
            lines.append(
                f"{row['design']}: {size} reach ±{precision:.2f} JOD (every JOD difference within it in"
                f" {COVERAGE * 100:.0f} % of {studies} simulated studies)"
            )
        else:
            lines.append(
                f"{row['design']}: ±{precision:.2f} JOD not reached within {size} (the worst difference's"
                f" {COVERAGE * 100:.0f} % error there is {row['error95']:.2f} JOD); raise --max-observers or relax"
                " --precision"
            )
    return lines


def write_plan(table: list[dict[str, object]], text: str, folder: str | Path) -> None:
    """``folder``/plan.csv (one row per design) and plan.md (the printed report)."""
    folder = Path(folder)
    write_rows(folder / "plan.csv", table, list(table[0]))
    (folder / "plan.md").write_text(text + "\n")


def add_command(commands: argparse._SubParsersAction) -> None:
    """The ``plan`` subcommand of ``python -m lossbench.userstudy``."""
    plan = commands.add_parser(
        "plan",
        help="observers and comparisons each design needs for a target precision, by simulation",
        description="Simulate studies of each design (full, random, active) from pilot answers or assumed JOD scores"
        " and report the fewest observers with which every JOD difference lies within ±PRECISION of the truth in"
        " 95 % of the simulated studies.",
    )
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument("--counts", help="pilot count matrix CSV (chosen,<conditions>... or per observer)")
    source.add_argument("--manifest", help="the pilot's manifest.json (with --responses)")
    source.add_argument("--jod", help="assumed JOD scores: comma-separated (0,0.5,1.2) or analyse's jod.csv")
    plan.add_argument("--responses", help="folder of the pilot's <observer>.jsonl answer files")
    plan.add_argument(
        "--precision",
        type=float,
        required=True,
        help="target half-width p in JOD: every JOD difference within ±p of the truth in 95 %% of simulated studies",
    )
    plan.add_argument(
        "--trials-per-observer",
        dest="trials_per_observer",
        type=int,
        default=TRIALS_PER_OBSERVER,
        help=f"comparisons each observer answers (default {TRIALS_PER_OBSERVER}, the thesis's denoising study)",
    )
    plan.add_argument("--studies", type=int, default=STUDIES, help=f"simulated studies per design (default {STUDIES})")
    plan.add_argument(
        "--max-observers",
        dest="max_observers",
        type=int,
        default=MAX_OBSERVERS,
        help=f"the most observers simulated (default {MAX_OBSERVERS})",
    )
    plan.add_argument("--seed", type=int, default=0, help="seed of the simulation (default 0)")
    plan.add_argument("--out", help="folder for plan.csv and plan.md")
    plan.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    """``plan``: the plan of each design for the truth the arguments give, printed and written to ``--out``."""

    check_settings(args.precision, args.trials_per_observer, args.studies, args.max_observers)
    if args.jod:
        conditions, truth = parse_jod(args.jod)
        source = f"assumed JOD scores (--jod {args.jod})"
    else:
        if args.counts:
            if not Path(args.counts).is_file():
                raise ValueError(f"--counts {args.counts}: no such file (expected a count matrix CSV)")
            conditions, counts = read_counts(args.counts)
            pilot = args.counts
        else:
            # Deferred: the stimuli module imports torch and h5py, which the CLI's --help and serve start without.
            from lossbench.userstudy.stimuli import load_manifest

            conditions, counts = observer_counts(load_manifest(args.manifest), read_folder(args.responses))[1:]
            pilot = args.responses
        pooled = counts.sum(axis=0) if counts.ndim == 3 else counts
        if not pooled.any():
            raise ValueError(f"{pilot}: the pilot holds no answers")
        truth = scale(pooled)
        source = (
            f"the pilot's scaled JOD ({pilot}, {int(pooled.sum())} answers; pwcmp scaling, mean 0): the plan assumes"
            " the pilot's scores are the truth"
        )
    truth_text = ", ".join(f"{name} {value:+.2f}" for name, value in zip(conditions, truth))
    table = rows(
        plan(truth, args.precision, args.trials_per_observer, args.studies, args.max_observers, args.seed),
        args.trials_per_observer,
    )
    text = "\n".join(
        [
            f"Truth: {source}.",
            f"JOD: {truth_text}.",
            f"Target: every JOD difference within ±{args.precision:.2f} JOD of the truth in 95 % of {args.studies}"
            f" simulated studies per design (seed {args.seed}; identical careful observers, so a lower bound).",
            "",
            markdown(table, args.precision),
            "",
            *sentences(table, args.precision, args.studies),
        ]
    )
    print(text)
    if args.out:
        write_plan(table, text, args.out)
        print(f"wrote {Path(args.out) / 'plan.csv'} and plan.md")
