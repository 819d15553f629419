"""Is the difference between losses larger than the difference between training runs? (thesis §8)

Per (task, metric), on the per-image metric values of every (loss, seed) model:

- a **variance decomposition**: a nested ANOVA with seeds nested in losses and the validation images
  as a blocking factor, ``y[l, s, i] = μ + loss_l + seed_{l,s} + image_i + ε``, whose components are
  estimated by the method of moments (balanced design; negative estimates are set to 0). The
  residual ε holds the loss × image and seed × image interactions. The loss effect is tested
  against the seed-to-seed variation (F = MS_loss / MS_seed), so a loss only "matters" when it
  moves the metric more than retraining with another seed does. With one seed the seed variation
  is not measured: the loss effect is then tested against the residual, and the tables say so.
- **paired comparisons** of every pair of losses: a paired t-test over validation images on
  seed-averaged values (the image is the unit, paired across losses; averaging over seeds carries
  the seeds' variation into each image's value), the mean difference with its 95 % interval, and
  Holm's correction over the pairs of one metric.

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

from lossbench.metrics import STUDY_METRICS, MetricInfo

#: Significance level of the pairwise tests and of the tables' "not different from the best" marks.
ALPHA = 0.05


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


def stack(model_csvs: dict[str, list[str | Path]], metric: str, scale: float = 1.0) -> tuple[list[str], np.ndarray]:
    """The values of ``metric`` as an array (losses, seeds, images), images in a common sorted order.

    Args:
        model_csvs: Loss → its models' per-image CSVs, one per seed, every loss with the same seeds.
        metric: Column to read.
        scale: Display scale (1000 for l1 and l2).

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
        raise ValueError(f"every loss needs the same number of seeds, got {dict((loss, len(tables[loss])) for loss in losses)}")
    images = sorted(tables[losses[0]][0])
    for loss in losses:
        for path, table in zip(model_csvs[loss], tables[loss]):
            if sorted(table) != images:
                raise ValueError(f"{path}: its images differ from those of {model_csvs[losses[0]][0]}")
    values = np.array([[[table[image][metric] * scale for image in images] for table in tables[loss]] for loss in losses])
    return losses, values


@dataclass(frozen=True)
class Decomposition:
    """Variance components of one metric over losses, seeds and images (see the module docstring)."""

    losses: int
    seeds: int
    images: int
    loss: float  # variance components, display scale squared
    seed: float | None  # None: one seed, not measured
    image: float
    residual: float
    f: float
    df: tuple[int, int]
    p: float

    @property
    def total(self) -> float:
        return self.loss + (self.seed or 0.0) + self.image + self.residual

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
    """Nested ANOVA of ``values`` (losses, seeds, images) with images as a blocking factor.

    Raises:
        ValueError: with fewer than two losses or two images.
    """
    n_loss, n_seed, n_image = values.shape
    if n_loss < 2 or n_image < 2:
        raise ValueError(f"the variance decomposition needs at least 2 losses and 2 images, got {n_loss} and {n_image}")
    grand = values.mean()
    loss_means = values.mean(axis=(1, 2))
    run_means = values.mean(axis=2)
    image_means = values.mean(axis=(0, 1))
    ss_loss = n_seed * n_image * float(((loss_means - grand) ** 2).sum())
    ss_seed = n_image * float(((run_means - loss_means[:, None]) ** 2).sum())
    ss_image = n_loss * n_seed * float(((image_means - grand) ** 2).sum())
    residuals = values - run_means[:, :, None] - image_means[None, None, :] + grand
    df_loss, df_seed, df_image = n_loss - 1, n_loss * (n_seed - 1), n_image - 1
    df_residual = (n_loss * n_seed - 1) * (n_image - 1)
    ms_residual = float((residuals**2).sum()) / df_residual
    ms_loss, ms_image = ss_loss / df_loss, ss_image / df_image
    image = max(0.0, (ms_image - ms_residual) / (n_loss * n_seed))
    if n_seed > 1:
        ms_seed = ss_seed / df_seed
        seed = max(0.0, (ms_seed - ms_residual) / n_image)
        loss = max(0.0, (ms_loss - ms_seed) / (n_seed * n_image))
        denominator, df_denominator = ms_seed, df_seed
    else:
        seed = None
        loss = max(0.0, (ms_loss - ms_residual) / n_image)
        denominator, df_denominator = ms_residual, df_residual
    f = ms_loss / denominator if denominator > 0 else (math.inf if ms_loss > 0 else math.nan)
    p = float(scipy_stats.f.sf(f, df_loss, df_denominator)) if math.isfinite(f) else (0.0 if f == math.inf else math.nan)
    return Decomposition(n_loss, n_seed, n_image, loss, seed, image, ms_residual, f, (df_loss, df_denominator), p)


