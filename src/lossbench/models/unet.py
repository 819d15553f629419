"""The U-net of thesis Fig. 2.5 (model.name: unet): conv+ReLU blocks, max pooling, upsampling and skip connections."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lossbench.models.spec import ModelSpec


def _conv_block(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    padding = kernel_size // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size, padding=padding),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-net mapping a degraded image to its restoration.

    The encoder has ``depth`` levels of two conv+ReLU layers followed by 2×2 max pooling, the
    channel count doubling per level from ``width``; the decoder upsamples bilinearly, concatenates
    the encoder's feature map of the same level (skip connection) and applies two conv+ReLU layers.
    A final 1×1 convolution produces the output without an activation, so the network can
    represent values slightly outside [0, 1] as the l2-type losses require. With ``residual`` the
    network predicts a correction added to its input (residual learning), which converges in far
    fewer steps; the thesis's network (Fig. 2.5) has no such global skip.

    Inputs whose height or width is not a multiple of ``2**depth`` are reflect-padded and the
    output is cropped back, so any image size (Kodak's 768×512, fastMRI's 320×320) works.

    Args:
        in_channels: Input channels (3 for RGB denoising, 1 for MRI).
        out_channels: Output channels.
        width: Channels of the first level.
        depth: Number of pooling levels.
        kernel_size: Odd convolution kernel size of the conv+ReLU blocks.
        kernel_sizes: Odd kernel size per level, ``depth + 1`` of them: level 0 (full resolution,
            first encoder and last decoder block) to level ``depth`` (the bottleneck). Overrides
            ``kernel_size``; thesis §2.2.1 says the kernel size "was varied for the different layers"
            without giving the sizes.
        residual: Add the input to the output (requires ``in_channels == out_channels``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int = 32,
        depth: int = 4,
        kernel_size: int = 3,
        kernel_sizes: list[int] | None = None,
        residual: bool = False,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"UNet depth must be >= 1, got {depth}")
        if width < 1:
            raise ValueError(f"UNet width must be >= 1, got {width}")
        sizes = [kernel_size] * (depth + 1) if kernel_sizes is None else list(kernel_sizes)
        if len(sizes) != depth + 1:
            raise ValueError(
                f"UNet kernel_sizes needs depth + 1 = {depth + 1} sizes (one per level, the bottleneck last), got"
                f" {len(sizes)}: {sizes}"
            )
        if any(size < 1 or size % 2 == 0 for size in sizes):
            name = "kernel_size" if kernel_sizes is None else "kernel_sizes"
            raise ValueError(
                f"UNet {name} must be positive odd numbers, got"
                f" {kernel_sizes if kernel_sizes is not None else kernel_size}"
            )
        if residual and in_channels != out_channels:
            raise ValueError(f"a residual UNet needs in_channels == out_channels, got {in_channels} and {out_channels}")
        self.depth = depth
        self.residual = residual
        channels = [width * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList()
        previous = in_channels
        for level in range(depth):
            self.encoder.append(_conv_block(previous, channels[level], sizes[level]))
            previous = channels[level]
        self.bottleneck = _conv_block(channels[depth - 1], channels[depth], sizes[depth])
        self.reduce = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in reversed(range(depth)):
            self.reduce.append(nn.Conv2d(channels[level + 1], channels[level], kernel_size=1))
            self.decoder.append(_conv_block(2 * channels[level], channels[level], sizes[level]))
        self.head = nn.Conv2d(channels[0], out_channels, kernel_size=1)
        if residual:
            # Start as the identity, so training begins from the degraded input rather than from noise.
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Restore ``image`` of shape (N, in_channels, H, W) to (N, out_channels, H, W)."""
        if image.ndim != 4:
            raise ValueError(f"UNet expects (N, C, H, W) input, got shape {tuple(image.shape)}")
        height, width = image.shape[-2:]
        multiple = 2**self.depth
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        x = F.pad(image, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else image
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for reduce, block, skip in zip(self.reduce, self.decoder, reversed(skips)):
            # The 1×1 reduction and the bilinear upsampling are both linear and a bilinear weight sums to 1 (so the
            # bias passes through): reducing first is the same function on a quarter of the pixels, half the channels.
            x = F.interpolate(reduce(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([skip, x], dim=1))
        restored = self.head(x)[..., :height, :width]
        return image + restored if self.residual else restored


def _sizes(params: Mapping[str, Any]) -> list[int]:
    return (
        list(params["kernel_sizes"])
        if params.get("kernel_sizes") is not None
        else [params["kernel_size"]] * (params["depth"] + 1)
    )


def _check(params: Mapping[str, Any]) -> str | None:
    key = "kernel_sizes" if params.get("kernel_sizes") is not None else "kernel_size"
    sizes = _sizes(params)
    if any(size % 2 == 0 for size in sizes):
        return (
            f"{key}: kernel sizes must be odd (the padding keeps the image size), got"
            f" {sizes if key == 'kernel_sizes' else sizes[0]}"
        )
    if len(sizes) != params["depth"] + 1:
        return (
            f"kernel_sizes: expected depth + 1 = {params['depth'] + 1} sizes (one per level, the bottleneck last), got"
            f" {len(sizes)}"
        )
    return None


def _check_crop(params: Mapping[str, Any], task: str, crop: int) -> str | None:
    """The kernels against the feature maps of ``task``'s training crops.

    A kernel wider than 2·side − 1 on a side × side feature map has taps that reach only the zero
    padding for every output pixel: they get no gradient and keep their random initial weights,
    which then act on real pixels when validation feeds larger images.
    """
    depth, sizes = params["depth"], _sizes(params)
    key = "kernel_sizes" if params.get("kernel_sizes") is not None else "kernel_size"
    # The U-net reflect-pads its input to a multiple of 2**depth; level l works on that side / 2**l.
    padded = -(-crop // 2**depth) * 2**depth
    for level in reversed(range(depth + 1)):  # the deepest level first: its maps are the smallest
        side = padded // 2**level
        if sizes[level] > 2 * side - 1:
            where = f"{key}.{level}" if key == "kernel_sizes" else key
            return (
                f"{where}: {sizes[level]} is wider than the {2 * side - 1} pixels (2·{side} − 1) a kernel can use on"
                f" the {side}×{side} feature maps of level {level} (tasks.{task}.crop {crop} pooled {level} times);"
                f" expected at most {2 * side - 1}, or a larger crop"
            )
    return None


def _parameters(params: Mapping[str, Any], channels: int) -> int:
    width, depth, sizes = params["width"], params["depth"], _sizes(params)
    levels = [width * 2**level for level in range(depth + 1)]

    def block(inputs: int, outputs: int, kernel: int) -> int:  # two convolutions with biases
        return kernel * kernel * (inputs * outputs + outputs * outputs) + 2 * outputs

    count = block(levels[depth - 1], levels[depth], sizes[depth]) + channels * levels[0] + channels
    previous = channels
    for level in range(depth):
        # Encoder block, the 1×1 reduction of the level below, decoder block.
        count += (
            block(previous, levels[level], sizes[level])
            + levels[level + 1] * levels[level]
            + levels[level]
            + block(2 * levels[level], levels[level], sizes[level])
        )
        previous = levels[level]
    return count


def _activations(params: Mapping[str, Any], channels: int, side: int) -> int:
    # About ten feature maps per level (two blocks of conv and ReLU, the skip and the upsampled map), two at the
    # bottleneck.
    width, depth = params["width"], params["depth"]
    return (
        sum(10 * width * 2**level * (side // 2**level) ** 2 for level in range(depth))
        + 2 * width * 2**depth * (side // 2**depth) ** 2
    )


def _build(channels: int, **params: Any) -> UNet:
    return UNet(channels, channels, **params)


SPEC = ModelSpec(
    name="unet",
    factory=_build,
    label="U-net",
    schema={
        "width": {
            "type": "integer",
            "minimum": 1,
            "default": 32,
            "description": "Channels of the first level, doubling per level.",
        },
        "depth": {
            "type": "integer",
            "minimum": 1,
            "default": 4,
            "description": (
                "Pooling levels; 2**depth may not exceed any task's crop, and width and depth together must fit the"
                " training memory limit (checked)."
            ),
        },
        "kernel_size": {
            "type": "integer",
            "minimum": 1,
            "default": 3,
            "description": "Odd kernel size of every conv+ReLU layer (unless kernel_sizes is set).",
        },
        "kernel_sizes": {
            "description": (
                "Odd kernel size per level, depth + 1 of them (full resolution first, the bottleneck last); overrides"
                " kernel_size. Thesis §2.2.1: the kernel size 'was varied for the different layers', sizes not given."
            ),
            "type": ["array", "null"],
            "items": {"type": "integer", "minimum": 1},
            "default": None,
        },
        "residual": {
            "type": "boolean",
            "default": False,
            "description": "Predict a correction added to the input (not in the thesis's network).",
        },
    },
    width_key="width",
    depth_key="depth",
    activations=_activations,
    parameters=_parameters,
    check_params=_check,
    check_crop=_check_crop,
)
