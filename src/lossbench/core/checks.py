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
            raise ValueError(
                f"{name}: {label} must have 1 or 3 channels, got {tensor.shape[1]} (shape {tuple(tensor.shape)})"
            )
        if not tensor.is_floating_point():
            raise ValueError(f"{name}: {label} must be a floating-point tensor, got {tensor.dtype}")
    if output.shape != target.shape:
        raise ValueError(f"{name}: output shape {tuple(output.shape)} differs from target shape {tuple(target.shape)}")


#: A loss's ``reduction``: the mean over the batch (the training loss), the sum over its images,
#: or ``none``, one value per image.
REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str, name: str) -> str:
    """``reduction`` if it is one of :data:`REDUCTIONS`; else a one-line ``ValueError`` naming the loss."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: unknown reduction {reduction!r}, expected one of {', '.join(map(repr, REDUCTIONS))}")
    return reduction


def reduce_images(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-image losses (N,) reduced: their mean, their sum, or themselves (``none``)."""
    if reduction == "none":
        return values
    return values.sum() if reduction == "sum" else values.mean()


def reduce_map(errors: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-element errors (N, ...) reduced, each image's loss being the mean of its elements.

    ``mean`` is the mean over every element, which for a batch of equally sized images is the mean
    of the per-image losses (computed in one pass, as the losses always have); ``none`` the (N,)
    per-image means; ``sum`` their sum.
    """
    if reduction == "mean":
        return errors.mean()
    return reduce_images(errors.flatten(1).mean(dim=1), reduction)
