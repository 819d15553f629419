"""Do losses differ more than training runs do, in the observers' JOD? (``userstudy.seeds: all``)

A study of every seed's model scales all (loss, seed) conditions together (:mod:`lossbench.userstudy.scaling`,
unchanged: the conditions are only more labels). This module then reads, per loss, the JOD of its seeds:

- each loss's **JOD**, the mean of its seeds' JOD, and the **between-seed spread**: the SD of its seeds' JOD
  (S − 1 degrees of freedom) and their range;
- a **between-loss / within-loss ratio** defined as the metrics' variance tables define theirs
  (:mod:`lossbench.report.statistics`, ``table_6_X_variance``): variance components by the method of moments, with
  the seeds nested in the losses, ``jod[l, s] = μ + loss_l + seed_{l,s} + e_{l,s}``, negative estimates set to 0,
  the ratio the loss component over the seed component (inf when the seed component is 0). The unit of replication
  is the training run (seed); the study's images are pooled in the scaling, so there is no unit factor. The
  residual ``e`` is the observers' sampling error of each JOD: where the metrics subtract their residual mean square
  from the seed mean square, this subtracts the part of it the observers' noise alone gives, measured by the
  bootstrap that resamples observers (:func:`observer_noise`).

The intervals are 95 % percentiles of the same observer bootstrap as the study's JOD: each bootstrap sample of the
(loss, seed) JOD gives its own means, spreads and ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lossbench.core.io import latex_table, markdown_table, numbered, write_lines, write_rows
from lossbench.registry import PACKAGE, Registry
from lossbench.userstudy.report import anchored, observer_note
from lossbench.userstudy.scaling import Summary, from_samples
from lossbench.userstudy.seeds import split

#: Columns of the per-loss table's CSV.
COLUMNS = [
    "loss",
    "seeds",
    "jod",
    "jod_low",
    "jod_high",
    "seed_sd",
    "seed_sd_low",
    "seed_sd_high",
    "seed_range",
    "seed_range_low",
    "seed_range_high",
    "noise_sd",
    "observers",
    "resampled",
]
#: Columns of the variance CSV (the names of the metrics' ``_variance.csv`` where they mean the same).
VARIANCE_COLUMNS = [
    "losses",
    "seeds",
    "var_loss",
    "var_seed",
    "var_noise",
    "ratio_between_within",
    "ratio_low",
    "ratio_high",
    "observers",
    "resampled",
]


@dataclass(frozen=True)
class JodVariance:
    """Variance components of the (loss, seed) JOD, JOD² (see the module docstring)."""

    losses: int
    seeds: int
    #: Between-loss component.
    loss: float
    #: Within-loss (seed-to-seed) component, net of the observers' noise.
    seed: float
    #: The observers' noise in the seed mean square; None: not measured (not resampled), nothing subtracted.
    noise: float | None

    @property
    def ratio(self) -> float:
        """Between-loss over within-loss (seed) variance; inf when the seed component is 0."""
        return math.inf if self.seed == 0 else self.loss / self.seed


def decompose_jod(values: np.ndarray, noise: float | None = None) -> JodVariance:
    """Method-of-moments components of ``values`` (losses, seeds), JOD, seeds nested in losses.

    ``MS_loss = S·Σ(mean_l − mean)² / (L − 1)``, ``MS_seed = ΣΣ(jod_ls − mean_l)² / (L(S − 1))``; the seed component
    is ``MS_seed − noise``, the loss component ``(MS_loss − MS_seed) / S``, each at least 0.

    Raises:
        ValueError: fewer than 2 losses or 2 seeds, or a negative or non-finite ``noise``.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[0] < 2 or values.shape[1] < 2:
        raise ValueError(f"JOD by loss and seed: expected at least 2 losses × 2 seeds, got shape {values.shape}")
    if noise is not None and not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"observer noise: expected a finite variance ≥ 0, got {noise}")
    n_loss, n_seed = values.shape
    means = values.mean(axis=1)
    ms_loss = n_seed * float(((means - means.mean()) ** 2).sum()) / (n_loss - 1)
    ms_seed = float(((values - means[:, None]) ** 2).sum()) / (n_loss * (n_seed - 1))
    seed = max(0.0, ms_seed - (noise or 0.0))
    return JodVariance(n_loss, n_seed, max(0.0, (ms_loss - ms_seed) / n_seed), seed, noise)


