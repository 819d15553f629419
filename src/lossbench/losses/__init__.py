"""Loss registry: every training loss is built by name from the spec its module declares.

Example:
    >>> import torch
    >>> from lossbench import losses
    >>> loss = losses.build("l1")
    >>> float(loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)))
    0.0
"""

from __future__ import annotations

from torch import nn

from lossbench.flip import LOSS as FLIP
from lossbench.losses import adaptive, pixel
from lossbench.metrics import lpips, msssim
from lossbench.specs import LossSpec, tex_escape

#: Every registered loss, the thesis's six first in its column order.
SPECS: dict[str, LossSpec] = {spec.name: spec for spec in (pixel.L1, pixel.L2, msssim.LOSS, lpips.LOSS, FLIP, adaptive.SPEC)}

#: The thesis's losses, in its column order: the columns every table has.
STUDY_LOSSES = tuple(name for name, spec in SPECS.items() if spec.thesis)


def register(spec: LossSpec) -> None:
    """Add ``spec`` (a loss defined outside the package, e.g. from the configuration) to the registry.

    Raises:
        ValueError: ``spec.name`` is taken by another loss.
    """
    if spec.name in SPECS and SPECS[spec.name] != spec:
        raise ValueError(f"loss {spec.name!r} is already registered")
    SPECS[spec.name] = spec


def names() -> list[str]:
    """Names of the losses that can be built."""
    return list(SPECS)


def spec(name: str) -> LossSpec:
    """The spec of loss ``name``.

    Raises:
        ValueError: unknown name (one line listing the known ones).
    """
    if name not in SPECS:
        raise ValueError(f"unknown loss {name!r}: expected one of {', '.join(SPECS)}")
    return SPECS[name]


def label(name: str, lpips_pretrained: bool = True) -> str:
    """Column, panel or legend label of loss ``name`` (its name if it is not registered in this process)."""
    return SPECS[name].display(lpips_pretrained) if name in SPECS else name


def tex_label(name: str, lpips_pretrained: bool = True) -> str:
    """LaTeX label of loss ``name`` (see :meth:`LossSpec.tex_display`)."""
    return SPECS[name].tex_display(lpips_pretrained) if name in SPECS else tex_escape(name)


def build(name: str, **params) -> nn.Module:
    """Build the loss ``name`` with keyword ``params``.

    Args:
        name: One of :func:`names`.
        **params: Passed to the loss's constructor.

    Returns:
        A module whose ``forward(output, target)`` takes (N, C, H, W) tensors, C in {1, 3},
        values nominally in [0, 1], and returns a scalar.
    """
    return spec(name).factory(**params)
