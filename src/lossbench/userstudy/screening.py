"""Observer screening: how well the other observers' scale predicts each observer's answers.

For observer k the study is scaled without k's answers (the pwcmp scaling, :func:`~lossbench.userstudy.thurstone
.scale`), and k's answers are scored by their log-likelihood under that scale: ``Σ log Φ((q_chosen − q_other) /
σ)``. The idea is pwcmp's outlier analysis (``pw_outlier_analysis``); the statistic and the rule are ours. An
observer who answers as the model says has, given that scale, a log-likelihood whose mean and variance are known
in closed form (a sum of independent Bernoulli log-probabilities); ``z`` is the observer's log-likelihood in
standard deviations from that mean. A careless observer, who answers at random, chooses the worse condition more
often than the scale predicts and so has a low ``z``; an observer is flagged when ``z`` < −:data:`FLAG_Z`.

Flagging drops nobody: the analysis reports the JOD of all observers, and next to it the JOD without the flagged
ones (:func:`without_flagged`), with the table (:func:`write_screening`) naming who was left out and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import log_ndtr

from lossbench.core.io import markdown_table, write_lines, write_rows
from lossbench.userstudy.thurstone import SIGMA, check_counts, scale

#: An observer is flagged whose log-likelihood lies more than this many standard deviations below its expectation.
#: Chosen by simulation of the thesis's denoising study (its JODs, 10 observers × 120 trials, one answering at random;
#: 600 studies, bench/userstudy_screening.py): the random observer is flagged in 84 % of studies, each careful one
#: in 0.5 %, any of the nine careful ones in 4.5 %; at 2.0 they are 91 %, 2.0 % and 17.5 %.
FLAG_Z = 2.5
#: Fewest observers screened: with two, each would be judged by one other observer's scale alone.
MIN_SCREENED = 3
_FIELDS = ["observer", "trials", "log_likelihood", "per_trial", "expected_per_trial", "z", "flagged"]


@dataclass(frozen=True)
class ObserverFit:
    """How well the other observers' scale predicts one observer's answers.

    Attributes:
        observer: The observer's id.
        trials: Answers of the observer.
        log_likelihood: Σ log P(answer) under the others' scale (nats).
        expected: Its expectation for an observer who answers as that scale says.
        sd: Its standard deviation for such an observer (0: the scale makes every answer a coin flip).
        z: (log_likelihood − expected) / sd; 0 where sd is 0.
        flagged: z < −threshold.
    """

    observer: str
    trials: int
    log_likelihood: float
    expected: float
    sd: float
    z: float
    flagged: bool


def observer_fit(observer: str, own: np.ndarray, others: np.ndarray, threshold: float = FLAG_Z) -> ObserverFit:
    """Score the answers ``own`` (N, N) of ``observer`` under the scale of the counts ``others`` (N, N)."""
    q = scale(others)
    rows, cols = np.nonzero(own + own.T)
    upper = rows < cols
    rows, cols = rows[upper], cols[upper]
    x = (q[rows] - q[cols]) / SIGMA
    log_p, log_not_p = log_ndtr(x), log_ndtr(-x)
    p = np.exp(log_p)
    trials = own[rows, cols] + own[cols, rows]
    log_likelihood = float(np.sum(own[rows, cols] * log_p + own[cols, rows] * log_not_p))
    expected = float(np.sum(trials * (p * log_p + (1 - p) * log_not_p)))
    sd = float(np.sqrt(np.sum(trials * p * (1 - p) * (log_p - log_not_p) ** 2)))
    z = (log_likelihood - expected) / sd if sd > 0 else 0.0
    return ObserverFit(observer, int(own.sum()), log_likelihood, expected, sd, z, bool(z < -threshold))


def screen(observers: list[str], counts: np.ndarray, threshold: float = FLAG_Z) -> list[ObserverFit]:
    """Leave-one-observer-out fit of every observer.

    Args:
        observers: Observer ids, in the order of ``counts``.
        counts: (K, N, N) per-observer count matrices, K ≥ 2.
        threshold: Flag below −threshold standard deviations (default :data:`FLAG_Z`).

    Raises:
        ValueError: one line, for pooled counts, fewer than 2 observers or ids that do not fit the counts.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 3:
        raise ValueError(f"counts: screening needs per-observer counts (K, N, N), got shape {counts.shape}")
    if len(counts) < 2:
        raise ValueError(f"counts: screening needs at least 2 observers, got {len(counts)}")
    if len(observers) != len(counts):
        raise ValueError(f"observers: {len(observers)} ids for {len(counts)} observers' count matrices")
    if not threshold > 0:
        raise ValueError(f"threshold: expected a positive number of standard deviations, got {threshold}")
    for index, matrix in enumerate(counts):
        check_counts(matrix, f"counts[{index}] (observer {observers[index]})")
    total = counts.sum(axis=0)
    return [observer_fit(name, own, total - own, threshold) for name, own in zip(observers, counts)]


