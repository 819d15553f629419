"""Metric → JOD calibration: a monotone map from a metric's values to the observers' JOD scores, fitted on a
study's conditions (one task's models), its leave-one-condition-out error, and how far a metric favours the
model trained on it (self-preference).

**The map.** ``JOD ≈ a + b·x``, with ``x`` the metric's value oriented so that larger is better and ``b ≥ 0``,
fitted by least squares (where the unconstrained slope is negative the map is the constant ``mean(JOD)``:
a metric ranked against the observers predicts nothing). Why affine rather than isotonic: a study has
about six conditions per task, and an affine map is the simplest monotone family five of them determine
(two parameters). It also extrapolates. A model trained on a metric usually lies at that metric's extreme
(the LPIPS+l2 model's LPIPS is a quarter of the others'), and an isotonic map is flat beyond the others'
range. It could never say that a metric rates its own model higher than the best of the others, which is
the question asked. The assumption this makes is stated wherever its numbers are shown: **over the range
of the study's models, JOD is affine in the metric's value.** A metric that is an affine function of JOD
has zero error. A nonlinear monotone function of JOD ranks every model as the observers do (τ = ρ = 1), but
its leave-one-out error is the curvature the affine map misses.

**Leave one condition out.** Each condition's JOD is predicted by the map fitted on the other conditions;
the RMSE of those predictions, in JOD, is the metric's calibration error on the study.

**Self-preference.** For a metric that is also a training loss's own metric (``LossSpec.own_metric``), the
gap is the own model's JOD as the metric predicts it, by the map fitted on the *other* models, minus the
observers' JOD of the own model::

    gap = f₋ₒ(x_o) − JOD_o

In JOD: how much better the own model looks through the metric than the observers saw it, relative to
the other models (the map is fitted on them, so their residuals average zero: the gap is the own model's
residual minus the others' mean residual). Positive: the metric favours its own model; negative: the
observers prefer it even more than its metric value predicts. Because the own model never enters the map
it is judged by, a metric built to favour its own model by δ JOD (affine in JOD elsewhere) gives gap = δ
exactly. The gap is the own model's leave-one-out residual: where it ranks among all the models'
leave-one-out residuals says whether it is larger than the misfit of a model not trained on the metric.

**The bounded gap.** The same gap through the isotonic map of the other models (``kind="isotonic"``),
interpolated linearly between them and flat beyond: the own model's JOD as read off the others at the place
the metric ranks it among them. It cannot exceed the others' JOD range, so it measures where the metric
ranks its own model against where the observers rank it, in JOD, without trusting the affine map's
extrapolation. Where the two gaps differ much, the affine gap rests on extrapolation.

All functions take the JOD scores as (B, N): B bootstrap samples (or one row) of N conditions, and return
one value per sample, so that a bootstrap interval is the percentiles of the returned array.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import isotonic_regression

#: Fewest conditions a map is fitted on: two points always fit a line exactly.
MIN_FIT = 3


def _rows(jod: np.ndarray, n: int, name: str = "jod") -> np.ndarray:
    jod = np.atleast_2d(np.asarray(jod, dtype=float))
    if jod.shape[-1] != n:
        raise ValueError(f"{name}: expected {n} conditions per row (one per metric value), got shape {jod.shape}")
    return jod


def fit(x: np.ndarray, jod: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The monotone affine map ``JOD ≈ intercept + slope·x`` (slope ≥ 0) by least squares, per sample.

    Args:
        x: (N,) metric values, oriented so that larger is better; at least :data:`MIN_FIT`.
        jod: (B, N) or (N,) JOD scores of the same conditions.

    Returns:
        (intercept, slope), each (B,).
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or len(x) < MIN_FIT:
        raise ValueError(f"x: a map needs at least {MIN_FIT} conditions' metric values, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"x: metric values must be finite, got {x}")
    jod = _rows(jod, len(x))
    centred = x - x.mean()
    spread = centred @ centred
    # Equal metric values carry no ranking: the constant map, as for a negative slope.
    slope = np.maximum((jod - jod.mean(axis=1, keepdims=True)) @ centred / spread, 0.0) if spread > 0 else 0.0
    slope = np.broadcast_to(slope, (len(jod),)).astype(float)
    return jod.mean(axis=1) - slope * x.mean(), slope


def affine(x: np.ndarray, jod: np.ndarray, at: float) -> np.ndarray:
    """(B,): the monotone affine map of ``x`` (N,) to ``jod`` (B, N) (:func:`fit`) read at ``at``."""
    intercept, slope = fit(x, jod)
    return intercept + slope * at


def isotonic(x: np.ndarray, jod: np.ndarray, at: float) -> np.ndarray:
    """(B,): the isotonic (non-decreasing, least-squares) map of ``x`` (N,) to ``jod`` (B, N) read at ``at``:
    linear between the conditions' metric values, flat beyond them. Conditions with equal metric values are one
    point of the map, at their mean JOD, weighted by their number."""
    x = np.asarray(x, dtype=float)
    jod = _rows(jod, len(x))
    points, group, weights = np.unique(x, return_inverse=True, return_counts=True)
    means = np.stack([np.bincount(group, row, len(points)) for row in jod]) / weights
    return np.array([np.interp(at, points, isotonic_regression(row, weights=weights).x) for row in means])


#: The monotone maps: ``kind`` → (metric values (N,), JOD (B, N), where to read it) → (B,) JOD.
MAPS = {"affine": affine, "isotonic": isotonic}


def _predict(x: np.ndarray, jod: np.ndarray, at: float, kind: str) -> np.ndarray:
    if kind not in MAPS:
        raise ValueError(f"kind: expected one of {', '.join(MAPS)}, got {kind!r}")
    return MAPS[kind](x, jod, at)


def loo_predictions(x: np.ndarray, jod: np.ndarray, kind: str = "affine") -> np.ndarray:
    """(B, N): each condition's JOD predicted by the ``kind`` map (:data:`MAPS`) fitted on the other N − 1
    (N − 1 ≥ :data:`MIN_FIT`)."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or len(x) - 1 < MIN_FIT:
        raise ValueError(
            f"x: leaving one condition out needs at least {MIN_FIT + 1} conditions, got shape {np.shape(x)}"
        )
    jod = _rows(jod, len(x))
    predictions = np.empty_like(jod)
    for left_out in range(len(x)):
        keep = np.arange(len(x)) != left_out
        predictions[:, left_out] = _predict(x[keep], jod[:, keep], x[left_out], kind)
    return predictions


