"""The SSIM loss E = 1 − SSIM (not one of the thesis's losses), on the metric's core
:func:`lossbench.metrics.ssim.structural_similarity`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lossbench.core.checks import check_reduction, reduce_images
from lossbench.core.specs import LossSpec, Setting
from lossbench.metrics.ssim import WINDOWS, WindowName, check_window, structural_similarity, task_window


class SSIMLoss(nn.Module):
    """SSIM loss E = 1 − SSIM, averaged over the batch, computed in float32 (float64 inputs: float64) where the metric
    computes in float64 (see :func:`lossbench.metrics.ssim.structural_similarity`).

    Args:
        window: ``"gaussian"`` (Wang et al.'s 11 × 11 Gaussian window) or ``"fastmri"`` (fastMRI's 7 × 7
            uniform window with sample covariance); see :mod:`lossbench.metrics.ssim`.
        data_range: Dynamic range of the pixel values.
        reduction: ``mean`` (over the batch), ``sum`` (over its images) or ``none`` (the (N,) per-image
            1 − SSIM).
    """

    def __init__(self, window: WindowName = "gaussian", data_range: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        check_window(window, None, "SSIMLoss")
        self.window: WindowName = window
        self.data_range = data_range
        self.reduction = check_reduction(reduction, "SSIMLoss")

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss in [0, 2] for (N, C, H, W) images: a scalar, or (N,) with ``reduction="none"``."""
        return reduce_images(1.0 - structural_similarity(output, target, self.window, self.data_range), self.reduction)

    def extra_repr(self) -> str:
        return f"window={self.window!r}, data_range={self.data_range}, reduction={self.reduction!r}"


def _check_params(params: Mapping[str, Any]) -> str | None:
    window = params.get("window", "gaussian")
    if window not in WINDOWS:
        return f"window: {window!r} is not one of {', '.join(map(repr, WINDOWS))}"
    return None


def _loss_defaults(setting: Setting) -> dict[str, Any]:
    # The metric's definition on each task, so that the loss optimises the SSIM its table shows.
    return {"window": task_window(setting)}


LOSS = LossSpec(
    "ssim",
    SSIMLoss,
    "SSIM",
    defaults=_loss_defaults,
    thesis=False,
    own_metric="ssim",
    check_params=_check_params,
)
