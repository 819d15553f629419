"""The LPIPS + l2 loss (Kaplanyan et al., 2019; thesis §2.4.4), on the metric's shared network
:func:`lossbench.metrics.lpips.get_lpips`."""

from __future__ import annotations

import os
from typing import Literal

import torch
from torch import nn

from lossbench.core.checks import check_image_pair, check_reduction, reduce_images, reduce_map
from lossbench.core.specs import LossSpec
from lossbench.metrics.lpips import UNTRAINED_TRUNK, Trunk, get_lpips, trunk_params


class LPIPSL2Loss(nn.Module):
    """LPIPS + l2 loss (Kaplanyan et al., 2019; thesis §2.4.4), a scalar over the batch.

    ``lpips_weight · mean LPIPS + l2_weight · MSE``, computed in float32. The LPIPS network is
    shared, frozen and not a submodule, so ``parameters()`` yields nothing.

    The thesis gives no weights. With 1 : 1, an MSE near 1e-3 next to an LPIPS near 0.1 hardly
    counts, yet its Table 6.1 shows the l2 term mattering (1000·l2 0.70 for LPIPS+l2 next to 0.68
    for l2). ``l2_weight="balance"`` therefore sets the l2 weight on the first batch with a nonzero
    error so that both terms are equal there, ``l2_weight = lpips_weight · LPIPS / MSE``, and freezes
    it in the buffer ``balanced_l2_weight`` (NaN until then), which checkpoints save and restore, so
    a resumed run continues with the same weight.

    Args:
        lpips_weight: Weight of the mean LPIPS distance, > 0.
        l2_weight: Weight (≥ 0) of the mean squared error over pixels, channels and images, or
            ``"balance"``.
        trunk: Trunk weights policy, see the module docstring. Resolved at construction, so
            missing weights with ``trunk="pretrained"`` fail here rather than mid-training.
        weights_path: Checkpoint with torchvision's AlexNet key names, default found or fetched.
        reduction: ``mean`` (over the batch), ``sum`` (over its images) or ``none`` ((N,) per
            image: its LPIPS and MSE, weighted). ``balance`` sets its weight from the batch's means
            whatever the reduction.

    Attributes:
        trunk_pretrained: Whether the LPIPS trunk holds the pretrained weights.
    """

    def __init__(
        self,
        lpips_weight: float = 1.0,
        l2_weight: float | Literal["balance"] = 1.0,
        trunk: Trunk = "auto",
        weights_path: str | os.PathLike | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction, "lpips+l2")
        balance = l2_weight == "balance"
        if not (isinstance(lpips_weight, (int, float)) and lpips_weight > 0):
            raise ValueError(f"lpips+l2: lpips_weight must be a number > 0, got {lpips_weight!r}")
        if not balance and not (isinstance(l2_weight, (int, float)) and l2_weight >= 0):
            raise ValueError(f"lpips+l2: l2_weight must be a number >= 0 or 'balance', got {l2_weight!r}")
        self.lpips_weight = float(lpips_weight)
        self.l2_weight = l2_weight
        if balance:
            self.register_buffer("balanced_l2_weight", torch.tensor(float("nan")))
        self.trunk: Trunk = trunk
        self.weights_path = weights_path
        self.trunk_pretrained = get_lpips(trunk, weights_path).trunk_pretrained

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for (N, C, H, W) images in [0, 1]: a scalar, or (N,) with ``reduction="none"``."""
        check_image_pair(output, target, "lpips+l2")
        distances = get_lpips(self.trunk, self.weights_path, output.device)(output, target)
        with torch.autocast(device_type=output.device.type, enabled=False):
            squared = (output.float() - target.float()).square()
        distance, mse = reduce_images(distances, self.reduction), reduce_map(squared, self.reduction)
        if self.l2_weight != "balance":
            return self.lpips_weight * distance + self.l2_weight * mse
        batch_distance, batch_mse = (distance, mse) if self.reduction == "mean" else (distances.mean(), squared.mean())
        # Set on device, without reading the values back to the host (a sync per step).
        unset = self.balanced_l2_weight.isnan() & (batch_mse.detach() > 0)
        self.balanced_l2_weight.copy_(
            torch.where(
                unset, self.lpips_weight * batch_distance.detach() / batch_mse.detach(), self.balanced_l2_weight
            )
        )
        # Until a batch with a nonzero error sets the weight, the l2 term is zero anyway.
        return self.lpips_weight * distance + self.balanced_l2_weight.nan_to_num(0.0) * mse

    def extra_repr(self) -> str:
        return (
            f"lpips_weight={self.lpips_weight}, l2_weight={self.l2_weight!r}, trunk={self.trunk!r}, "
            f"trunk_pretrained={self.trunk_pretrained}, reduction={self.reduction!r}"
        )


LOSS = LossSpec(
    "lpips_l2",
    LPIPSL2Loss,
    "LPIPS+l2",
    tex="LPIPS$+l_2$",
    defaults=trunk_params,
    portable_params={"trunk": "untrained"},
    untrained_trunk_note=UNTRAINED_TRUNK,
    own_metric="lpips",
)