def observer_noise(samples: np.ndarray) -> np.ndarray:
    """Each loss's expected seed mean square from the observers' sampling alone, JOD².

    Args:
        samples: (B, L, S) bootstrap samples of the (loss, seed) JOD, B ≥ 2.

    Returns:
        (L,) ``Σ_s Var_b(jod_bls − mean_s jod_bls) / (S − 1)``: the bootstrap variance of each seed's deviation from
        its loss's mean, which is what the seed mean square holds when the seeds' true JOD are equal. Their mean
        is the noise of the pooled seed mean square.
    """
    deviations = samples - samples.mean(axis=2, keepdims=True)
    return deviations.var(axis=0, ddof=1).sum(axis=1) / (samples.shape[2] - 1)


def by_loss(conditions: list[str]) -> tuple[list[str], np.ndarray]:
    """(losses, (L, S) indices into ``conditions``) of a study of (loss, seed) conditions, seeds in their order.

    Raises:
        ValueError: a condition that is no (loss, seed), a loss with another number of seeds than the first (the
            decomposition needs a balanced design), or fewer than 2 seeds a loss.
    """
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(conditions):
        loss, seed = split(name)
        if seed is None:
            raise ValueError(f"conditions: {name!r} is no (loss, seed) condition <loss>/seed<N> (userstudy.seeds: all)")
        groups.setdefault(loss, []).append(index)
    counts = {loss: len(members) for loss, members in groups.items()}
    first = next(iter(groups))
    unequal = [loss for loss, count in counts.items() if count != counts[first]]
    if unequal:
        raise ValueError(
            f"conditions: loss {unequal[0]} has {counts[unequal[0]]} seeds, {first} {counts[first]}; the seed analysis"
            " needs the same seeds for every loss"
        )
    if counts[first] < 2:
        raise ValueError(f"conditions: one seed a loss ({', '.join(conditions)}); the seed analysis needs at least 2")
    return list(groups), np.array(list(groups.values()))


def loss_summary(summary: Summary) -> Summary:
    """Each loss's JOD, the mean of its seeds' JOD, with the bootstrap samples' means as its samples.

    The scores a metric is compared with (Kendall τ, self-preference) when a study showed every seed's model.
    """
    losses, index = by_loss(summary.conditions)
    return from_samples(
        losses,
        summary.jod[index].mean(axis=1),
        summary.samples[:, index].mean(axis=2),
        observers=summary.observers,
        resampled=summary.resampled,
    )


def _interval(values: np.ndarray) -> tuple[float, float]:
    """95 % percentile interval of bootstrap values; the nearest sample, since a ratio may be inf (interpolating
    between two infs gives NaN)."""
    if len(values) == 0:
        return math.nan, math.nan
    low, high = np.percentile(values, [2.5, 97.5], method="nearest")
    return float(low), float(high)


def _text(value: float, decimals: int = 3) -> str:
    if math.isnan(value):
        return ""
    return "inf" if value == math.inf else f"{value:.{decimals}f}"


def seed_rows(summary: Summary, origin: str = "mean0", registry: Registry = PACKAGE) -> tuple[list[dict], dict, str]:
    """The per-loss rows, the variance row (CSV values as text) and the origin in words, of a (loss, seed) scaling.

    Args:
        summary: The study's scaling of its (loss, seed) conditions.
        origin: Where the losses' JOD are put (:func:`lossbench.userstudy.report.anchored`); spreads and the ratio
            do not depend on it.
        registry: The configuration's losses, for the origin's words.
    """
    losses, index = by_loss(summary.conditions)
    values, samples = summary.jod[index], summary.samples[:, index]
    resampled = len(samples) >= 2
    noise = observer_noise(samples) if resampled else np.full(len(losses), math.nan)
    anchor, words = anchored(loss_summary(summary), origin, registry)
    observers = "" if summary.observers is None else str(summary.observers)
    common = {"observers": observers, "resampled": summary.resampled or "none"}
    rows = []
    for k, loss in enumerate(losses):
        sd, spread = values[k].std(ddof=1), np.ptp(values[k])
        sd_low, sd_high = _interval(samples[:, k].std(axis=1, ddof=1))
        range_low, range_high = _interval(np.ptp(samples[:, k], axis=1))
        jod_low, jod_high = anchor.low[k], anchor.high[k]
        cells = [anchor.jod[k], jod_low, jod_high, sd, sd_low, sd_high, spread, range_low, range_high]
        rows.append(
            {
                "loss": loss,
                "seeds": str(values.shape[1]),
                **dict(zip(COLUMNS[2:11], map(_text, cells))),
                "noise_sd": _text(math.sqrt(noise[k])),
                **common,
            }
        )
    pooled = float(noise.mean()) if resampled else None
    variance = decompose_jod(values, pooled)
    ratios = np.array([decompose_jod(sample, pooled).ratio for sample in samples])
    ratio_low, ratio_high = _interval(ratios)
    row = {
        "losses": str(variance.losses),
        "seeds": str(variance.seeds),
        "var_loss": _text(variance.loss, 4),
        "var_seed": _text(variance.seed, 4),
        "var_noise": _text(math.nan if pooled is None else pooled, 4),
        "ratio_between_within": _text(variance.ratio),
        "ratio_low": _text(ratio_low),
        "ratio_high": _text(ratio_high),
        **common,
    }
    return rows, row, words


