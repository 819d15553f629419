"""Active sampling of pairwise comparisons: a Gaussian belief over the conditions' scores and the most informative pair.

The model is the Thurstone Case V model of our scaling (:mod:`lossbench.userstudy.thurstone`): scores q in JOD,
``P(i chosen over j) = Φ((q_i − q_j) / σ)`` with σ = :data:`SIGMA` (1 JOD is 75 % preference). The belief over q is
a Gaussian N(mean, covariance), from a prior N(0, prior_sd² I). Two ways to update it:

- :meth:`Posterior.update`, online, one answer at a time: assumed-density filtering, i.e. the exact posterior of one
  probit answer under a Gaussian belief, projected back onto a Gaussian by matching its mean and covariance (closed
  form). It depends on the order of the answers.
- :meth:`Posterior.from_counts`, from a count matrix: the Laplace approximation, the maximum a posteriori scores with
  the Hessian of the negative log posterior as precision. It depends only on the counts, so a server that restarts,
  or that several observers answer at once, rebuilds the same belief from the answer files.

The pair to ask next is the one whose answer tells most about the scores: the largest expected information gain,
the mutual information between the answer y and q under the current belief (the idea of ASAP, Mikhailiuk et al.,
ICPR 2020; our own implementation). Since y depends on q only through the difference d = q_i − q_j ~ N(m, s²),
``I(y; q) = H(E[Φ(d/σ)]) − E[H(Φ(d/σ))]`` with the binary entropy H; the first term is closed form
(``E[Φ(d/σ)] = Φ(m / √(σ² + s²))``), the second a Gauss–Hermite quadrature. The mutual information equals the
expected Kullback–Leibler divergence of the posterior after the answer from the belief before it, which is how ASAP
states its criterion. Ties between pairs are broken by a seeded generator, so a choice is deterministic given the
seed.

The scores a study reports are not this belief's mean: they are the pwcmp scaling of all answers
(:func:`lossbench.userstudy.thurstone.scale`), whatever chose the pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import log_ndtr

from lossbench.userstudy.thurstone import SIGMA, check_counts

#: Prior standard deviation of every score, in JOD: wider than the thesis's studies' spreads (1.3 and 0.8 JOD).
PRIOR_SD = 2.0
#: Gauss–Hermite nodes of the expected conditional entropy; the integrand is smooth, 32 nodes give ~1e-10.
QUADRATURE_NODES = 32
#: Pairs whose gains are within this relative distance of the largest count as tied.
TIE_TOLERANCE = 1e-9
_NEWTON_ITERATIONS = 50
_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
_NODES, _WEIGHTS = hermegauss(QUADRATURE_NODES)
_WEIGHTS = _WEIGHTS / np.sqrt(2.0 * np.pi)  # a standard normal's expectation


def _inverse_mills(x: np.ndarray) -> np.ndarray:
    """φ(x) / Φ(x), computed from logs so that it neither under- nor overflows for large |x|."""
    return np.exp(-0.5 * x * x - _LOG_SQRT_2PI - log_ndtr(x))


def _entropy_of_probit(x: np.ndarray) -> np.ndarray:
    """Binary entropy (nats) of an answer with probability Φ(x)."""
    log_p, log_not_p = log_ndtr(x), log_ndtr(-x)
    return -(np.exp(log_p) * log_p + np.exp(log_not_p) * log_not_p)


def pairs(n: int) -> np.ndarray:
    """(n (n − 1) / 2, 2) the unordered pairs (i, j), i < j, of ``n`` conditions, in row-major order."""
    if n < 2:
        raise ValueError(f"conditions: expected at least 2, got {n}")
    return np.stack(np.triu_indices(n, 1), axis=1)


@dataclass
class Posterior:
    """A Gaussian belief N(``mean``, ``covariance``) over the JOD scores of N conditions.

    Attributes:
        mean: (N,) scores in JOD.
        covariance: (N, N) symmetric positive definite, JOD².
    """

    mean: np.ndarray
    covariance: np.ndarray

    @classmethod
    def prior(cls, n: int, prior_sd: float = PRIOR_SD) -> Posterior:
        """The belief before any answer: independent N(0, ``prior_sd``²) scores of ``n`` conditions."""
        if n < 2:
            raise ValueError(f"conditions: expected at least 2, got {n}")
        if not prior_sd > 0:
            raise ValueError(f"prior_sd: expected a positive number of JOD, got {prior_sd}")
        return cls(np.zeros(n), prior_sd**2 * np.eye(n))

    @classmethod
    def from_counts(cls, counts: np.ndarray, prior_sd: float = PRIOR_SD) -> Posterior:
        """The Laplace approximation of the posterior given a count matrix; independent of the answers' order.

        Newton's method on the convex negative log posterior, with its exact gradient and Hessian (the
        probit's log-likelihood has second derivative −v (v + x) with v = φ(x) / Φ(x)).

        Args:
            counts: (N, N) non-negative integers, ``counts[i, j]`` the times i was chosen over j.
            prior_sd: Prior standard deviation of each score, JOD.
        """
        counts = check_counts(counts)
        belief = cls.prior(len(counts), prior_sd)
        rows, cols = np.nonzero(counts)
        wins = counts[rows, cols]
        precision_prior = np.eye(len(counts)) / prior_sd**2
        q = np.zeros(len(counts))
        for _ in range(_NEWTON_ITERATIONS):
            x = (q[rows] - q[cols]) / SIGMA
            v = _inverse_mills(x)
            d_x = wins * v / SIGMA  # d log-likelihood / d q_i of each answered (winner, loser) cell
            gradient = precision_prior @ q
            np.subtract.at(gradient, rows, d_x)
            np.add.at(gradient, cols, d_x)
            curvature = wins * v * (v + x) / SIGMA**2
            hessian = precision_prior.copy()
            np.add.at(hessian, (rows, rows), curvature)
            np.add.at(hessian, (cols, cols), curvature)
            np.add.at(hessian, (rows, cols), -curvature)
            np.add.at(hessian, (cols, rows), -curvature)
            step = np.linalg.solve(hessian, gradient)
            q = q - step
            if np.abs(step).max() < 1e-10:
                break
        # The Hessian at the last iterate: one step from the optimum, far below the belief's spread.
        belief.mean, belief.covariance = q, np.linalg.inv(hessian)
        return belief

    def difference(self, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of q_first − q_second for arrays of condition indices."""
        c = self.covariance
        variance = c[first, first] + c[second, second] - 2.0 * c[first, second]
        return self.mean[first] - self.mean[second], np.maximum(variance, 0.0)

    def update(self, chosen: int, other: int) -> None:
        """Take in one answer, ``chosen`` preferred to ``other``, by assumed-density filtering (in place).

        With a = e_chosen − e_other, d = aᵀq ~ N(m, s²), c = √(σ² + s²), z = m / c and v = φ(z) / Φ(z), the
        posterior's moments are mean + Σa · v / c and Σ − Σa aᵀΣ · v (v + z) / c². Since 0 < v (v + z) < 1 the
        covariance stays positive definite.
        """
        n = len(self.mean)
        if not (0 <= chosen < n and 0 <= other < n) or chosen == other:
            raise ValueError(f"answer ({chosen}, {other}): expected two different condition indices below {n}")
        m, s2 = self.difference(np.array([chosen]), np.array([other]))
        c = np.sqrt(SIGMA**2 + s2[0])
        z = m[0] / c
        v = float(_inverse_mills(np.array([z]))[0])
        sigma_a = self.covariance[:, chosen] - self.covariance[:, other]
        self.mean = self.mean + sigma_a * (v / c)
        self.covariance = self.covariance - np.outer(sigma_a, sigma_a) * (v * (v + z) / c**2)
        # Rounding must not break the symmetry that the next differences rely on.
        self.covariance = 0.5 * (self.covariance + self.covariance.T)

    def information_gain(self, candidates: np.ndarray | None = None) -> np.ndarray:
        """Expected information gain (nats) of asking each pair once: the mutual information of answer and scores.

        Args:
            candidates: (P, 2) condition indices of the pairs; by default all pairs (:func:`pairs`).

        Returns:
            (P,) gains in [0, ln 2].
        """
        candidates = pairs(len(self.mean)) if candidates is None else np.asarray(candidates)
        m, s2 = self.difference(candidates[:, 0], candidates[:, 1])
        marginal = _entropy_of_probit(m / np.sqrt(SIGMA**2 + s2))
        d = m[:, None] + np.sqrt(s2)[:, None] * _NODES[None, :]
        conditional = _entropy_of_probit(d / SIGMA) @ _WEIGHTS
        return np.maximum(marginal - conditional, 0.0)

    def choose(self, rng: np.random.Generator, candidates: np.ndarray | None = None) -> tuple[int, int]:
        """The pair with the largest expected information gain; ties are broken by ``rng``.

        Args:
            rng: Generator of the tie-breaking; the only randomness, so the choice is deterministic given its seed.
            candidates: (P, 2) pairs to choose from (default: all pairs).

        Returns:
            (i, j), i < j for the default candidates; which side is shown is the caller's choice.
        """
        candidates = pairs(len(self.mean)) if candidates is None else np.asarray(candidates)
        if candidates.ndim != 2 or candidates.shape[1] != 2 or not len(candidates):
            raise ValueError(f"candidates: expected a non-empty (P, 2) array of pairs, got shape {candidates.shape}")
        gain = self.information_gain(candidates)
        best = np.flatnonzero(gain >= gain.max() * (1.0 - TIE_TOLERANCE))
        i, j = candidates[best[rng.integers(len(best))]]
        return int(i), int(j)
