"""Is the difference between losses larger than the difference between training runs? (thesis §8)

Per (task, metric), on the metric values of every (loss, seed) model, **per unit of analysis**: a
task's validation images are its units, except where they are slices of volumes (MRI), whose
slices share anatomy, contrast and noise. There each model's per-slice values are averaged per
volume first, and every statistic below counts volumes, not slices (docs/statistics.md: counting
correlated slices as independent images made a null paired test reject in most runs).

- a **variance decomposition**: a nested ANOVA with seeds nested in losses and the units as a
  blocking factor, ``y[l, s, u] = μ + loss_l + seed_{l,s} + unit_u + ε``, whose components are
  estimated by the method of moments (balanced design; negative estimates are set to 0). The
  residual ε holds the loss × unit and seed × unit interactions. The loss effect is tested
  against the seed-to-seed variation (F = MS_loss / MS_seed), so a loss only "matters" when it
  moves the metric more than retraining with another seed does. With one seed the seed variation
  is not measured: the loss effect is then tested against the residual, and the tables say so.
- **paired comparisons** of every pair of losses: a paired t-test over units on seed-averaged
  values (the unit is paired across losses; averaging over seeds carries the seeds' variation
  into each unit's value), the mean difference with its 95 % interval, and Holm's correction over
  the pairs of one metric.

With fewer than :data:`MIN_UNITS` units nothing is tested: the tables say "not tested (n = 3)"
rather than claim or deny a difference on so few independent observations.

Values are on the tables' display scale (1000·l1, 1000·l2); "better" follows the metric's direction.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from lossbench.core.io import read_metrics
from lossbench.data.taskspec import PER_IMAGE, AnalysisUnit, counted
from lossbench.metrics import MetricInfo

#: Significance level of the pairwise tests and of the tables' "not different from the best" marks.
ALPHA = 0.05
#: The fewest units a test is run on. With 3 or 4 the t-test's interval spans several standard
#: deviations and its normality assumption cannot be checked; a table says "not tested" instead.
MIN_UNITS = 5


def testable(units: int) -> bool:
    """Whether ``units`` independent units are enough to test on (:data:`MIN_UNITS`)."""
    return units >= MIN_UNITS


def not_tested(unit: AnalysisUnit, units: int) -> str:
    """What a table says in place of a test on too few units: ``not tested (n = 3 volumes)``."""
    return f"not tested (n = {unit.count(units)})"


def stack(
    model_csvs: dict[str, list[str | Path]], metric: str, scale: float = 1.0, unit: AnalysisUnit = PER_IMAGE
) -> tuple[list[str], np.ndarray]:
    """The values of ``metric`` as an array (losses, seeds, units), units in a common sorted order.

    Args:
        model_csvs: Loss → its models' per-image CSVs, one per seed, every loss with the same seeds.
        metric: Column to read.
        scale: Display scale (1000 for l1 and l2).
        unit: The unit of analysis; each model's per-image values are averaged within a unit
            (slices within their volume). The default keeps one value per image.

    Returns:
        The losses that have the metric, and their values; an empty list and array when none has it.

    Raises:
        ValueError: when the losses have different numbers of seeds or the files different images.
    """
    tables = {loss: [read_metrics(path) for path in paths] for loss, paths in model_csvs.items()}
    losses = [loss for loss, per_seed in tables.items() if all(metric in next(iter(t.values())) for t in per_seed)]
    if not losses:
        return [], np.zeros((0, 0, 0))
    seeds = {len(tables[loss]) for loss in losses}
    if len(seeds) != 1:
        raise ValueError(
            f"every loss needs the same number of seeds, got {dict((loss, len(tables[loss])) for loss in losses)}"
        )
    images = sorted(tables[losses[0]][0])
    for loss in losses:
        for path, table in zip(model_csvs[loss], tables[loss]):
            if sorted(table) != images:
                raise ValueError(f"{path}: its images differ from those of {model_csvs[losses[0]][0]}")
    groups: dict[str, list[str]] = {}
    for image in images:
        groups.setdefault(unit.of(image), []).append(image)
    values = np.array(
        [
            [
                [
                    math.fsum(table[image][metric] for image in members) / len(members) * scale
                    for members in groups.values()
                ]
                for table in tables[loss]
            ]
            for loss in losses
        ]
    )
    return losses, values


@dataclass(frozen=True)
class Decomposition:
    """Variance components of one metric over losses, seeds and units (see the module docstring)."""

    losses: int
    seeds: int
    units: int
    loss: float  # variance components, display scale squared
    seed: float | None  # None: one seed, not measured
    unit: float
    residual: float
    f: float
    df: tuple[int, int]
    p: float

    @property
    def total(self) -> float:
        return self.loss + (self.seed or 0.0) + self.unit + self.residual

    def share(self, component: str) -> float | None:
        value = getattr(self, component)
        return None if value is None else (value / self.total if self.total > 0 else 0.0)

    @property
    def ratio(self) -> float | None:
        """Between-loss over within-loss (seed) variance; None when seeds were not measured."""
        if self.seed is None:
            return None
        return math.inf if self.seed == 0 else self.loss / self.seed


def decompose(values: np.ndarray) -> Decomposition:
    """Nested ANOVA of ``values`` (losses, seeds, units) with the units as a blocking factor.

    Raises:
        ValueError: with fewer than two losses or two units.
    """
    n_loss, n_seed, n_unit = values.shape
    if n_loss < 2 or n_unit < 2:
        raise ValueError(f"the variance decomposition needs at least 2 losses and 2 units, got {n_loss} and {n_unit}")
    grand = values.mean()
    loss_means = values.mean(axis=(1, 2))
    run_means = values.mean(axis=2)
    unit_means = values.mean(axis=(0, 1))
    ss_loss = n_seed * n_unit * float(((loss_means - grand) ** 2).sum())
    ss_seed = n_unit * float(((run_means - loss_means[:, None]) ** 2).sum())
    ss_unit = n_loss * n_seed * float(((unit_means - grand) ** 2).sum())
    residuals = values - run_means[:, :, None] - unit_means[None, None, :] + grand
    df_loss, df_seed, df_unit = n_loss - 1, n_loss * (n_seed - 1), n_unit - 1
    df_residual = (n_loss * n_seed - 1) * (n_unit - 1)
    ms_residual = float((residuals**2).sum()) / df_residual
    ms_loss, ms_unit = ss_loss / df_loss, ss_unit / df_unit
    unit = max(0.0, (ms_unit - ms_residual) / (n_loss * n_seed))
    if n_seed > 1:
        ms_seed = ss_seed / df_seed
        seed = max(0.0, (ms_seed - ms_residual) / n_unit)
        loss = max(0.0, (ms_loss - ms_seed) / (n_seed * n_unit))
        denominator, df_denominator = ms_seed, df_seed
    else:
        seed = None
        loss = max(0.0, (ms_loss - ms_residual) / n_unit)
        denominator, df_denominator = ms_residual, df_residual
    f = ms_loss / denominator if denominator > 0 else (math.inf if ms_loss > 0 else math.nan)
    p = (
        float(scipy_stats.f.sf(f, df_loss, df_denominator))
        if math.isfinite(f)
        else (0.0 if f == math.inf else math.nan)
    )
    return Decomposition(n_loss, n_seed, n_unit, loss, seed, unit, ms_residual, f, (df_loss, df_denominator), p)


@dataclass(frozen=True)
class PairedTest:
    """Loss ``a`` against loss ``b``: mean of a − b over units with its 95 % interval, and p-values (NaN: not
    tested)."""

    a: str
    b: str
    difference: float
    low: float
    high: float
    p: float
    p_holm: float = math.nan

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p_holm < alpha


def paired_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """Paired t-test over units on seed-averaged values.

    Args:
        a, b: Values of two losses, shape (seeds, units).

    Returns:
        Mean difference a − b, the bounds of its 95 % confidence interval, and the two-sided p-value
        (NaN bounds and p with fewer than :data:`MIN_UNITS` units: not tested).
    """
    differences = a.mean(axis=0) - b.mean(axis=0)
    mean = float(differences.mean())
    if not testable(differences.size):
        return mean, math.nan, math.nan, math.nan
    spread = float(differences.std(ddof=1))
    if spread == 0:
        return mean, mean, mean, 1.0 if mean == 0 else 0.0
    error = spread / math.sqrt(differences.size)
    t = scipy_stats.t(df=differences.size - 1)
    return mean, mean - t.ppf(0.975) * error, mean + t.ppf(0.975) * error, float(2 * t.sf(abs(mean) / error))


def mean_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean over units of seed-averaged values (seeds, units), with its 95 % t interval (NaN with fewer than
    :data:`MIN_UNITS` units)."""
    per_unit = values.mean(axis=0)
    mean = float(per_unit.mean())
    if not testable(per_unit.size):
        return mean, math.nan, math.nan
    half = float(scipy_stats.t(df=per_unit.size - 1).ppf(0.975) * per_unit.std(ddof=1) / math.sqrt(per_unit.size))
    return mean, mean - half, mean + half


