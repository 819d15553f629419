"""Metric registry: every evaluation metric of the study, computed per image by name.

``compute(name, output, target)`` takes (N, C, H, W) tensors with values nominally in [0, 1]
and returns one value per image, shape (N,).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lossbench.flip import flip
from lossbench.metrics.lpips import lpips_distance
from lossbench.metrics.msssim import ms_ssim
from lossbench.metrics.pixel import l1, l2, psnr

MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MetricInfo:
    """How a metric is shown in the thesis's tables."""

    label: str
    higher_is_better: bool
    scale: float = 1.0
    decimals: int = 4


#: Every metric of the study, in the thesis's row order, whether or not it is built yet.
STUDY_METRICS: dict[str, MetricInfo] = {
    "l1": MetricInfo("1000·l1", higher_is_better=False, scale=1000.0, decimals=2),
    "l2": MetricInfo("1000·l2", higher_is_better=False, scale=1000.0, decimals=2),
    "psnr": MetricInfo("PSNR", higher_is_better=True, decimals=2),
    "msssim": MetricInfo("MS-SSIM", higher_is_better=True),
    "lpips": MetricInfo("LPIPS", higher_is_better=False),
    "flip": MetricInfo("FLIP", higher_is_better=False),
}

def _flip(output: torch.Tensor, target: torch.Tensor, **params) -> torch.Tensor:
    # FLIP is not symmetric: the reference comes first.
    return flip(target, output, **params)


REGISTRY: dict[str, MetricFn] = {
    "l1": l1,
    "l2": l2,
    "psnr": psnr,
    "msssim": ms_ssim,
    "lpips": lpips_distance,
    "flip": _flip,
}


def names() -> list[str]:
    """Names of the metrics that can be computed."""
    return list(REGISTRY)


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
    if name not in REGISTRY:
        raise ValueError(f"unknown metric {name!r}: expected one of {', '.join(REGISTRY)}")
    return REGISTRY[name](output, target, **params)
