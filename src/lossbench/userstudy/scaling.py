"""Thurstone Case V scaling of pairwise comparisons in JOD units, with bootstrap statistics.

The scaling itself, pwcmp's ``pw_scale``, is :mod:`lossbench.userstudy.thurstone` (:func:`scale`, imported
here too); this module resamples observers or trials, rescales each resample and summarises the
scores with percentile intervals, a covariance and p-values.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from lossbench.userstudy.thurstone import (
    GRADIENT_TOLERANCE,
    PRIOR_FLOOR,
    PRIORS,
    REGULARIZATIONS,
    SIGMA,
    Prior,
    Regularization,
    _scale_batch,
    check_counts,
    check_options,
    scale,
)

#: Fewest observers whose answers support confidence intervals and p-values. Resampling K observers
#: with replacement gives only C(2K − 1, K) distinct samples: 3 for 2 observers, 35 for 4, 126 for 5;
#: with fewer, percentiles and covariances of the bootstrap describe the resampling, not the data.
MIN_OBSERVERS = 5
#: What a summary's intervals resample: observers (per-observer counts) or each pair's trials (pooled counts).
RESAMPLED = ("observers", "trials")
LOG = logging.getLogger(__name__)

__all__ = [
    "GRADIENT_TOLERANCE",
    "MIN_OBSERVERS",
    "PRIORS",
    "PRIOR_FLOOR",
    "Prior",
    "REGULARIZATIONS",
    "RESAMPLED",
    "Regularization",
    "SIGMA",
    "Summary",
    "bootstrap",
    "check_counts",
    "check_options",
    "distinct_resamples",
    "few_observers",
    "from_samples",
    "scale",
    "summarize",
]


def distinct_resamples(observers: int) -> int:
    """Distinct multisets of ``observers`` drawn with replacement from ``observers``: C(2K − 1, K)."""
    return math.comb(2 * observers - 1, observers)


def _observer_counts(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    if counts.ndim == 3:
        for index, matrix in enumerate(counts):
            check_counts(matrix, f"counts[{index}] (observer {index})")
        if len(counts) < MIN_OBSERVERS:
            raise ValueError(
                f"counts: bootstrapping over observers needs at least {MIN_OBSERVERS} observers, got {len(counts)}"
                f" ({distinct_resamples(len(counts))} distinct resamples)"
            )
        return counts
    return check_counts(counts)[None]


def bootstrap(
    counts: np.ndarray,
    n_samples: int = 1000,
    seed: int = 0,
    prior: Prior = "gaussian",
    regularization: Regularization = "mean0",
) -> np.ndarray:
    """Bootstrap JOD samples: ``n_samples`` rescalings of resampled data.

    Args:
        counts: (N, N) totals, or (K, N, N) one count matrix per observer, K at least
            :data:`MIN_OBSERVERS`. With observers the observers are resampled with replacement (the
            toolbox's ``pw_scale_bootstrp``); with totals only, each pair's trials are resampled with
            replacement, keeping the number of trials per pair.
        n_samples: Number of bootstrap samples.
        seed: Seed of the resampling.
        prior: Distance prior of every scaling, as for :func:`scale`.
        regularization: Offset of every scaling, as for :func:`scale`.

    Returns:
        (n_samples, N) JOD scores, each row anchored as ``regularization`` says.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples: expected at least 1, got {n_samples}")
    check_options(prior, regularization)
    per_observer = _observer_counts(counts)
    rng = np.random.default_rng(seed)
    if len(per_observer) > 1:
        resampled = np.stack(
            [per_observer[rng.integers(0, len(per_observer), len(per_observer))].sum(axis=0) for _ in range(n_samples)]
        )
    else:
        totals = per_observer[0]
        upper = np.triu_indices(len(totals), 1)
        trials = (totals + totals.T)[upper].astype(int)
        share = np.divide(totals[upper], trials, out=np.zeros(len(trials)), where=trials > 0)
        resampled = np.zeros((n_samples, *totals.shape))
        for index in range(n_samples):
            wins = rng.binomial(trials, share)
            resampled[index][upper] = wins
            resampled[index].T[upper] = trials - wins
    # Resamples lie near the full data's optimum: starting there saves most iterations.
    start = scale(per_observer.sum(axis=0), prior=prior)
    return _scale_batch(resampled, np.broadcast_to(start, (n_samples, len(start))), prior, regularization)


@dataclass
class Summary:
    """Scaling of a study with its bootstrap statistics; arrays are indexed by condition.

    A study of fewer than :data:`MIN_OBSERVERS` observers has scores only: ``resampled`` is None,
    ``samples`` has no rows, and the intervals, covariance and p-values are NaN.
    """

    conditions: list[str]
    jod: np.ndarray
    low: np.ndarray
    high: np.ndarray
    covariance: np.ndarray
    samples: np.ndarray
    #: Observers who gave the answers; None where the caller did not say (pooled counts).
    observers: int | None
    #: What the bootstrap resampled (one of :data:`RESAMPLED`); None: not resampled, no intervals.
    resampled: str | None

    @property
    def p_values(self) -> np.ndarray:
        """(N, N) one-sided p-values of the differences ``jod[i] − jod[j]`` (pwcmp's significance matrix).

        ``Φ(−|Δ| / sd(Δ))`` with the variance of the difference from the bootstrap covariance;
        p < 0.025 is a significant difference at the 5 % level, two-tailed. The diagonal is 1.
        All NaN when the study was not resampled.
        """
        if self.resampled is None:
            return np.full(self.covariance.shape, np.nan)
        variance = np.diag(self.covariance)
        spread = np.sqrt(np.maximum(variance[:, None] + variance[None, :] - 2.0 * self.covariance, 0.0))
        difference = np.abs(self.jod[:, None] - self.jod[None, :])
        z = np.divide(difference, spread, out=np.zeros_like(difference), where=spread > 0)
        p = ndtr(-z)
        p[(spread == 0) & (difference > 0)] = 0.0
        np.fill_diagonal(p, 1.0)
        return p


def summarize(
    conditions: list[str],
    counts: np.ndarray,
    n_samples: int = 1000,
    seed: int = 0,
    prior: Prior = "gaussian",
    regularization: Regularization = "mean0",
    observers: int | None = None,
) -> Summary:
    """JOD scores of the pooled counts with their bootstrap samples (see :func:`from_samples`).

    With fewer than :data:`MIN_OBSERVERS` observers there is no bootstrap: the summary holds the
    scores alone (see :class:`Summary`), and a warning says so.

    Args:
        conditions: Condition names, in the order of the count matrices' rows.
        counts: (N, N) totals or (K, N, N) per-observer counts, as for :func:`bootstrap`.
        n_samples: Bootstrap samples.
        seed: Seed of the resampling.
        prior: Distance prior, as for :func:`scale`.
        regularization: Offset of the scores, as for :func:`scale`.
        observers: How many observers gave the answers: needed with totals, whose trials are
            resampled only from :data:`MIN_OBSERVERS` observers on; with per-observer counts K,
            if given.

    Raises:
        ValueError: one line, for counts that do not fit ``conditions`` or ``observers``.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.shape[-1] != len(conditions):
        raise ValueError(f"counts: {counts.shape[-1]} conditions but {len(conditions)} names ({', '.join(conditions)})")
    per_observer = counts.ndim == 3
    if per_observer and observers is not None and observers != len(counts):
        raise ValueError(f"observers: {observers} given, but the counts hold {len(counts)} observers' matrices")
    if observers is not None and observers < 1:
        raise ValueError(f"observers: expected at least 1, got {observers}")
    observers = len(counts) if per_observer else observers
    pooled = counts.sum(axis=0) if per_observer else counts
    jod = scale(pooled, prior=prior, regularization=regularization)
    if observers is not None and observers < MIN_OBSERVERS:
        LOG.warning("%s; JOD scores only", few_observers(observers))
        return from_samples(conditions, jod, np.empty((0, len(conditions))), observers=observers, resampled=None)
    resampled = "observers" if per_observer else "trials"
    return from_samples(
        conditions,
        jod,
        bootstrap(counts, n_samples, seed, prior, regularization),
        observers=observers,
        resampled=resampled,
    )


def few_observers(observers: int) -> str:
    """Why a study of ``observers`` (fewer than :data:`MIN_OBSERVERS`) has no intervals and no p-values."""
    return (
        f"{observers} observer{'s' if observers != 1 else ''}: fewer than the {MIN_OBSERVERS} that resampling needs "
        f"({distinct_resamples(observers)} distinct resamples), so no confidence intervals and no significance tests"
    )


def from_samples(
    conditions: list[str],
    jod: np.ndarray,
    samples: np.ndarray,
    *,
    observers: int | None,
    resampled: str | None,
    alpha: float = 0.05,
) -> Summary:
    """Summary of a scaling from its bootstrap samples: ``1 − alpha`` percentile intervals and covariance.

    ``samples`` without rows (``resampled`` None) give NaN intervals and covariance.
    """
    if resampled is not None and resampled not in RESAMPLED:
        raise ValueError(f"resampled: expected one of {', '.join(RESAMPLED)} or None, got {resampled!r}")
    samples = np.asarray(samples, dtype=float).reshape(-1, len(conditions))
    if resampled is None and observers is None:
        raise ValueError("observers: a summary without resampling must say how many observers it has")
    if (resampled is None) != (len(samples) == 0):
        raise ValueError(
            f"samples: {len(samples)} bootstrap samples for a summary {'not ' if resampled is None else ''}resampled"
        )
    if resampled is None:
        nan = np.full(len(conditions), np.nan)
        return Summary(
            list(conditions),
            np.asarray(jod, dtype=float),
            nan,
            nan.copy(),
            np.full((len(conditions),) * 2, np.nan),
            samples,
            observers,
            None,
        )
    low, high = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return Summary(
        list(conditions),
        np.asarray(jod, dtype=float),
        low,
        high,
        np.cov(samples, rowvar=False),
        samples,
        observers,
        resampled,
    )