def indistinct_groups(order: list[str], tests: list[PairedTest]) -> list[tuple[int, int]]:
    """Maximal runs ``(first, last)`` of consecutive entries of ``order`` whose every pair is not significant.

    Args:
        order: Losses ranked best first.
        tests: Holm-corrected pairwise tests covering those losses.
    """
    significant = {frozenset((t.a, t.b)) for t in tests if t.significant()}
    groups: list[tuple[int, int]] = []
    for first in range(len(order)):
        last = first
        while last + 1 < len(order) and all(
            frozenset((order[k], order[last + 1])) not in significant for k in range(first, last + 1)
        ):
            last += 1
        if last > first and not any(a <= first and last <= b for a, b in groups):
            groups.append((first, last))
    return groups


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (NaN stays NaN)."""
    indexed = sorted((p, index) for index, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(indexed):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[index] = running
    return adjusted


def pairwise(losses: list[str], values: np.ndarray) -> list[PairedTest]:
    """Every pair of losses (in ``losses`` order), Holm-corrected over the pairs."""
    raw = [
        (a, b, *paired_test(values[i], values[j])) for (i, a), (j, b) in itertools.combinations(enumerate(losses), 2)
    ]
    adjusted = holm([row[-1] for row in raw])
    return [PairedTest(*row, p_holm=p) for row, p in zip(raw, adjusted)]


def tied_with_best(
    model_csvs: dict[str, list[str | Path]], metric: str, info: MetricInfo, unit: AnalysisUnit = PER_IMAGE
) -> set[str] | None:
    """The losses whose ``metric`` is not significantly different from the best loss's (:func:`not_different_from_best`,
    the best by its mean over seeds and units); None when no test can run: fewer than two losses have the metric, or
    fewer than :data:`MIN_UNITS` units."""
    losses, values = stack(model_csvs, metric, info.scale, unit)
    if len(losses) < 2 or not testable(values.shape[2]):
        return None
    means = values.mean(axis=(1, 2))
    best = losses[int(means.argmax() if info.higher_is_better else means.argmin())]
    return not_different_from_best(losses, values, best)


def not_different_from_best(losses: list[str], values: np.ndarray, best: str) -> set[str]:
    """Losses whose difference from ``best`` is not significant (Holm over the comparisons with it).

    Empty when the test cannot run (fewer than :data:`MIN_UNITS` units).
    """
    others = [loss for loss in losses if loss != best]
    tests = [paired_test(values[losses.index(loss)], values[losses.index(best)]) for loss in others]
    adjusted = holm([test[-1] for test in tests])
    return {loss for loss, p in zip(others, adjusted) if not math.isnan(p) and p >= ALPHA}


def compared(
    model_csvs: dict[str, list[str | Path]], infos: Mapping[str, MetricInfo], unit: AnalysisUnit = PER_IMAGE
) -> list[tuple[str, MetricInfo, list[str], np.ndarray]]:
    """``(metric, info, losses, values)`` of :func:`stack` for each metric of ``infos`` that two losses or more have."""
    found = []
    for metric, info in infos.items():
        losses, values = stack(model_csvs, metric, info.scale, unit)
        if len(losses) >= 2:
            found.append((metric, info, losses, values))
    return found


def sample(model_csvs: dict[str, list[str | Path]], unit: AnalysisUnit) -> tuple[int, int, int]:
    """Seeds, units and images of a set of models' per-image CSVs (from the first loss's first seed)."""
    first = next(iter(model_csvs.values()))
    images = read_metrics(first[0])
    return len(first), len({unit.of(image) for image in images}), len(images)


def sample_note(model_csvs: dict[str, list[str | Path]], unit: AnalysisUnit) -> str:
    """``n = 3 volumes (9 slices averaged per volume), 1 seed``: what the statistics of a table rest on."""
    seeds, units, images = sample(model_csvs, unit)
    averaged = f" ({counted(images, unit.members)} averaged per {unit.name})" if images != units else ""
    return f"n = {unit.count(units)}{averaged}, {seeds} seed{'s' if seeds != 1 else ''}"
