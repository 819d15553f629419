"""The spec of a network: what configuration, training and inference need to know about a model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn


def _valid(params: Mapping[str, Any]) -> str | None:
    return None


def _fits(params: Mapping[str, Any], task: str, crop: int) -> str | None:
    return None


@dataclass(frozen=True)
class ModelSpec:
    """A restoration network, chosen by ``model.name``.

    Attributes:
        name: Registry and configuration name (``model.name``).
        factory: ``factory(channels, **params)``: the network mapping (N, C, H, W) degraded images
            to (N, C, H, W) restorations, C = ``channels`` (3 for RGB, 1 for MRI).
        label: Name in messages (``a U-net of width 8 and depth 3``).
        schema: JSON-schema ``properties`` of the model's keys beside ``name``, each with its
            default and description; the configuration's ``model`` section is checked against them.
        width_key: Key of the channel count of the first level (in messages).
        depth_key: Key of the number of 2×2 poolings: image sides must be at least 2**depth.
        activations: ``activations(params, channels, side)``: floats one (channels, side, side)
            sample keeps for the backward pass, roughly (for the configuration's memory limit).
        parameters: ``parameters(params, channels)``: trainable weights.
        check_params: Why ``params`` are invalid (``"<key>: <reason>"``, one line), or None.
        check_crop: ``check_crop(params, task, crop)``: why the network cannot train on the
            ``crop`` × ``crop`` crops of ``task`` (``"<key>: <reason>"``, one line; the U-net's kernels
            against its feature maps), or None; asked after ``depth_key`` was checked against every
            crop.

    :meth:`check_config` asks the two hooks when the configuration is loaded, and checks every
    task's crop against :meth:`min_side` between them; the pipeline then checks the memory of
    training (:meth:`training_bytes`) against its limit.
    """

    name: str
    factory: Callable[..., nn.Module]
    label: str
    schema: Mapping[str, Any]
    width_key: str
    depth_key: str
    activations: Callable[[Mapping[str, Any], int, int], int]
    parameters: Callable[[Mapping[str, Any], int], int]
    check_params: Callable[[Mapping[str, Any]], str | None] = _valid
    check_crop: Callable[[Mapping[str, Any], str, int], str | None] = _fits

    def build(self, params: Mapping[str, Any], channels: int) -> nn.Module:
        """The network for ``channels``-channel images; ``params`` are the ``model`` section without ``name``."""
        return self.factory(channels, **params)

    def check_config(self, params: Mapping[str, Any], crops: Mapping[str, int]) -> str | None:
        """Why the ``model`` section's ``params`` (without ``name``) are invalid, for the tasks' training crops
        ``crops`` (task → ``tasks.<task>.crop``), one line from ``model`` on, or None. Called when the configuration
        is loaded.

        Checks :attr:`check_params`, then that each crop keeps a pixel after every pooling, then
        :attr:`check_crop` for each crop.
        """
        problem = self.check_params(params)
        if problem is not None:
            return f"model.{problem}"
        depth, min_side = params[self.depth_key], self.min_side(params)
        for task, crop in crops.items():
            if min_side > crop:
                return (
                    f"model.{self.depth_key}: {depth} pooling levels need crops of at least 2**{depth} = {min_side}"
                    f" pixels, but tasks.{task}.crop is {crop} ({self.depth_key} at most {crop.bit_length() - 1})"
                )
        for task, crop in crops.items():
            problem = self.check_crop(params, task, crop)
            if problem is not None:
                return f"model.{problem}"
        return None

    def min_side(self, params: Mapping[str, Any]) -> int:
        """The smallest image side the network takes: one pixel left after every pooling."""
        return 2 ** params[self.depth_key]

    def describe(self, params: Mapping[str, Any]) -> str:
        """``a U-net of width 8 and depth 3``, for messages."""
        return (
            f"a {self.label} of {self.width_key} {params[self.width_key]} and {self.depth_key} {params[self.depth_key]}"
        )

    def training_bytes(self, params: Mapping[str, Any], channels: int, crop: int, batch_size: int) -> int:
        """Rough memory of training on (batch_size, channels, crop, crop) batches.

        float32 weights, gradients and Adam's two moments, plus twice the activations the forward
        pass keeps for the backward pass: an estimate, meant to refuse absurd sizes before they take
        a machine down, not to plan memory.
        """
        return 4 * (4 * self.parameters(params, channels) + 2 * batch_size * self.activations(params, channels, crop))
