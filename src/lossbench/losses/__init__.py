"""Loss registry: every training loss of the study is built by name.

Example:
    >>> import torch
    >>> from lossbench import losses
    >>> loss = losses.build("l1")
    >>> float(loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)))
    0.0
"""

from __future__ import annotations

from torch import nn

from lossbench.flip import FLIPLoss
from lossbench.losses.adaptive import AdaptiveLoss
from lossbench.losses.pixel import L1Loss, L2Loss
from lossbench.metrics.lpips import LPIPSL2Loss
from lossbench.metrics.msssim import MSSSIMLoss

REGISTRY: dict[str, type[nn.Module]] = {
    "l1": L1Loss,
    "l2": L2Loss,
    "msssim": MSSSIMLoss,
    "lpips_l2": LPIPSL2Loss,
    "flip": FLIPLoss,
    "adaptive": AdaptiveLoss,
}

#: Every loss the study defines, in the thesis's column order, whether or not it is built yet.
STUDY_LOSSES = ("l1", "l2", "msssim", "lpips_l2", "flip", "adaptive")


def names() -> list[str]:
    """Names of the losses that can be built."""
    return list(REGISTRY)


def build(name: str, **params) -> nn.Module:
    """Build the loss ``name`` with keyword ``params``.

    Args:
        name: One of :func:`names`.
        **params: Passed to the loss's constructor.

    Returns:
        A module whose ``forward(output, target)`` takes (N, C, H, W) tensors, C in {1, 3},
        values nominally in [0, 1], and returns a scalar.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown loss {name!r}: expected one of {', '.join(REGISTRY)}")
    return REGISTRY[name](**params)
