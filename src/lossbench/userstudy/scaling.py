"""Thurstone Case V scaling of pairwise comparisons in JOD units, with bootstrap statistics.

The estimator is the one of Perez-Ortiz & Mantiuk (2017) as implemented in their pwcmp toolbox
(``pw_scale`` with its defaults): maximum likelihood over every compared ordered pair, with
``P(i over j) = Φ((q_i − q_j) / σ)`` and σ = 1.4826 so that a difference of 1 JOD means 75 %
preference, their "gaussian" distance prior (the normalised likelihood of each distance under
every compared pair's answers, unanimous answers moved one vote towards a tie) and their weak
mean-zero regularisation. Disconnected comparison graphs are joined the way the toolbox joins them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_ndtr, ndtr

#: σ of the observer noise: Φ(1 / SIGMA) = 0.75, i.e. 1 JOD is 75 % preference.
SIGMA = 1.4826
#: pwcmp's constants: the prior's normalisation guard, its additive floor, the mean-zero weight.
PRIOR_EPSILON = 1e-8
PRIOR_FLOOR = 0.1
MEAN_WEIGHT = 0.01
_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


def check_counts(counts: np.ndarray, name: str = "counts") -> np.ndarray:
    """``counts`` as a float array after checking it is a square matrix of non-negative integers.

    Raises:
        ValueError: one line naming what is wrong.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] < 2:
        raise ValueError(f"{name}: expected a square matrix of at least 2 conditions, got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise ValueError(f"{name}: entries must be non-negative integers")
    if np.any(np.diag(counts) != 0):
        raise ValueError(f"{name}: a condition cannot be compared with itself (non-zero diagonal)")
    return counts


def _components(graph: np.ndarray) -> np.ndarray:
    """Connected-component label (0, 1, ...) of every node of a symmetric boolean adjacency matrix."""
    labels = np.full(len(graph), -1)
    for start in range(len(graph)):
        if labels[start] >= 0:
            continue
        label = labels.max() + 1
        stack = [start]
        while stack:
            node = stack.pop()
            if labels[node] < 0:
                labels[node] = label
                stack.extend(np.flatnonzero(graph[node] & (labels < 0)))
    return labels


def _join_components(counts: np.ndarray) -> np.ndarray:
    """Link the best condition of every disconnected part of the comparison graph by a tie (1 : 1).

    Without a link the relative position of the parts is undefined; pwcmp picks each part's best
    condition by the ISO 20462 closed-form estimate and declares them equivalent.
    """
    labels = _components((counts + counts.T) > 0)
    if labels.max() == 0:
        return counts
    totals = counts + counts.T
    share = np.divide(counts, totals, out=np.full_like(counts, 0.5), where=totals > 0)
    iso = np.sum(-(12.0 / np.pi * np.arcsin(np.sqrt(share)) - 3.0) / 2.0, axis=0)
    best = [int(np.flatnonzero(labels == part)[np.argmax(iso[labels == part])]) for part in range(labels.max() + 1)]
    joined = counts.copy()
    for a in best:
        for b in best:
            if a != b:
                joined[a, b] = 1.0
    return joined


@dataclass
class _Problem:
    """The data of one scaling, flattened over the compared ordered pairs (i, j), D_ij + D_ji > 0."""

    n: int
    rows: np.ndarray
    cols: np.ndarray
    wins: np.ndarray  # D_ij
    losses: np.ndarray  # D_ji
    prior_k: np.ndarray  # D_ij with unanimous answers moved one vote towards a tie
    prior_rest: np.ndarray  # n_ij − prior_k

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> _Problem:
        counts = _join_components(counts)
        totals = counts + counts.T
        # Column-major order, as the toolbox flattens; the objective does not depend on it.
        cols, rows = np.nonzero(totals.T > 0)
        wins, losses = counts[rows, cols], counts[cols, rows]
        k = wins.copy()
        unanimous = (wins == 0) | (losses == 0)
        k[unanimous & (wins == 0)] = 1.0
        k[unanimous & (wins != 0)] -= 1.0
        return cls(len(counts), rows, cols, wins, losses, k, totals[rows, cols] - k)

    def objective(self, q: np.ndarray) -> tuple[float, np.ndarray]:
        """Negative log posterior of scores ``q`` and its gradient."""
        x = (q[self.rows] - q[self.cols]) / SIGMA
        log_p, log_not_p = log_ndtr(x), log_ndtr(-x)
        # d prob / d x over prob and over (1 − prob), from logs so that neither under- nor overflows.
        log_pdf = -0.5 * x * x - _LOG_SQRT_2PI
        pdf_over_p, pdf_over_not_p = np.exp(log_pdf - log_p), np.exp(log_pdf - log_not_p)

        likelihood = self.wins @ log_p + self.losses @ log_not_p
        d_likelihood = self.wins * pdf_over_p - self.losses * pdf_over_not_p  # d/dx

        # aux[a, b]: likelihood of pair a's distance under pair b's answers, normalised over a.
        aux = np.exp(np.outer(log_p, self.prior_k) + np.outer(log_not_p, self.prior_rest))
        norm = aux.sum(axis=0) + PRIOR_EPSILON
        prior = ((aux + PRIOR_EPSILON) / norm).sum(axis=1)
        weight = 1.0 / (prior + PRIOR_FLOOR)
        # d aux[a, b] / d x_a, then the chain rule through the column normalisation.
        d_aux = aux * (np.outer(pdf_over_p, self.prior_k) - np.outer(pdf_over_not_p, self.prior_rest))
        spread = weight @ (aux + PRIOR_EPSILON)
        d_prior = weight * (d_aux @ (1.0 / norm)) - d_aux @ (spread / norm**2)  # d Σ log(prior + floor) / d x
        log_prior = np.log(prior + PRIOR_FLOOR).sum()

        mean = q.mean()
        value = -(likelihood + log_prior) + MEAN_WEIGHT * mean * mean
        d_x = -(d_likelihood + d_prior) / SIGMA
        gradient = np.bincount(self.rows, d_x, self.n) - np.bincount(self.cols, d_x, self.n)
        return value, gradient + 2.0 * MEAN_WEIGHT * mean / self.n

    def solve(self, start: np.ndarray | None = None) -> np.ndarray:
        """Scores at the optimum, searched from ``start`` (default zeros, as the toolbox)."""
        start = np.zeros(self.n) if start is None else start
        result = minimize(self.objective, start, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 1000})
        # The likelihood and prior depend only on differences, so the optimum has mean exactly 0.
        return result.x - result.x.mean()


