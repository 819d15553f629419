"""Active sampling (lossbench.userstudy.active) and simulated studies (lossbench.userstudy.simulation)."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import entr, log_ndtr, ndtr

from lossbench.userstudy.active import Posterior, pairs
from lossbench.userstudy.simulation import kendall, rmse, simulate
from lossbench.userstudy.thurstone import SIGMA, scale, scale_many

# A dense grid over a difference d ~ N(m, s²): the reference for the closed forms and the quadrature.
GRID = np.linspace(-12.0, 12.0, 200001)


def _grid_moments(m: float, s: float) -> tuple[np.ndarray, np.ndarray]:
    """The points d of the grid and the prior density's weights (summing to 1)."""
    d = m + s * GRID
    weights = np.exp(-0.5 * GRID**2)
    return d, weights / weights.sum()


def _belief(n: int, seed: int) -> Posterior:
    rng = np.random.default_rng(seed)
    root = rng.normal(size=(n, n + 3))
    return Posterior(rng.normal(0.0, 1.0, n), root @ root.T / (n + 3))


def test_update_matches_the_exact_posterior_moments_of_one_answer():
    belief = _belief(5, 0)
    chosen, other = 3, 1
    m, s2 = (value[0] for value in belief.difference(np.array([chosen]), np.array([other])))
    d, weights = _grid_moments(m, np.sqrt(s2))
    posterior = weights * ndtr(d / SIGMA)
    posterior /= posterior.sum()
    mean_d = posterior @ d
    var_d = posterior @ (d - mean_d) ** 2
    # Given d the scores are Gaussian, so their exact posterior moments follow from those of d.
    sigma_a = belief.covariance[:, chosen] - belief.covariance[:, other]
    expected_mean = belief.mean + sigma_a * (mean_d - m) / s2
    expected_cov = belief.covariance + np.outer(sigma_a, sigma_a) * (var_d - s2) / s2**2
    belief.update(chosen, other)
    np.testing.assert_allclose(belief.mean, expected_mean, atol=1e-7)
    np.testing.assert_allclose(belief.covariance, expected_cov, atol=1e-7)
    assert np.all(np.linalg.eigvalsh(belief.covariance) > 0)


def test_information_gain_is_the_mutual_information_of_answer_and_scores():
    belief = _belief(6, 1)
    candidates = pairs(6)
    gain = belief.information_gain()
    for (i, j), value in zip(candidates, gain):
        m, s2 = (x[0] for x in belief.difference(np.array([i]), np.array([j])))
        d, weights = _grid_moments(m, np.sqrt(s2))
        p = ndtr(d / SIGMA)
        marginal = weights @ p

        def entropy(q):
            return entr(q) + entr(1 - q)

        assert value == pytest.approx(entropy(marginal) - weights @ entropy(p), abs=1e-8)
    assert np.all((gain >= 0) & (gain <= np.log(2)))


def test_information_gain_prefers_uncertain_close_pairs():
    # Certain pairs tell nothing; of two equally uncertain ones, the close one tells more than a far one.
    belief = Posterior(np.array([0.0, 0.1, 5.0, 0.0]), np.diag([1.0, 1.0, 1.0, 0.0]))
    gain = belief.information_gain(np.array([[0, 1], [0, 2], [3, 3]]))
    assert gain[0] > gain[1] > 0
    assert gain[2] == 0.0


