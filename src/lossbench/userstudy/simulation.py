"""Simulated pairwise-comparison studies: observers who answer from known true scores, and the designs that choose
their pairs (full round-robin, random pairs, active sampling).

A simulated observer follows the Thurstone Case V model of our scaling: asked i against j, they choose i with
probability ``Φ((t_i − t_j) / σ)``, σ = :data:`~lossbench.userstudy.thurstone.SIGMA`, for true scores t in JOD.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr
from scipy.stats import kendalltau

from lossbench.userstudy.active import PRIOR_SD, Posterior, pairs
from lossbench.userstudy.thurstone import SIGMA

#: The designs :func:`simulate` runs: every pair once per round in a random order, uniformly random pairs, and the
#: pair of largest expected information gain (:mod:`lossbench.userstudy.active`).
DESIGNS = ("full", "random", "active")


def answer(rng: np.random.Generator, truth: np.ndarray, first: int, second: int) -> bool:
    """Whether a careful simulated observer chooses ``first`` over ``second``, given true JOD scores ``truth`` (N,)."""
    return bool(rng.random() < ndtr((truth[first] - truth[second]) / SIGMA))


def simulate(
    design: str,
    truth: np.ndarray,
    checkpoints: Sequence[int],
    rng: np.random.Generator,
    prior_sd: float = PRIOR_SD,
) -> np.ndarray:
    """Run one simulated study of ``design`` and return its count matrices after each checkpoint's comparisons.

    Args:
        design: One of :data:`DESIGNS`. "full" asks every pair once per round, each round in a new random order
            (a study stopped within a round has the round's first pairs); "random" draws each pair uniformly;
            "active" asks the pair of largest expected information gain under the online posterior
            (:meth:`Posterior.update`).
        truth: (N,) true JOD scores of the conditions.
        checkpoints: Increasing numbers of comparisons at which to record the counts; the last is the study's
            length.
        rng: Generator of the pairs, the sides and the answers.
        prior_sd: Prior standard deviation of the active design's belief, JOD.

    Returns:
        (len(checkpoints), N, N) cumulative counts, ``counts[k, i, j]`` the times i was chosen over j within the
        first ``checkpoints[k]`` comparisons.
    """
    if design not in DESIGNS:
        raise ValueError(f"design: expected one of {', '.join(DESIGNS)}, got {design!r}")
    checkpoints = [int(c) for c in checkpoints]
    if not checkpoints or checkpoints[0] < 1 or any(b <= a for a, b in zip(checkpoints, checkpoints[1:])):
        raise ValueError(f"checkpoints: expected increasing positive numbers of comparisons, got {checkpoints}")
    truth = np.asarray(truth, dtype=float)
    n = len(truth)
    all_pairs = pairs(n)
    counts = np.zeros((n, n))
    recorded = []
    belief = Posterior.prior(n, prior_sd) if design == "active" else None
    order: list[int] = []
    for step in range(checkpoints[-1]):
        if design == "full":
            if not order:
                order = list(rng.permutation(len(all_pairs)))
            i, j = all_pairs[order.pop()]
        elif design == "random":
            i, j = all_pairs[rng.integers(len(all_pairs))]
        else:
            i, j = belief.choose(rng)
        chosen, other = (i, j) if answer(rng, truth, i, j) else (j, i)
        counts[chosen, other] += 1
        if belief is not None:
            belief.update(chosen, other)
        if step + 1 in checkpoints:
            recorded.append(counts.copy())
    return np.stack(recorded)


def rmse(scores: np.ndarray, truth: np.ndarray) -> float:
    """Root-mean-square error of ``scores`` against ``truth`` (both (N,)), each taken relative to its own mean.

    JOD scores are relative: only their differences are estimated, so both are centred first.
    """
    scores, truth = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float)
    return float(np.sqrt(np.mean(((scores - scores.mean()) - (truth - truth.mean())) ** 2)))


def kendall(scores: np.ndarray, truth: np.ndarray) -> float:
    """Kendall τ-b between the ranking of ``scores`` and that of ``truth``."""
    return float(kendalltau(scores, truth).statistic)


def observer_counts(
    truth: np.ndarray, observers: int, repeats: int, rng: np.random.Generator, random: Sequence[int] = ()
) -> np.ndarray:
    """Per-observer counts of a full design: each observer answers every pair ``repeats`` times (e.g. once an image).

    Args:
        truth: (N,) true JOD scores.
        observers: Number of observers K.
        repeats: Answers per pair and observer.
        rng: Generator of the answers.
        random: Indices of careless observers, who choose either side with probability 1/2 whatever they see.

    Returns:
        (K, N, N) count matrices.
    """
    truth = np.asarray(truth, dtype=float)
    n = len(truth)
    rows, cols = np.triu_indices(n, 1)
    p = ndtr((truth[rows] - truth[cols]) / SIGMA)
    counts = np.zeros((observers, n, n))
    for observer in range(observers):
        wins = rng.binomial(repeats, 0.5 if observer in random else p)
        counts[observer, rows, cols] = wins
        counts[observer, cols, rows] = repeats - wins
    return counts