def scale(counts: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """JOD score of every condition from a matrix of pairwise choices, mean 0.

    Args:
        counts: (N, N) non-negative integers; ``counts[i, j]`` is the number of times condition
            i was chosen over condition j.
        start: Scores to start the search from (default zeros); only the speed depends on it.

    Returns:
        (N,) JOD scores with mean 0; a difference of 1 means 75 % of choices prefer the higher.
    """
    return _Problem.from_counts(check_counts(counts)).solve(start)


def _observer_counts(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    if counts.ndim == 3:
        for index, matrix in enumerate(counts):
            check_counts(matrix, f"counts[{index}] (observer {index})")
        if len(counts) < 2:
            raise ValueError("counts: bootstrapping over observers needs at least 2 observers")
        return counts
    return check_counts(counts)[None]


def bootstrap(counts: np.ndarray, n_samples: int = 1000, seed: int = 0) -> np.ndarray:
    """Bootstrap JOD samples: ``n_samples`` rescalings of resampled data.

    Args:
        counts: (N, N) totals, or (K, N, N) one count matrix per observer. With observers the
            observers are resampled with replacement (the toolbox's ``pw_scale_bootstrp``); with
            totals only, each pair's trials are resampled with replacement, keeping the number of
            trials per pair.
        n_samples: Number of bootstrap samples.
        seed: Seed of the resampling.

    Returns:
        (n_samples, N) JOD scores, each row with mean 0.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples: expected at least 1, got {n_samples}")
    per_observer = _observer_counts(counts)
    rng = np.random.default_rng(seed)
    # Resamples lie near the full data's optimum: starting there saves most iterations.
    start = scale(per_observer.sum(axis=0))
    samples = np.empty((n_samples, per_observer.shape[1]))
    if len(per_observer) > 1:
        for index in range(n_samples):
            chosen = rng.integers(0, len(per_observer), len(per_observer))
            samples[index] = scale(per_observer[chosen].sum(axis=0), start)
        return samples
    totals = per_observer[0]
    upper = np.triu_indices(len(totals), 1)
    trials = (totals + totals.T)[upper].astype(int)
    share = np.divide(totals[upper], trials, out=np.zeros(len(trials)), where=trials > 0)
    for index in range(n_samples):
        wins = rng.binomial(trials, share)
        resampled = np.zeros_like(totals)
        resampled[upper] = wins
        resampled.T[upper] = trials - wins
        samples[index] = scale(resampled, start)
    return samples


@dataclass
class Summary:
    """Scaling of a study with its bootstrap statistics; arrays are indexed by condition."""

    conditions: list[str]
    jod: np.ndarray
    low: np.ndarray
    high: np.ndarray
    covariance: np.ndarray
    samples: np.ndarray

    @property
    def p_values(self) -> np.ndarray:
        """(N, N) one-sided p-values of the differences ``jod[i] − jod[j]`` (pwcmp's significance matrix).

        ``Φ(−|Δ| / sd(Δ))`` with the variance of the difference from the bootstrap covariance;
        p < 0.025 is a significant difference at the 5 % level, two-tailed. The diagonal is 1.
        """
        variance = np.diag(self.covariance)
        spread = np.sqrt(np.maximum(variance[:, None] + variance[None, :] - 2.0 * self.covariance, 0.0))
        difference = np.abs(self.jod[:, None] - self.jod[None, :])
        z = np.divide(difference, spread, out=np.zeros_like(difference), where=spread > 0)
        p = ndtr(-z)
        p[(spread == 0) & (difference > 0)] = 0.0
        np.fill_diagonal(p, 1.0)
        return p


def summarize(conditions: list[str], counts: np.ndarray, n_samples: int = 1000, seed: int = 0) -> Summary:
    """JOD scores of the pooled counts with their bootstrap samples (see :func:`from_samples`).

    Args:
        conditions: Condition names, in the order of the count matrices' rows.
        counts: (N, N) totals or (K, N, N) per-observer counts, as for :func:`bootstrap`.
        n_samples: Bootstrap samples.
        seed: Seed of the resampling.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.shape[-1] != len(conditions):
        raise ValueError(f"counts: {counts.shape[-1]} conditions but {len(conditions)} names ({', '.join(conditions)})")
    pooled = counts.sum(axis=0) if counts.ndim == 3 else counts
    return from_samples(conditions, scale(pooled), bootstrap(counts, n_samples, seed))


def from_samples(conditions: list[str], jod: np.ndarray, samples: np.ndarray, alpha: float = 0.05) -> Summary:
    """Summary of a scaling from its bootstrap samples: ``1 − alpha`` percentile intervals and covariance."""
    low, high = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return Summary(list(conditions), np.asarray(jod, dtype=float), low, high, np.cov(samples, rowvar=False), samples)
