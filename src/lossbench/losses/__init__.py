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

from lossbench.core.specs import LOSSES, LossSpec, add, declared, image_arguments, import_object, lookup, register_own

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
)

#: Every registered loss, in the order of :data:`MODULES`.
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


def register(spec: LossSpec) -> None:
    """Add ``spec`` (a loss defined outside the package, e.g. from the configuration) to the registry.

    Raises:
        ValueError: ``spec.name`` is already a different loss.
    """
    add(SPECS, "loss", spec)


def register_config(config: dict) -> None:
    """Register the configuration's own losses (``losses.<name>.module``), in this process.

    Jobs run in processes of their own: every adapter that builds or labels losses calls this
    with ``snakemake.config`` (the configuration :func:`lossbench.pipeline.config.validate` checked).

    Raises:
        ValueError: one line naming the key and the module, see :func:`from_module`.
    """
    register_own(
        config["losses"],
        "losses",
        lambda name, settings: from_module(name, settings["module"], settings.get("label")),
        register,
    )


def names() -> list[str]:
    """Names of the losses that can be built."""
    return list(SPECS)


def spec(name: str) -> LossSpec:
    """The spec of loss ``name``; an unknown name is a one-line ValueError listing the known ones."""
    return lookup(SPECS, "loss", name)


def own_metrics() -> dict[str, str]:
    """Metric → the registered loss that optimises it (:attr:`LossSpec.own_metric`), which the thesis expects to win
    it."""
    return {spec.own_metric: name for name, spec in SPECS.items() if spec.own_metric is not None}


def label(name: str, lpips_pretrained: bool = True) -> str:
    """Column, panel or legend label of loss ``name``; an unregistered name is a one-line ValueError (see
    :func:`spec`)."""
    return spec(name).display(lpips_pretrained)


def tex_label(name: str, lpips_pretrained: bool = True) -> str:
    """LaTeX label of loss ``name`` (see :meth:`LossSpec.tex_display`); an unregistered name is a one-line
    ValueError."""
    return spec(name).tex_display(lpips_pretrained)


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
