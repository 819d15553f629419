"""Network architectures."""

from lossbench.models.unet import UNet

__all__ = ["UNet"]