def screen_study(
    observers: list[str], counts: np.ndarray, threshold: float = FLAG_Z
) -> tuple[list[ObserverFit], list[str], np.ndarray, list[str]]:
    """:func:`screen` a study if it has :data:`MIN_SCREENED` observers or more, and leave out the flagged ones.

    Returns:
        (fits, observers kept, their counts, observers left out); with fewer observers no fits, and everyone kept.
    """
    if len(counts) < MIN_SCREENED:
        return [], list(observers), np.asarray(counts), []
    fits = screen(observers, counts, threshold)
    return fits, *without_flagged(observers, counts, fits)


def without_flagged(
    observers: list[str], counts: np.ndarray, fits: list[ObserverFit]
) -> tuple[list[str], np.ndarray, list[str]]:
    """(observers kept, their counts, observers left out): the study without the flagged observers."""
    flagged = {fit.observer for fit in fits if fit.flagged}
    keep = [index for index, name in enumerate(observers) if name not in flagged]
    left_out = [name for name in observers if name in flagged]
    return [observers[index] for index in keep], np.asarray(counts)[keep], left_out


def write_screening(
    fits: list[ObserverFit], prefix: str | Path, threshold: float = FLAG_Z, observers: int | None = None
) -> list[Path]:
    """The screening table as ``prefix``.csv and .md, one row per observer, flagged observers marked.

    No ``fits`` (a study of fewer than :data:`MIN_SCREENED` ``observers``): a table without rows that says why.
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".md")
    rows = [
        [
            fit.observer,
            str(fit.trials),
            f"{fit.log_likelihood:.3f}",
            f"{fit.log_likelihood / fit.trials:.4f}" if fit.trials else "",
            f"{fit.expected / fit.trials:.4f}" if fit.trials else "",
            f"{fit.z:.2f}",
            "yes" if fit.flagged else "no",
        ]
        for fit in fits
    ]
    write_rows(csv_path, rows, _FIELDS)
    flagged = [fit.observer for fit in fits if fit.flagged]
    if not fits:
        caption = f"Observer screening: {observers} observer(s), too few to screen (at least {MIN_SCREENED} needed)."
    else:
        caption = (
            "Observer screening: each observer's answers scored by their log-likelihood under the scale of the other"
            " observers (nats per trial, and its expectation for an observer who answers as that scale predicts); z is"
            f" the log-likelihood in standard deviations from that expectation; flagged below z = −{threshold:g}. "
            + (
                f"Flagged: {', '.join(flagged)}. The JOD is reported with and without them."
                if flagged
                else "No observer is flagged."
            )
        )
    header = ["Observer", "Trials", "Log-likelihood", "Per trial", "Expected per trial", "z", "Flagged"]
    write_lines(md_path, [caption, "", markdown_table(header, rows, "lrrrrrl")])
    return [csv_path, md_path]