def test_laplace_posterior_is_the_map_with_the_hessian_as_precision():
    rng = np.random.default_rng(2)
    counts = simulate("random", rng.normal(0, 1, 5), [150], rng)[0]
    belief = Posterior.from_counts(counts, prior_sd=1.5)

    def negative_log_posterior(q):
        return -np.sum(counts * log_ndtr((q[:, None] - q[None, :]) / SIGMA)) + np.sum(q**2) / (2 * 1.5**2)

    optimum = minimize(negative_log_posterior, np.zeros(5), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(belief.mean, optimum, atol=1e-6)
    step = 1e-4
    hessian = np.empty((5, 5))
    for a in range(5):
        for b in range(5):
            ea, eb = step * np.eye(5)[a], step * np.eye(5)[b]
            hessian[a, b] = (
                negative_log_posterior(belief.mean + ea + eb)
                - negative_log_posterior(belief.mean + ea - eb)
                - negative_log_posterior(belief.mean - ea + eb)
                + negative_log_posterior(belief.mean - ea - eb)
            ) / (4 * step**2)
    np.testing.assert_allclose(np.linalg.inv(belief.covariance), hessian, rtol=1e-4, atol=1e-4)


def test_online_updates_approach_the_laplace_posterior():
    rng = np.random.default_rng(3)
    truth = np.array([-1.0, -0.3, 0.2, 1.1])
    online = Posterior.prior(4)
    counts = np.zeros((4, 4))
    for _ in range(400):
        i, j = pairs(4)[rng.integers(6)]
        chosen, other = (i, j) if rng.random() < ndtr((truth[i] - truth[j]) / SIGMA) else (j, i)
        online.update(chosen, other)
        counts[chosen, other] += 1
    refit = Posterior.from_counts(counts)
    np.testing.assert_allclose(online.mean, refit.mean, atol=0.03)
    np.testing.assert_allclose(np.diag(online.covariance), np.diag(refit.covariance), rtol=0.05)


def test_choice_is_the_largest_gain_and_deterministic_given_the_seed():
    belief = _belief(7, 4)
    i, j = belief.choose(np.random.default_rng(0))
    gain = belief.information_gain()
    assert (i, j) == tuple(pairs(7)[np.argmax(gain)])
    # Before any answer every pair is tied: the seed decides, always the same way.
    prior = Posterior.prior(7)
    picks = [prior.choose(np.random.default_rng(seed)) for seed in range(20)]
    assert picks == [prior.choose(np.random.default_rng(seed)) for seed in range(20)]
    assert len(set(picks)) > 5


def test_bad_inputs_are_refused_in_one_line():
    belief = Posterior.prior(3)
    with pytest.raises(ValueError, match="two different condition indices below 3"):
        belief.update(1, 1)
    with pytest.raises(ValueError, match="two different condition indices below 3"):
        belief.update(0, 3)
    with pytest.raises(ValueError, match="prior_sd"):
        Posterior.prior(3, 0.0)
    with pytest.raises(ValueError, match="at least 2"):
        Posterior.prior(1)
    with pytest.raises(ValueError, match="candidates"):
        belief.choose(np.random.default_rng(0), np.empty((0, 2), dtype=int))
    with pytest.raises(ValueError, match="design"):
        simulate("adaptive", np.zeros(3), [3], np.random.default_rng(0))
    with pytest.raises(ValueError, match="checkpoints"):
        simulate("full", np.zeros(3), [4, 2], np.random.default_rng(0))


def test_full_design_asks_every_pair_once_a_round_and_records_cumulative_counts():
    truth = np.array([0.0, 0.5, 1.0, 2.0])
    counts = simulate("full", truth, [6, 12, 15], np.random.default_rng(5))
    trials = counts + counts.transpose(0, 2, 1)
    off = ~np.eye(4, dtype=bool)
    assert np.all(trials[0][off] == 1) and np.all(trials[1][off] == 2)
    assert [c.sum() for c in counts] == [6, 12, 15]
    assert np.all(counts[2] >= counts[1])
    again = simulate("full", truth, [6, 12, 15], np.random.default_rng(5))
    np.testing.assert_array_equal(counts, again)


def test_simulated_observers_answer_with_the_thurstone_probability():
    # 1 JOD apart: 75 % choose the better; 4000 answers give a standard error of 0.7 %.
    counts = simulate("random", np.array([1.0, 0.0]), [4000], np.random.default_rng(6))[0]
    assert counts[0, 1] / 4000 == pytest.approx(0.75, abs=0.025)


def test_active_design_avoids_pairs_whose_answer_is_foregone():
    truth = np.linspace(0.0, 6.0, 12)
    counts = simulate("active", truth, [400], np.random.default_rng(7))[0]
    trials = np.triu(counts + counts.T, 1)
    far = np.abs(truth[:, None] - truth[None, :]) > 3.0
    assert trials[far].sum() < 0.02 * 400
    # It still links every condition into one scale.
    jod = scale(counts)
    assert kendall(jod, truth) > 0.9


def test_rmse_ignores_the_offset_and_scale_many_equals_scale():
    assert rmse(np.array([1.0, 2.0, 3.0]), np.array([11.0, 12.0, 13.0])) == pytest.approx(0.0, abs=1e-12)
    assert rmse(np.array([0.0, 0.0]), np.array([1.0, -1.0])) == pytest.approx(1.0)
    counts = simulate("random", np.array([0.0, 0.4, 1.2, -0.5]), [10, 40, 80], np.random.default_rng(8))
    batch = scale_many(counts)
    for row, matrix in zip(batch, counts):
        np.testing.assert_allclose(row, scale(matrix), atol=1e-7)
    with pytest.raises(ValueError, match=r"\(B, N, N\)"):
        scale_many(counts[0])


def test_laplace_posterior_of_unanimous_answers_converges_to_the_map():
    # A chain of unanimous answers, 200 : 0 each: the likelihood alone has no optimum, the prior gives one.
    counts = np.zeros((4, 4))
    counts[0, 1] = counts[1, 2] = counts[2, 3] = 200
    belief = Posterior.from_counts(counts)

    def negative_log_posterior(q):
        return -np.sum(counts * log_ndtr((q[:, None] - q[None, :]) / SIGMA)) + np.sum(q**2) / (2 * 2.0**2)

    optimum = minimize(negative_log_posterior, np.zeros(4), method="BFGS", options={"gtol": 1e-9}).x
    np.testing.assert_allclose(belief.mean, optimum, atol=1e-5)
    assert np.all(np.diff(belief.mean) < 0) and np.all(np.isfinite(belief.covariance))
