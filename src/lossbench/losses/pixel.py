"""Pixel-wise losses: l1 (thesis eq. 2.4) and l2 (eq. 2.5), means over all pixels and channels."""

from __future__ import annotations

import torch
from torch import nn

from lossbench.checks import check_image_pair
from lossbench.specs import LossSpec


class L1Loss(nn.Module):
    """Mean absolute error over all pixels, channels and images."""

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_image_pair(output, target, "l1")
        return (output - target).abs().mean()


class L2Loss(nn.Module):
    """Mean squared error over all pixels, channels and images."""

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_image_pair(output, target, "l2")
        return (output - target).square().mean()


L1 = LossSpec("l1", L1Loss, "l1", tex="$l_1$")
L2 = LossSpec("l2", L2Loss, "l2", tex="$l_2$", own_metric="l2")
