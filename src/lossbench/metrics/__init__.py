"""Metric registry: every evaluation metric, computed per image by name from the spec its module declares.

``compute(name, output, target)`` takes (N, C, H, W) tensors with values nominally in [0, 1]
and returns one value per image, shape (N,).
"""

from __future__ import annotations

import torch

from lossbench.flip import METRIC as FLIP
from lossbench.metrics import lpips, msssim, pixel
from lossbench.specs import MetricInfo, MetricSpec, lookup

#: Every registered metric, in the thesis's row order.
SPECS: dict[str, MetricSpec] = {spec.name: spec for spec in (pixel.L1, pixel.L2, pixel.PSNR, msssim.METRIC, lpips.METRIC, FLIP)}

#: How each metric of the study is shown in the thesis's tables, in its row order.
STUDY_METRICS: dict[str, MetricInfo] = {name: spec.info for name, spec in SPECS.items()}

__all__ = ["SPECS", "STUDY_METRICS", "MetricInfo", "compute", "names", "spec"]


def names() -> list[str]:
    """Names of the metrics that can be computed."""
    return list(SPECS)


def spec(name: str) -> MetricSpec:
    """The spec of metric ``name``; an unknown name is a one-line ValueError listing the known ones."""
    return lookup(SPECS, "metric", name)


@torch.no_grad()
def compute(name: str, output: torch.Tensor, target: torch.Tensor, **params) -> torch.Tensor:
    """Compute metric ``name`` per image.

    Args:
        name: One of :func:`names`.
        output: Restored images, (N, C, H, W), C in {1, 3}, nominally in [0, 1].
        target: Reference images of the same shape.
        **params: Metric options (for example FLIP's grayscale mode).

    Returns:
        Tensor of shape (N,).
    """
    return spec(name).compute(output, target, **params)
