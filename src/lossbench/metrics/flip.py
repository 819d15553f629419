"""FLIP (Andersson et al. 2020; thesis §2.4.5) as a metric: the mean of :func:`lossbench.flip.flip_map` per image, at
the configured viewing conditions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lossbench.core.specs import MetricInfo, MetricSpec, Setting
from lossbench.flip import DEFAULT_PPD, MAX_PPD, flip, gray_mode, setting_ppd


def _metric_defaults(setting: Setting) -> dict[str, object]:
    return (
        {"ppd": setting_ppd(setting)}
        if setting.channels == 3
        else {"ppd": setting_ppd(setting), "mode": gray_mode(setting)}
    )


def viewing_conditions(params: Mapping[str, Any]) -> str:
    """FLIP's viewing conditions as a table states them: its values depend on them (a pixel seen larger shows more
    error)."""
    mode = f", grayscale reading {params['mode']}" if "mode" in params else ""
    thesis = "as the thesis" if round(params["ppd"], 1) == round(DEFAULT_PPD, 1) else f"the thesis: {DEFAULT_PPD:.1f}"
    return f"FLIP seen at {params['ppd']:.1f} pixels per degree{mode} (evaluation.flip; {thesis})."


def check_viewing(evaluation: Mapping[str, Any]) -> str | None:
    """FLIP's pixels per degree from the viewing geometry ``evaluation.flip`` against :data:`MAX_PPD` (a ``ppd`` given
    is bounded by the schema); the FLIP loss reads the same conditions.

    Computed in float64, without FLIP's float32 rounding, which overflows with a warning on an
    absurd geometry; an overflow here is inf, which the bound refuses.
    """
    viewing = evaluation["flip"]
    if viewing["ppd"] is not None:
        return None
    ppd = viewing["distance_m"] * viewing["monitor_pixels"] / viewing["monitor_width_m"] * math.pi / 180
    if not ppd > MAX_PPD:
        return None
    geometry = ", ".join(f"{key} {viewing[key]}" for key in ("distance_m", "monitor_width_m", "monitor_pixels"))
    return (
        f"flip: {geometry} give {ppd:.4g} pixels per degree; expected at most {MAX_PPD:g} (FLIP's filters widen with"
        " it)"
    )


METRIC = MetricSpec(
    "flip",
    flip,
    MetricInfo("FLIP", higher_is_better=False),
    defaults=_metric_defaults,
    conditions=viewing_conditions,
    differentiable=True,
    check_evaluation=check_viewing,
    reference=(
        "Andersson, Nilsson, Akenine-Möller, Oskarsson, Åström & Fairchild 2020, FLIP: a difference evaluator for"
        " alternating images (HPG); thesis ch. 3"
    ),
)