@dataclass(frozen=True)
class PairedTest:
    """Loss ``a`` against loss ``b``: mean of a − b over images with its 95 % interval, and p-values."""

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
    """Paired t-test over images on seed-averaged values.

    Args:
        a, b: Values of two losses, shape (seeds, images).

    Returns:
        Mean difference a − b, the bounds of its 95 % confidence interval, and the two-sided p-value
        (NaN bounds and p with fewer than two images).
    """
    differences = a.mean(axis=0) - b.mean(axis=0)
    mean = float(differences.mean())
    if differences.size < 2:
        return mean, math.nan, math.nan, math.nan
    spread = float(differences.std(ddof=1))
    if spread == 0:
        return mean, mean, mean, 1.0 if mean == 0 else 0.0
    error = spread / math.sqrt(differences.size)
    t = scipy_stats.t(df=differences.size - 1)
    return mean, mean - t.ppf(0.975) * error, mean + t.ppf(0.975) * error, float(2 * t.sf(abs(mean) / error))


def mean_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean over images of seed-averaged values (seeds, images), with its 95 % t interval (NaN with one image)."""
    per_image = values.mean(axis=0)
    mean = float(per_image.mean())
    if per_image.size < 2:
        return mean, math.nan, math.nan
    half = float(scipy_stats.t(df=per_image.size - 1).ppf(0.975) * per_image.std(ddof=1) / math.sqrt(per_image.size))
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
        while last + 1 < len(order) and all(frozenset((order[k], order[last + 1])) not in significant for k in range(first, last + 1)):
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
    raw = [(a, b, *paired_test(values[i], values[j])) for (i, a), (j, b) in itertools.combinations(enumerate(losses), 2)]
    adjusted = holm([row[-1] for row in raw])
    return [PairedTest(*row, p_holm=p) for row, p in zip(raw, adjusted)]


def not_different_from_best(losses: list[str], values: np.ndarray, best: str) -> set[str]:
    """Losses whose difference from ``best`` is not significant (Holm over the comparisons with it).

    Empty when the test cannot run (fewer than two images).
    """
    others = [loss for loss in losses if loss != best]
    tests = [paired_test(values[losses.index(loss)], values[losses.index(best)]) for loss in others]
    adjusted = holm([test[-1] for test in tests])
    return {loss for loss, p in zip(others, adjusted) if not math.isnan(p) and p >= ALPHA}


def _format(value: float | None, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return "inf" if value == math.inf else f"{value:.{decimals}f}"


def _metrics(model_csvs: dict[str, list[str | Path]], infos: dict[str, MetricInfo]) -> list[tuple[str, MetricInfo, list[str], np.ndarray]]:
    found = []
    for metric, info in infos.items():
        losses, values = stack(model_csvs, metric, info.scale)
        if len(losses) >= 2:
            found.append((metric, info, losses, values))
    return found


VARIANCE_COLUMNS = ["metric", "label", "losses", "seeds", "images", "share_loss", "share_seed", "share_image", "share_residual", "sd_loss", "sd_seed", "ratio_between_within", "F", "df_loss", "df_error", "p_loss"]


def variance_rows(model_csvs: dict[str, list[str | Path]], infos: dict[str, MetricInfo] = STUDY_METRICS) -> list[dict[str, str]]:
    """One row per metric: variance shares, between/within ratio and the loss effect's F-test."""
    rows = []
    for metric, info, losses, values in _metrics(model_csvs, infos):
        if values.shape[2] < 2:
            continue
        result = decompose(values)
        rows.append({
            "metric": metric,
            "label": info.label,
            "losses": str(result.losses),
            "seeds": str(result.seeds),
            "images": str(result.images),
            **{f"share_{part}": _format(result.share(part), 4) for part in ("loss", "seed", "image", "residual")},
            "sd_loss": _format(math.sqrt(result.loss), info.decimals + 2),
            "sd_seed": _format(None if result.seed is None else math.sqrt(result.seed), info.decimals + 2),
            "ratio_between_within": _format(result.ratio, 3),
            "F": _format(result.f, 3),
            "df_loss": str(result.df[0]),
            "df_error": str(result.df[1]),
            "p_loss": _format(result.p, 4),
        })
    return rows


def pair_rows(model_csvs: dict[str, list[str | Path]], infos: dict[str, MetricInfo] = STUDY_METRICS) -> list[dict[str, str]]:
    """One row per (metric, pair of losses): mean difference a − b, 95 % interval, p, Holm's p, which is better."""
    rows = []
    for metric, info, losses, values in _metrics(model_csvs, infos):
        for test in pairwise(losses, values):
            better = ""
            if test.significant():
                better = test.a if (test.difference > 0) == info.higher_is_better else test.b
            rows.append({
                "metric": metric,
                "a": test.a,
                "b": test.b,
                "difference": _format(test.difference, info.decimals + 2),
                "ci_low": _format(test.low, info.decimals + 2),
                "ci_high": _format(test.high, info.decimals + 2),
                "p": _format(test.p, 4),
                "p_holm": _format(test.p_holm, 4),
                "significant": "yes" if test.significant() else "no",
                "better": better,
            })
    return rows


