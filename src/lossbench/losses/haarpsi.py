"""The HaarPSI loss E = 1 − HaarPSI, on the metric's core :func:`lossbench.metrics.haarpsi.haarpsi` (not one of the
thesis's losses)."""

from __future__ import annotations

import torch
from torch import nn

from lossbench.core.checks import check_reduction, reduce_images
from lossbench.core.specs import LossSpec
from lossbench.metrics.haarpsi import ALPHA, C, haarpsi


class HaarPSILoss(nn.Module):
    """HaarPSI loss E = 1 − HaarPSI, averaged over the batch.

    Args:
        subsample, c, alpha, data_range: As for :func:`lossbench.metrics.haarpsi.haarpsi` (the paper's
            defaults: 2 × 2 subsampling, C = 30, α = 4.2, images in [0, 1]).
        reduction: ``mean`` (over the batch), ``sum`` (over its images) or ``none`` (the (N,) per-image
            1 − HaarPSI).
    """

    def __init__(
        self,
        subsample: bool = True,
        c: float = C,
        alpha: float = ALPHA,
        data_range: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.subsample = subsample
        self.c = c
        self.alpha = alpha
        self.data_range = data_range
        self.reduction = check_reduction(reduction, "HaarPSILoss")

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss in [0, 1) for (N, C, H, W) images: a scalar, or (N,) with ``reduction="none"``."""
        similarity = haarpsi(output, target, self.subsample, self.c, self.alpha, self.data_range)
        return reduce_images(1.0 - similarity, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"subsample={self.subsample}, c={self.c}, alpha={self.alpha}, data_range={self.data_range},"
            f" reduction={self.reduction!r}"
        )


LOSS = LossSpec("haarpsi", HaarPSILoss, "HaarPSI", thesis=False, own_metric="haarpsi")
