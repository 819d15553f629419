"""Input validation shared by every loss and metric, so that all of them fail the same clear way."""

from __future__ import annotations

import torch


def check_image_pair(output: torch.Tensor, target: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``output`` and ``target`` are a valid image pair.

    Args:
        output: Tensor of shape (N, C, H, W) with C in {1, 3}.
        target: Tensor of the same shape as ``output``.
        name: Name of the loss or metric, used in the message.
    """
    for label, tensor in (("output", output), ("target", target)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name}: {label} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.ndim != 4:
            raise ValueError(f"{name}: {label} must have shape (N, C, H, W), got {tuple(tensor.shape)}")
        if tensor.shape[1] not in (1, 3):
            raise ValueError(f"{name}: {label} must have 1 or 3 channels, got {tensor.shape[1]} (shape {tuple(tensor.shape)})")
        if not tensor.is_floating_point():
            raise ValueError(f"{name}: {label} must be a floating-point tensor, got {tensor.dtype}")
    if output.shape != target.shape:
        raise ValueError(f"{name}: output shape {tuple(output.shape)} differs from target shape {tuple(target.shape)}")


def check_range(tensor: torch.Tensor, name: str, label: str, low: float = -0.5, high: float = 1.5) -> None:
    """Raise ``ValueError`` if ``tensor`` lies far outside the nominal [0, 1] range.

    The tolerance band allows for noisy inputs and unclamped network outputs, but catches
    images passed in [0, 255] or [-1, 1] by mistake.
    """
    lo, hi = float(tensor.detach().amin()), float(tensor.detach().amax())
    if lo < low or hi > high:
        raise ValueError(
            f"{name}: {label} values span [{lo:.3g}, {hi:.3g}], expected images nominally in [0, 1]"
        )
