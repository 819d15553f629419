"""The package's losses: every training loss is built by name from the spec its module declares.

Example:
    >>> import torch
    >>> from lossbench import losses
    >>> loss = losses.build("l1")
    >>> float(loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)))
    0.0
"""

from __future__ import annotations

from torch import nn

from lossbench.core.specs import LOSSES, LossSpec, declared, image_arguments, import_object, lookup

#: The modules that declare the package's losses (every :class:`LossSpec` at their top level), in
#: the tables' column order: the thesis's six first, then the opt-in ones. A new loss module is one
#: line here (docs/extending.md).
MODULES = (
    "lossbench.losses.pixel",
    "lossbench.losses.msssim",
    "lossbench.losses.lpips_l2",
    "lossbench.losses.flip",
    "lossbench.losses.adaptive",
    "lossbench.losses.mix",
    "lossbench.losses.ssim",
    "lossbench.losses.haarpsi",
    "lossbench.losses.dists",
)

#: The package's losses, in the order of :data:`MODULES`; a configuration's own join them in its registry
#: (:class:`lossbench.registry.Registry`), never here.
SPECS: dict[str, LossSpec] = LOSSES
SPECS.update(declared(MODULES, LossSpec))

#: The thesis's losses, in its column order: the columns every table has.
STUDY_LOSSES = tuple(name for name, spec in SPECS.items() if spec.thesis)


def from_module(name: str, path: str, label: str | None = None) -> LossSpec:
    """The spec of a user's loss ``name``, the class at ``path`` (``"package.module:Class"``).

    The class follows the loss protocol: a ``torch.nn.Module`` whose constructor takes the
    configured ``params`` as keywords and whose ``forward(output, target)`` takes (N, C, H, W)
    tensors nominally in [0, 1] and returns a scalar to minimise. Its parameters, if any, are
    trained with the network.

    Raises:
        ValueError: one line naming ``path``: not importable, no such class, or not the protocol.
    """
    factory = import_object(path)
    if not (isinstance(factory, type) and issubclass(factory, nn.Module)):
        raise ValueError(
            f"{path} is not a torch.nn.Module subclass (a loss is a module whose forward(output, target) returns a"
            " scalar)"
        )
    if image_arguments(factory) < 2:
        raise ValueError(
            f"{path}.forward takes {image_arguments(factory)} image argument(s), expected forward(output, target)"
        )
    # The configuration does not say what identical images cost: minimum=None, nothing to check.
    return LossSpec(name, factory, label or name, thesis=False, minimum=None)


def names() -> list[str]:
    """Names of the package's losses."""
    return list(SPECS)


def spec(name: str) -> LossSpec:
    """The spec of the package's loss ``name``; an unknown name is a one-line ValueError listing the known ones."""
    return lookup(SPECS, "loss", name)


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