def loo_residuals(x: np.ndarray, jod: np.ndarray, kind: str = "affine") -> np.ndarray:
    """(B, N): predicted minus observed JOD of each condition left out (positive: the metric overrates it)."""
    jod = _rows(jod, len(np.atleast_1d(x)))
    return loo_predictions(x, jod, kind) - jod


def loo_rmse(x: np.ndarray, jod: np.ndarray, kind: str = "affine") -> np.ndarray:
    """(B,): root mean square of the leave-one-condition-out residuals of the ``kind`` map, in JOD."""
    return np.sqrt(np.mean(loo_residuals(x, jod, kind) ** 2, axis=1))


def constant_rmse(jod: np.ndarray) -> np.ndarray:
    """(B,): leave-one-out RMSE of the map that ignores the metric (each condition predicted by the others' mean):
    what a metric that carries no information about JOD achieves, for comparison."""
    jod = np.atleast_2d(np.asarray(jod, dtype=float))
    n = jod.shape[1]
    others = (jod.sum(axis=1, keepdims=True) - jod) / (n - 1)
    return np.sqrt(np.mean((others - jod) ** 2, axis=1))


def direct_rmse(predicted: np.ndarray, jod: np.ndarray) -> np.ndarray:
    """(B,): RMSE in JOD of a metric that predicts JOD itself (ColorVideoVDP), (N,) ``predicted``, against (B, N)
    ``jod``, no map fitted. JOD scores have no origin, so each side's mean over the conditions is removed first."""
    predicted = np.asarray(predicted, dtype=float)
    jod = _rows(jod, len(predicted))
    error = (predicted - predicted.mean()) - (jod - jod.mean(axis=1, keepdims=True))
    return np.sqrt(np.mean(error**2, axis=1))


def self_preference_gap(x: np.ndarray, jod: np.ndarray, own: int, kind: str = "affine") -> np.ndarray:
    """(B,): the own model's JOD through the metric minus its observed JOD (see the module's docstring).

    Args:
        x: (N,) metric values of the N models, oriented so that larger is better.
        jod: (B, N) or (N,) the observers' JOD scores of the same models.
        own: Index of the model trained on the metric.
        kind: The map (:data:`MAPS`): ``affine`` (the gap), ``isotonic`` (the bounded gap).
    """
    x = np.asarray(x, dtype=float)
    if not 0 <= own < len(x):
        raise ValueError(f"own: expected a model index in 0..{len(x) - 1}, got {own}")
    jod = _rows(jod, len(x))
    keep = np.arange(len(x)) != own
    return _predict(x[keep], jod[:, keep], x[own], kind) - jod[:, own]


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of (N,) ``values``, 1 for the largest; tied values share their best rank."""
    values = np.asarray(values, dtype=float)
    return 1 + np.sum(values[None, :] > values[:, None], axis=1)
