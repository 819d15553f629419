"""Pixel-wise metrics per image: l1, l2 (means over pixels and channels) and PSNR (data range 1)."""

from __future__ import annotations

import torch

from lossbench.core.checks import check_image_pair
from lossbench.core.specs import MetricInfo, MetricSpec


def l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image, (N, C, H, W) -> (N,)."""
    check_image_pair(output, target, "l1")
    return (output - target).abs().flatten(1).mean(1)


def l2(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, (N, C, H, W) -> (N,)."""
    check_image_pair(output, target, "l2")
    return (output - target).square().flatten(1).mean(1)


def psnr(output: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (thesis eq. 2.6), (N, C, H, W) -> (N,).

    Identical images give ``inf``.
    """
    mse = l2(output, target).double()
    return (10.0 * torch.log10(data_range**2 / mse)).to(output.dtype)


L1 = MetricSpec(
    "l1",
    l1,
    MetricInfo("1000·l1", higher_is_better=False, scale=1000.0, decimals=2, tex=r"$1000\cdot l_1$"),
    differentiable=True,
    reference="mean absolute error over pixels and channels (thesis §2.4.1, eq. 2.4)",
)
L2 = MetricSpec(
    "l2",
    l2,
    MetricInfo("1000·l2", higher_is_better=False, scale=1000.0, decimals=2, tex=r"$1000\cdot l_2$"),
    differentiable=True,
    reference="mean squared error over pixels and channels (thesis §2.4.2, eq. 2.5)",
)
PSNR = MetricSpec(
    "psnr",
    psnr,
    MetricInfo("PSNR", higher_is_better=True, decimals=2, unit="dB"),
    best=float("inf"),
    differentiable=True,
    reference="peak signal-to-noise ratio, 10·log10(1 / l2), data range 1 (thesis §2.4.2, eq. 2.6)",
)
