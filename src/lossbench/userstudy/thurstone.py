"""Thurstone Case V scaling of pairwise comparisons in JOD units: the maximum-likelihood estimator.

The estimator is the one of Perez-Ortiz & Mantiuk (2017) as implemented in their pwcmp toolbox
(``pw_scale``): maximum likelihood over every compared ordered pair, with
``P(i over j) = Φ((q_i − q_j) / σ)`` and σ = 1.4826 so that a difference of 1 JOD means 75 %
preference, by default their "gaussian" distance prior (the likelihood of each pair's distance
under every compared pair's answers, normalised per answering pair, unanimous answers moved one
vote towards a tie) and their mean-zero regularisation. Disconnected comparison graphs are joined
the way the toolbox joins them. The toolbox's options ``prior='none'`` and
``regularization='fix0'`` (the first condition fixed at 0) are offered too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_ndtr

#: σ of the observer noise: Φ(1 / SIGMA) = 0.75, i.e. 1 JOD is 75 % preference.
SIGMA = 1.4826
#: pwcmp's additive floor of the prior inside its logarithm.
PRIOR_FLOOR = 0.1
PRIORS = ("gaussian", "none")
REGULARIZATIONS = ("mean0", "fix0")
Prior = Literal["gaussian", "none"]
Regularization = Literal["mean0", "fix0"]
#: The optimum is where the largest |gradient| component (log-likelihood units) is below this.
GRADIENT_TOLERANCE = 1e-9
_NEWTON_ITERATIONS = 30
_BATCH_ELEMENTS = 4_000_000
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


def check_options(prior: str, regularization: str) -> None:
    """Raise a one-line ValueError unless ``prior`` and ``regularization`` are pwcmp options we implement."""
    if prior not in PRIORS:
        raise ValueError(f"prior: expected one of {', '.join(PRIORS)}, got {prior!r}")
    if regularization not in REGULARIZATIONS:
        raise ValueError(f"regularization: expected one of {', '.join(REGULARIZATIONS)}, got {regularization!r}")


@dataclass
class _Problem:
    """B scalings of one design, flattened over its P compared ordered pairs (i, j), D_ij + D_ji > 0.

    Every sample of a batch compares the same pairs; only the answers differ. Arrays of answers
    are (B, P).
    """

    n: int
    rows: np.ndarray  # (P,) i of each pair
    cols: np.ndarray  # (P,) j of each pair
    wins: np.ndarray  # D_ij
    losses: np.ndarray  # D_ji
    prior_k: np.ndarray  # D_ij with unanimous answers moved one vote towards a tie
    prior_rest: np.ndarray  # n_ij − prior_k
    prior: Prior = "gaussian"

    @classmethod
    def from_counts(cls, counts: np.ndarray, prior: Prior = "gaussian") -> _Problem:
        """The problem of (B, N, N) count matrices, each already joined (:func:`_join_components`)."""
        totals = counts + counts.transpose(0, 2, 1)
        compared = totals[0] > 0
        if np.any((totals > 0) != compared):
            raise ValueError("counts: every sample of a batch must compare the same pairs")
        # Column-major order, as the toolbox flattens; the objective does not depend on it.
        cols, rows = np.nonzero(compared.T)
        wins, losses = counts[:, rows, cols], counts[:, cols, rows]
        k = wins.copy()
        k[wins == 0] = 1.0
        k[(losses == 0) & (wins != 0)] -= 1.0
        return cls(counts.shape[1], rows, cols, wins, losses, k, totals[:, rows, cols] - k, prior)

    def take(self, index: np.ndarray) -> _Problem:
        """The sub-batch of samples ``index``."""
        return _Problem(
            self.n,
            self.rows,
            self.cols,
            self.wins[index],
            self.losses[index],
            self.prior_k[index],
            self.prior_rest[index],
            self.prior,
        )

    def objective(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Negative log posterior of scores ``q`` (B, N) without pwcmp's mean term, and its gradient (B, N).

        It depends only on differences of scores. The prior is computed in log space: with ~100
        trials per pair its terms are ~1e-34, far below any additive guard.
        """
        x = (q[:, self.rows] - q[:, self.cols]) / SIGMA
        log_p, log_not_p = log_ndtr(x), log_ndtr(-x)
        # d prob / d x over prob and over (1 − prob), from logs so that neither under- nor overflows.
        log_pdf = -0.5 * x * x - _LOG_SQRT_2PI
        pdf_over_p, pdf_over_not_p = np.exp(log_pdf - log_p), np.exp(log_pdf - log_not_p)
        value = -np.sum(self.wins * log_p + self.losses * log_not_p, axis=1)
        d_x = self.wins * pdf_over_p - self.losses * pdf_over_not_p  # d log-likelihood / d x

        if self.prior == "gaussian":
            # log aux[s, a, b]: log-likelihood of pair a's distance under pair b's answers.
            log_aux = log_p[:, :, None] * self.prior_k[:, None, :] + log_not_p[:, :, None] * self.prior_rest[:, None, :]
            # pwcmp: prior_a = Σ_b aux[a, b] / Σ_a' aux[a', b].
            normalised = np.exp(log_aux - log_aux.max(axis=1, keepdims=True))
            normalised /= normalised.sum(axis=1, keepdims=True)
            prior = normalised.sum(axis=2)
            weight = 1.0 / (prior + PRIOR_FLOOR)
            # d log aux[a, b] / d x_a, then the chain rule through the normalisation over a.
            d_log_aux = (
                pdf_over_p[:, :, None] * self.prior_k[:, None, :]
                - pdf_over_not_p[:, :, None] * self.prior_rest[:, None, :]
            )
            spread = np.einsum("sa,sab->sb", weight, normalised)
            d_x = d_x + np.sum(normalised * d_log_aux * (weight[:, :, None] - spread[:, None, :]), axis=2)
            value = value - np.log(prior + PRIOR_FLOOR).sum(axis=1)

        d_x = -d_x / SIGMA
        gradient = np.zeros_like(q)
        np.add.at(gradient.T, self.rows, d_x.T)
        np.subtract.at(gradient.T, self.cols, d_x.T)
        return value, gradient

    def solve(self, start: np.ndarray) -> np.ndarray:
        """Scores (B, N) at the optimum with the first fixed at 0, searched from ``start`` (B, N).

        Newton steps on the free N − 1 scores, with a finite-difference Hessian of the exact
        gradient and a backtracking line search, all samples at once; a sample that does not
        reach :data:`GRADIENT_TOLERANCE` is finished by BFGS on its own.
        """
        z = start[:, 1:] - start[:, :1]
        active = np.arange(len(z))
        for _ in range(_NEWTON_ITERATIONS):
            problem = self.take(active)
            value, gradient = problem._reduced(z[active])
            done = np.abs(gradient).max(axis=1) < GRADIENT_TOLERANCE
            active, value, gradient, problem = active[~done], value[~done], gradient[~done], problem.take(~done)
            if not len(active):
                break
            zs = z[active]
            step = 1e-6 * (1.0 + np.abs(zs))
            hessian = np.stack(
                [
                    (problem._reduced(zs + step[:, [i]] * np.eye(zs.shape[1])[i])[1] - gradient) / step[:, [i]]
                    for i in range(zs.shape[1])
                ],
                axis=1,
            )
            # Flipping negative curvature keeps every step a descent direction.
            eigenvalues, vectors = np.linalg.eigh(0.5 * (hessian + hessian.transpose(0, 2, 1)))
            eigenvalues = np.maximum(np.abs(eigenvalues), 1e-8)
            direction = -np.einsum(
                "sij,sj->si", vectors / eigenvalues[:, None, :], np.einsum("sji,sj->si", vectors, gradient)
            )
            slope = np.sum(direction * gradient, axis=1)
            length = np.ones(len(active))
            pending = np.ones(len(active), dtype=bool)
            for _ in range(40):
                trial = problem.take(pending)._reduced(zs[pending] + length[pending, None] * direction[pending])[0]
                # Near the optimum the decrease is below the objective's rounding: a step that does not
                # raise it beyond that is taken, else the search would stall there.
                accepted = trial <= value[pending] + 1e-4 * length[pending] * slope[pending] + 1e-13 * np.abs(
                    value[pending]
                )
                pending[np.flatnonzero(pending)[accepted]] = False
                if not pending.any():
                    break
                length[pending] *= 0.5
            z[active] = zs + length[:, None] * direction
        for index in active:
            one = self.take(np.array([index]))
            result = minimize(
                lambda free: tuple(part[0] for part in one._reduced(free[None])),
                z[index],
                jac=True,
                method="BFGS",
                options={"gtol": GRADIENT_TOLERANCE, "maxiter": 10000},
            )
            z[index] = result.x
        return np.concatenate([np.zeros((len(z), 1)), z], axis=1)

    def _reduced(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`objective` of the scores (0, z) and its gradient with respect to z (B, N − 1)."""
        value, gradient = self.objective(np.concatenate([np.zeros((len(z), 1)), z], axis=1))
        return value, gradient[:, 1:]


def _anchor(q: np.ndarray, regularization: Regularization) -> np.ndarray:
    """Fix the free offset of scores (B, N) the toolbox's way.

    pwcmp's 'mean0' adds 0.01·mean(q)² to an objective of differences only: its optimum has the
    optimal differences and mean exactly 0. 'fix0' keeps the first condition at 0.
    """
    return q - q.mean(axis=1, keepdims=True) if regularization == "mean0" else q - q[:, :1]


def _scale_batch(counts: np.ndarray, start: np.ndarray, prior: Prior, regularization: Regularization) -> np.ndarray:
    """JOD scores (B, N) of count matrices (B, N, N), batched over those that compare the same pairs."""
    joined = np.stack([_join_components(matrix) for matrix in counts])
    design = (joined + joined.transpose(0, 2, 1)) > 0
    scores = np.empty(counts.shape[:2])
    _, group = np.unique(design.reshape(len(design), -1), axis=0, return_inverse=True)
    for label in np.unique(group):
        members = np.flatnonzero(group.ravel() == label)
        # The prior holds (B, P, P) arrays: chunks keep each near 32 MB, whatever the number of pairs.
        pairs = int(design[members[0]].sum())
        for chunk in np.array_split(members, -(-len(members) * pairs * pairs // _BATCH_ELEMENTS)):
            scores[chunk] = _Problem.from_counts(joined[chunk], prior).solve(start[chunk])
    return _anchor(scores, regularization)


def scale(
    counts: np.ndarray,
    start: np.ndarray | None = None,
    prior: Prior = "gaussian",
    regularization: Regularization = "mean0",
) -> np.ndarray:
    """JOD score of every condition from a matrix of pairwise choices, as pwcmp's ``pw_scale``.

    Args:
        counts: (N, N) non-negative integers; ``counts[i, j]`` is the number of times condition
            i was chosen over condition j.
        start: Scores to start the search from (default zeros, as the toolbox); only the speed
            depends on it.
        prior: pwcmp's distance prior: "gaussian" (its default) or "none" (maximum likelihood).
        regularization: "mean0" (scores with mean 0, the toolbox's default) or "fix0" (the first
            condition's score is 0).

    Returns:
        (N,) JOD scores; a difference of 1 means 75 % of choices prefer the higher.
    """
    check_options(prior, regularization)
    counts = check_counts(counts)
    start = np.zeros(len(counts)) if start is None else np.asarray(start, dtype=float)
    return _scale_batch(counts[None], start[None], prior, regularization)[0]


def scale_many(counts: np.ndarray, prior: Prior = "gaussian", regularization: Regularization = "mean0") -> np.ndarray:
    """:func:`scale` of each of (B, N, N) count matrices, from zeros; those comparing the same pairs are solved as one
    batch (a simulation's or a bootstrap's many studies), which is several times faster than one at a time.

    Returns:
        (B, N) JOD scores, each row as :func:`scale` gives it.
    """
    check_options(prior, regularization)
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 3:
        raise ValueError(f"counts: expected (B, N, N) count matrices, got shape {counts.shape}")
    for index, matrix in enumerate(counts):
        check_counts(matrix, f"counts[{index}]")
    return _scale_batch(counts, np.zeros(counts.shape[:2]), prior, regularization)
