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

import csv
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from lossbench.data.taskspec import PER_IMAGE, AnalysisUnit, counted
from lossbench.metrics import STUDY_METRICS, MetricInfo

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


def read_per_image(path: str | Path) -> dict[str, dict[str, float]]:
    """A per-image metric CSV (first column the image or volume id) as ``{id: {metric: value}}``.

    Raises:
        ValueError: naming ``path`` when it has no rows.
    """
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path}: no per-image rows")
    key = next(iter(rows[0]))
    return {row[key]: {name: float(value) for name, value in row.items() if name != key} for row in rows}


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
    tables = {loss: [read_per_image(path) for path in paths] for loss, paths in model_csvs.items()}
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


def not_different_from_best(losses: list[str], values: np.ndarray, best: str) -> set[str]:
    """Losses whose difference from ``best`` is not significant (Holm over the comparisons with it).

    Empty when the test cannot run (fewer than :data:`MIN_UNITS` units).
    """
    others = [loss for loss in losses if loss != best]
    tests = [paired_test(values[losses.index(loss)], values[losses.index(best)]) for loss in others]
    adjusted = holm([test[-1] for test in tests])
    return {loss for loss, p in zip(others, adjusted) if not math.isnan(p) and p >= ALPHA}


def _format(value: float | None, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return "inf" if value == math.inf else f"{value:.{decimals}f}"


def _metrics(
    model_csvs: dict[str, list[str | Path]], infos: dict[str, MetricInfo], unit: AnalysisUnit
) -> list[tuple[str, MetricInfo, list[str], np.ndarray]]:
    found = []
    for metric, info in infos.items():
        losses, values = stack(model_csvs, metric, info.scale, unit)
        if len(losses) >= 2:
            found.append((metric, info, losses, values))
    return found


def sample(model_csvs: dict[str, list[str | Path]], unit: AnalysisUnit) -> tuple[int, int, int]:
    """Seeds, units and images of a set of models' per-image CSVs (from the first loss's first seed)."""
    first = next(iter(model_csvs.values()))
    images = read_per_image(first[0])
    return len(first), len({unit.of(image) for image in images}), len(images)


def sample_note(model_csvs: dict[str, list[str | Path]], unit: AnalysisUnit) -> str:
    """``n = 3 volumes (9 slices averaged per volume), 1 seed``: what the statistics of a table rest on."""
    seeds, units, images = sample(model_csvs, unit)
    averaged = f" ({counted(images, unit.members)} averaged per {unit.name})" if images != units else ""
    return f"n = {unit.count(units)}{averaged}, {seeds} seed{'s' if seeds != 1 else ''}"


VARIANCE_COLUMNS = [
    "metric",
    "label",
    "losses",
    "seeds",
    "unit",
    "units",
    "images",
    "share_loss",
    "share_seed",
    "share_unit",
    "share_residual",
    "sd_loss",
    "sd_seed",
    "ratio_between_within",
    "F",
    "df_loss",
    "df_error",
    "p_loss",
    "tested",
]


def variance_rows(
    model_csvs: dict[str, list[str | Path]],
    infos: dict[str, MetricInfo] = STUDY_METRICS,
    unit: AnalysisUnit = PER_IMAGE,
) -> list[dict[str, str]]:
    """One row per metric: variance shares, between/within ratio and the loss effect's F-test (empty below
    :data:`MIN_UNITS` units)."""
    rows = []
    images = sample(model_csvs, unit)[2] if model_csvs else 0
    for metric, info, losses, values in _metrics(model_csvs, infos, unit):
        if values.shape[2] < 2:
            continue
        result = decompose(values)
        tested = testable(result.units)
        rows.append(
            {
                "metric": metric,
                "label": info.label,
                "losses": str(result.losses),
                "seeds": str(result.seeds),
                "unit": unit.name,
                "units": str(result.units),
                "images": str(images),
                **{f"share_{part}": _format(result.share(part), 4) for part in ("loss", "seed", "unit", "residual")},
                "sd_loss": _format(math.sqrt(result.loss), info.decimals + 2),
                "sd_seed": _format(None if result.seed is None else math.sqrt(result.seed), info.decimals + 2),
                "ratio_between_within": _format(result.ratio, 3),
                "F": _format(result.f, 3) if tested else "",
                "df_loss": str(result.df[0]),
                "df_error": str(result.df[1]),
                "p_loss": _format(result.p, 4) if tested else "",
                "tested": "yes" if tested else "no",
            }
        )
    return rows


PAIR_COLUMNS = ["metric", "a", "b", "difference", "ci_low", "ci_high", "p", "p_holm", "significant", "better"]


def pair_rows(
    model_csvs: dict[str, list[str | Path]],
    infos: dict[str, MetricInfo] = STUDY_METRICS,
    unit: AnalysisUnit = PER_IMAGE,
) -> list[dict[str, str]]:
    """One row per (metric, pair of losses): mean difference a − b over units, 95 % interval, p, Holm's p, which is
    better.

    Below :data:`MIN_UNITS` units the interval and p-values are empty and ``significant`` says
    ``not tested (n = ...)``.
    """
    rows = []
    for metric, info, losses, values in _metrics(model_csvs, infos, unit):
        tested = testable(values.shape[2])
        for test in pairwise(losses, values):
            better = ""
            if test.significant():
                better = test.a if (test.difference > 0) == info.higher_is_better else test.b
            rows.append(
                {
                    "metric": metric,
                    "a": test.a,
                    "b": test.b,
                    "difference": _format(test.difference, info.decimals + 2),
                    "ci_low": _format(test.low, info.decimals + 2),
                    "ci_high": _format(test.high, info.decimals + 2),
                    "p": _format(test.p, 4),
                    "p_holm": _format(test.p_holm, 4),
                    "significant": (
                        ("yes" if test.significant() else "no") if tested else not_tested(unit, values.shape[2])
                    ),
                    "better": better,
                }
            )
    return rows


def _write_csv(rows: list[dict[str, str]], columns: list[str], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _percent(share: str) -> str:
    return f"{100 * float(share):.1f} %" if share else "not measured"


def _f_test(row: dict[str, str], unit: AnalysisUnit) -> tuple[str, str]:
    if row["tested"] == "no":
        return not_tested(unit, int(row["units"])), "—"
    return f"{row['F']} ({row['df_loss']}, {row['df_error']})", row["p_loss"]


def write_variance(
    title: str,
    model_csvs: dict[str, list[str | Path]],
    prefix: str | Path,
    infos: dict[str, MetricInfo] = STUDY_METRICS,
    unit: AnalysisUnit = PER_IMAGE,
) -> list[Path]:
    """``prefix``_variance.csv/.md/.tex: the variance decomposition of every metric, over ``unit``.

    Args:
        title: The table's name as shown (``Table 6.1``).
        model_csvs: Loss → per-image CSVs, one per seed.
        prefix: Path prefix (``results/tables/table_6_1``).
        infos: The metrics and their display settings.
        unit: The unit of analysis (the task spec's: images, or volumes of MRI slices).
    """
    prefix = Path(prefix)
    rows = variance_rows(model_csvs, infos, unit)
    seeds = rows[0]["seeds"] if rows else "0"
    paths = [prefix.with_name(prefix.name + f"_variance{suffix}") for suffix in (".csv", ".md", ".tex")]
    _write_csv(rows, VARIANCE_COLUMNS, paths[0])
    header = ["Metric", "loss", "seed", unit.name, "residual", "between/within", "F (loss)", "p (loss)"]
    body = [
        [
            row["label"],
            _percent(row["share_loss"]),
            _percent(row["share_seed"]),
            _percent(row["share_unit"]),
            _percent(row["share_residual"]),
            row["ratio_between_within"] or "—",
            *_f_test(row, unit),
        ]
        for row in rows
    ]
    notes = [
        (
            f"{sample_note(model_csvs, unit) if model_csvs else 'no models'}; {rows[0]['losses'] if rows else 0}"
            f" losses. Shares of the variance of the per-{unit.name} values between losses, between seeds of one loss,"
            f" between {unit.plural}, and residual (loss × {unit.name} and seed × {unit.name})."
        ),
        (
            "between/within: the between-loss variance over the seed-to-seed variance of one loss; above 1, changing"
            " the loss moves the metric more than retraining does. F tests the loss effect against the seed variation"
            f" (nested ANOVA, {unit.plural} as blocks)."
        ),
    ]
    if seeds == "1":
        notes.append(
            "One seed: seed variation is not measured (run with several seeds, e.g. config/statistics.yaml); the loss"
            " effect is tested against the residual only."
        )
    if rows and rows[0]["tested"] == "no":
        notes.append(
            f"Not tested: {unit.count(int(rows[0]['units']))}, fewer than the {MIN_UNITS} independent {unit.plural} a"
            f" test needs; the shares describe these {unit.plural} only."
        )
    lines = [
        f"**{title}, variance decomposition.**",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    lines += ["", *(f"{index}. {note}" for index, note in enumerate(notes, 1))]
    paths[1].write_text("\n".join(lines) + "\n")
    tex = [
        r"\begin{table}[ht]",
        r"\centering",
        rf"\caption{{{title}: variance decomposition of the per-{unit.name} metric values.}}",
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    tex += [" & ".join(cell.replace("%", r"\%").replace("·", r"$\cdot$") for cell in cells) + r" \\" for cells in body]
    tex += (
        [r"\bottomrule", r"\end{tabular}", r"\par\smallskip\footnotesize"]
        + [note.replace("%", r"\%").replace("×", r"$\times$") + r"\\" for note in notes]
        + [r"\end{table}"]
    )
    paths[2].write_text("\n".join(tex) + "\n")
    return paths


def write_pairs(
    title: str,
    model_csvs: dict[str, list[str | Path]],
    prefix: str | Path,
    label_of: Callable[[str], str],
    infos: dict[str, MetricInfo] = STUDY_METRICS,
    unit: AnalysisUnit = PER_IMAGE,
) -> list[Path]:
    """``prefix``_pairs.csv/.md: every pair of losses per metric, paired over ``unit``, Holm-corrected.

    ``label_of`` maps a loss name to its display label.
    """
    prefix = Path(prefix)
    rows = pair_rows(model_csvs, infos, unit)
    paths = [prefix.with_name(prefix.name + f"_pairs{suffix}") for suffix in (".csv", ".md")]
    _write_csv(rows, PAIR_COLUMNS, paths[0])
    lines = [
        f"**{title}, paired comparisons of the losses.**",
        "",
        "| Metric | a | b | mean a − b | 95 % interval | p | p (Holm) | better |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        interval = f"[{row['ci_low']}, {row['ci_high']}]" if row["ci_low"] else "—"
        verdict = (
            label_of(row["better"]) if row["better"] else ("n.s." if row["significant"] == "no" else row["significant"])
        )
        lines.append(
            f"| {infos[row['metric']].label} | {label_of(row['a'])} | {label_of(row['b'])} | {row['difference']} |"
            f" {interval} | {row['p'] or '—'} | {row['p_holm'] or '—'} | {verdict} |"
        )
    sample_text = sample_note(model_csvs, unit) if model_csvs else "no models"
    lines += [
        "",
        (
            f"1. {sample_text}. Paired t-test over validation {unit.plural} on seed-averaged values; Holm's correction"
            f" over the pairs of each metric; significant at α = {ALPHA}. n.s.: not significant. Fewer than {MIN_UNITS}"
            f" {unit.plural}: not tested."
        ),
    ]
    paths[1].write_text("\n".join(lines) + "\n")
    return paths