def _notes(summary: Summary, row: dict) -> list[str]:
    """What the seed table rests on and how to read it."""
    losses, seeds = int(row["losses"]), int(row["seeds"])
    notes = [
        (
            f"{observer_note(summary)}; {losses} losses × {seeds} seeds (training runs), scaled together as"
            f" {losses * seeds} (loss, seed) conditions. A loss's JOD is the mean of its seeds' JOD; seed SD and range:"
            f" the spread of its seeds' JOD (SD with {seeds - 1} degree{'s' if seeds != 2 else ''} of freedom)."
        ),
        (
            "between/within: the between-loss variance over the seed-to-seed variance of one loss, in JOD²; above 1,"
            " changing the loss moves the observers' JOD more than retraining does. Components by the method of"
            " moments with seeds nested in losses, as the metrics' variance tables (docs/statistics.md), negative"
            " estimates set to 0; the unit of replication is the training run (seed)."
        ),
    ]
    if row["var_noise"]:
        notes.append(
            "observer noise: the seed-to-seed variance the observers' sampling alone gives (observer bootstrap),"
            " subtracted from the seed component as the metrics' tables subtract their residual; a loss whose seed SD"
            " is near its noise SD has seeds the observers cannot tell apart. Intervals: 95 % percentiles of the"
            " observer bootstrap."
        )
    else:
        notes.append(
            "Not resampled: no intervals, and the observers' noise is not measured, so the seed component includes it"
            " and the ratio is biased low."
        )
    return notes


def write_seed_table(
    summary: Summary, prefix: str | Path, title: str, origin: str = "mean0", registry: Registry = PACKAGE
) -> list[Path]:
    """``prefix``.csv/.md/.tex (each loss's JOD and between-seed spread) and ``prefix``_variance.csv (the
    between-loss / within-loss ratio) of a (loss, seed) scaling; the Markdown holds both, with notes."""
    rows, row, words = seed_rows(summary, origin, registry)
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [prefix.with_name(prefix.name + suffix) for suffix in (".csv", "_variance.csv", ".md", ".tex")]
    write_rows(paths[0], rows, COLUMNS)
    write_rows(paths[1], [row], VARIANCE_COLUMNS)

    def interval(low: str, high: str) -> str:
        return f"[{low}, {high}]" if low else "—"

    header = ["Loss", "Seeds", "JOD", "95 % CI", "seed SD", "95 % CI", "seed range", "95 % CI", "noise SD"]
    body = [
        [
            registry.loss_label(r["loss"]),
            r["seeds"],
            r["jod"],
            interval(r["jod_low"], r["jod_high"]),
            r["seed_sd"],
            interval(r["seed_sd_low"], r["seed_sd_high"]),
            r["seed_range"],
            interval(r["seed_range_low"], r["seed_range_high"]),
            r["noise_sd"] or "—",
        ]
        for r in rows
    ]
    variance_header = ["Losses", "Seeds", "loss (JOD²)", "seed (JOD²)", "noise (JOD²)", "between/within", "95 % CI"]
    variance_body = [
        [
            row["losses"],
            row["seeds"],
            row["var_loss"],
            row["var_seed"],
            row["var_noise"] or "—",
            row["ratio_between_within"],
            interval(row["ratio_low"], row["ratio_high"]),
        ]
    ]
    notes = _notes(summary, row)
    caption = f"{title}: each loss's JOD ({words}) over its seeds, and the between-seed spread."
    write_lines(
        paths[2],
        [
            f"**{caption}**",
            "",
            markdown_table(header, body),
            "",
            markdown_table(variance_header, variance_body),
            "",
            *numbered(notes),
        ],
    )
    tex_rows = [[registry.loss_tex_label(r["loss"]), *cells[1:]] for r, cells in zip(rows, body)]
    between = interval(row["ratio_low"], row["ratio_high"])
    ratio = f"between-loss / within-loss variance {row['ratio_between_within']} {between}"
    paths[3].write_text(
        latex_table(
            f"{caption} {ratio}.".replace("%", r"\%"),
            [cell.replace("%", r"\%") for cell in header],
            tex_rows,
            notes=[note.replace("%", r"\%").replace("×", r"$\times$").replace("²", r"$^2$") for note in notes],
        )
    )
    return paths
