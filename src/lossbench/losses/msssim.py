"""The MS-SSIM loss E = 1 − MS-SSIM (thesis §2.4.3), on the metric's core :func:`lossbench.metrics.msssim.ms_ssim`."""

from __future__ import annotations

import torch
from torch import nn

from lossbench.core.checks import check_reduction, reduce_images
from lossbench.core.specs import LossSpec
from lossbench.metrics.msssim import SmallImages, ms_ssim


class MSSSIMLoss(nn.Module):
    """MS-SSIM loss E = 1 − MS-SSIM (thesis §2.4.3), averaged over the batch.

    Args:
        data_range: Dynamic range of the pixel values.
        small_images: ``"error"`` (default) raises for images whose smallest side is 160 pixels
            or less; ``"reduce_scales"`` uses as many scales as fit and renormalises their weights,
            which is what training on small crops (for example 64×64, three scales) needs.
            See :func:`ms_ssim`.
        reduction: ``mean`` (over the batch), ``sum`` (over its images) or ``none`` (the (N,)
            per-image 1 − MS-SSIM).
    """

    def __init__(self, data_range: float = 1.0, small_images: SmallImages = "error", reduction: str = "mean") -> None:
        super().__init__()
        if small_images not in ("error", "reduce_scales"):
            raise ValueError(f"MSSSIMLoss: small_images must be 'error' or 'reduce_scales', got {small_images!r}")
        self.data_range = data_range
        self.small_images: SmallImages = small_images
        self.reduction = check_reduction(reduction, "MSSSIMLoss")

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss in [0, 1] for (N, C, H, W) images: a scalar, or (N,) with ``reduction="none"``."""
        similarity = ms_ssim(output, target, self.data_range, self.small_images)
        # The mean as it always was, 1 − mean MS-SSIM (bit for bit the same training runs).
        return 1.0 - similarity.mean() if self.reduction == "mean" else reduce_images(1.0 - similarity, self.reduction)

    def extra_repr(self) -> str:
        return f"data_range={self.data_range}, small_images={self.small_images!r}, reduction={self.reduction!r}"


LOSS = LossSpec("msssim", MSSSIMLoss, "MS-SSIM", own_metric="msssim", portable_params={"small_images": "reduce_scales"})