def _write_csv(rows: list[dict[str, str]], columns: list[str], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _percent(share: str) -> str:
    return f"{100 * float(share):.1f} %" if share else "not measured"


def write_variance(title: str, model_csvs: dict[str, list[str | Path]], prefix: str | Path, infos: dict[str, MetricInfo] = STUDY_METRICS) -> list[Path]:
    """``prefix``_variance.csv/.md/.tex: the variance decomposition of every metric.

    Args:
        title: The table's name as shown (``Table 6.1``).
        model_csvs: Loss → per-image CSVs, one per seed.
        prefix: Path prefix (``results/tables/table_6_1``).
        infos: The metrics and their display settings.
    """
    prefix = Path(prefix)
    rows = variance_rows(model_csvs, infos)
    seeds = rows[0]["seeds"] if rows else "0"
    paths = [prefix.with_name(prefix.name + f"_variance{suffix}") for suffix in (".csv", ".md", ".tex")]
    _write_csv(rows, VARIANCE_COLUMNS, paths[0])
    header = ["Metric", "loss", "seed", "image", "residual", "between/within", "F (loss)", "p (loss)"]
    body = [[row["label"], _percent(row["share_loss"]), _percent(row["share_seed"]), _percent(row["share_image"]), _percent(row["share_residual"]), row["ratio_between_within"] or "—", f"{row['F']} ({row['df_loss']}, {row['df_error']})", row["p_loss"]] for row in rows]
    notes = [
        f"Shares of the variance of the per-image values between losses, between seeds of one loss, between images, and residual (loss × image and seed × image); {rows[0]['losses'] if rows else 0} losses, {seeds} seed(s), {rows[0]['images'] if rows else 0} images.",
        "between/within: the between-loss variance over the seed-to-seed variance of one loss; above 1, changing the loss moves the metric more than retraining does. F tests the loss effect against the seed variation (nested ANOVA, images as blocks).",
    ]
    if seeds == "1":
        notes.append("One seed: seed variation is not measured (run with several seeds, e.g. config/statistics.yaml); the loss effect is tested against the residual only.")
    lines = [f"**{title}, variance decomposition.**", "", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    lines += ["", *(f"{index}. {note}" for index, note in enumerate(notes, 1))]
    paths[1].write_text("\n".join(lines) + "\n")
    tex = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{title}: variance decomposition of the per-image metric values.}}", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    tex += [" & ".join(cell.replace("%", r"\%").replace("·", r"$\cdot$") for cell in cells) + r" \\" for cells in body]
    tex += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip\footnotesize"] + [note.replace("%", r"\%").replace("×", r"$\times$") + r"\\" for note in notes] + [r"\end{table}"]
    paths[2].write_text("\n".join(tex) + "\n")
    return paths


def write_pairs(title: str, model_csvs: dict[str, list[str | Path]], prefix: str | Path, label_of: Callable[[str], str], infos: dict[str, MetricInfo] = STUDY_METRICS) -> list[Path]:
    """``prefix``_pairs.csv/.md: every pair of losses per metric, paired over images, Holm-corrected.

    ``label_of`` maps a loss name to its display label.
    """
    prefix = Path(prefix)
    rows = pair_rows(model_csvs, infos)
    paths = [prefix.with_name(prefix.name + f"_pairs{suffix}") for suffix in (".csv", ".md")]
    _write_csv(rows, ["metric", "a", "b", "difference", "ci_low", "ci_high", "p", "p_holm", "significant", "better"], paths[0])
    lines = [f"**{title}, paired comparisons of the losses.**", "", "| Metric | a | b | mean a − b | 95 % interval | p | p (Holm) | better |", "|---|---|---|---:|---:|---:|---:|---|"]
    for row in rows:
        interval = f"[{row['ci_low']}, {row['ci_high']}]" if row["ci_low"] else "—"
        lines.append(f"| {infos[row['metric']].label} | {label_of(row['a'])} | {label_of(row['b'])} | {row['difference']} | {interval} | {row['p'] or '—'} | {row['p_holm'] or '—'} | {label_of(row['better']) if row['better'] else 'n.s.'} |")
    lines += ["", f"1. Paired t-test over validation images on seed-averaged values; Holm's correction over the pairs of each metric; significant at α = {ALPHA}. n.s.: not significant."]
    paths[1].write_text("\n".join(lines) + "\n")
    return paths
