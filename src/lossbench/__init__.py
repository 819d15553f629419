"""lossbench: a reproducible comparison of loss functions for image denoising and MRI reconstruction."""

__version__ = "0.1.0"
