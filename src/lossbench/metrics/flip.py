"""FLIP (Andersson et al. 2020; thesis §2.4.5) as a metric: the mean of :func:`lossbench.flip.flip_map` per image, at
the configured viewing conditions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lossbench.core.specs import MetricInfo, MetricSpec, Setting
from lossbench.flip import DEFAULT_PPD, flip, gray_mode, setting_ppd


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


METRIC = MetricSpec(
    "flip",
    flip,
    MetricInfo("FLIP", higher_is_better=False),
    defaults=_metric_defaults,
    conditions=viewing_conditions,
    differentiable=True,
)
