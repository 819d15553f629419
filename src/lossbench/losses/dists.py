"""The DISTS loss, DISTS itself (0 for identical images), on the metric's core :func:`lossbench.metrics.dists.dists`
(not one of the thesis's losses)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

import torch
from torch import nn

from lossbench.core.checks import check_reduction, reduce_images
from lossbench.core.specs import LossSpec
from lossbench.metrics.dists import Trunk, dists, get_dists

#: The trunks the loss takes (:data:`lossbench.metrics.dists.Trunk`).
TRUNKS = get_args(Trunk)


class DISTSLoss(nn.Module):
    """DISTS (Ding et al., 2020) as a loss, averaged over the batch.

    The network is shared, frozen and not a submodule, so ``parameters()`` yields nothing.

    Args:
        trunk: ``pretrained`` (VGG16 and α/β found or fetched once; missing weights fail here, not mid-training) or
            ``untrained`` (tests), see :class:`lossbench.metrics.dists.DISTSModel`.
        reduction: ``mean`` (over the batch), ``sum`` (over its images) or ``none`` (the (N,) per-image DISTS).
    """

    def __init__(self, trunk: Trunk = "pretrained", reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction, "DISTSLoss")
        self.trunk = trunk
        get_dists(trunk)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss in [0, 1] for (N, C, H, W) images in [0, 1]: a scalar, or (N,) with ``reduction="none"``."""
        return reduce_images(dists(output, target, self.trunk), self.reduction)

    def extra_repr(self) -> str:
        return f"trunk={self.trunk!r}, reduction={self.reduction!r}"


def _check_params(params: Mapping[str, Any]) -> str | None:
    """A configured trunk is one of the two the loss has; the constructor's other keywords are the pipeline's to
    check."""
    trunk = params.get("trunk", "pretrained")
    if trunk not in TRUNKS:
        return f"trunk: {trunk!r}, expected one of {', '.join(map(repr, TRUNKS))} (untrained: tests only)"
    return None


LOSS = LossSpec(
    "dists",
    DISTSLoss,
    "DISTS",
    thesis=False,
    portable_params={"trunk": "untrained"},
    own_metric="dists",
    check_params=_check_params,
)
