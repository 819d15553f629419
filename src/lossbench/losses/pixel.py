"""Pixel-wise losses: l1 (thesis eq. 2.4) and l2 (eq. 2.5), means over all pixels and channels."""

from __future__ import annotations

import torch
from torch import nn

from lossbench.core.checks import check_image_pair, check_reduction, reduce_map
from lossbench.core.specs import LossSpec


class L1Loss(nn.Module):
    """Mean absolute error over all pixels, channels and images.

    Args:
        reduction: ``mean`` (the batch's mean), ``sum`` (the sum of the per-image means) or
            ``none`` (the (N,) per-image means).
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction, "l1")

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_image_pair(output, target, "l1")
        return reduce_map((output - target).abs(), self.reduction)


class L2Loss(nn.Module):
    """Mean squared error over all pixels, channels and images.

    Args:
        reduction: As :class:`L1Loss`.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction, "l2")

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_image_pair(output, target, "l2")
        return reduce_map((output - target).square(), self.reduction)


L1 = LossSpec("l1", L1Loss, "l1", tex="$l_1$", own_metric="l1")
L2 = LossSpec("l2", L2Loss, "l2", tex="$l_2$", own_metric="l2")
