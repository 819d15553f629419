"""Network registry: ``model.name`` picks a network by the spec its module declares.

Example:
    >>> import torch
    >>> from lossbench import models
    >>> net = models.build({"name": "fastmri_unet", "chans": 4, "num_pool_layers": 2}, channels=3)
    >>> tuple(net(torch.zeros(1, 3, 16, 16)).shape)
    (1, 3, 16, 16)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from lossbench.core.specs import lookup
from lossbench.models import fastmri_unet, unet
from lossbench.models.spec import ModelSpec
from lossbench.models.unet import UNet

__all__ = ["DEFAULT", "SPECS", "ModelSpec", "UNet", "build", "names", "of", "params", "spec"]

#: Every registered network.
SPECS: dict[str, ModelSpec] = {model.name: model for model in (unet.SPEC, fastmri_unet.SPEC)}

#: The network of a ``model`` section (or a checkpoint's spec) without ``name``: the thesis's U-net.
DEFAULT = unet.SPEC.name


def names() -> list[str]:
    """Names of the networks that can be built."""
    return list(SPECS)


def spec(name: str) -> ModelSpec:
    """The spec of network ``name``; an unknown name is a one-line ValueError listing the known ones."""
    return lookup(SPECS, "model", name)


def of(section: Mapping[str, Any]) -> ModelSpec:
    """The spec of a ``model`` section (:data:`DEFAULT` where it names none, as checkpoints from before
    ``model.name``)."""
    return spec(section.get("name", DEFAULT))


def params(section: Mapping[str, Any]) -> dict[str, Any]:
    """A ``model`` section's parameters of the network: everything but ``name``."""
    return {key: value for key, value in section.items() if key != "name"}


def build(section: Mapping[str, Any], channels: int) -> nn.Module:
    """The network of a ``model`` section for (N, ``channels``, H, W) images."""
    return of(section).build(params(section), channels)
