"""One optimisation step of the training loop: the learning rate of the step, the forward and backward pass under
the trainer's autocast and memory format, and the check that loss, gradients and weights stay finite."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from lossbench.train.run_settings import Schedule, Trainer


class NonFiniteError(RuntimeError):
    """The loss or a gradient became NaN or infinite (with ``trainer.nonfinite: stop``)."""


def _autocast(device: torch.device, trainer: Trainer) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=trainer.autocast == "bfloat16")


def _to_device(tensor: torch.Tensor, device: torch.device, trainer: Trainer) -> torch.Tensor:
    tensor = tensor.to(device, non_blocking=True)
    return tensor.contiguous(memory_format=torch.channels_last) if trainer.channels_last else tensor


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    maxima = [tensor.detach().abs().amax() for tensor in tensors]
    return not maxima or bool(torch.isfinite(torch.stack(maxima)).all())  # one device sync for all


def learning_rate_factor(schedule: Schedule, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate for the optimisation step ``step`` (0-based) of ``total_steps``.

    A linear warm-up over the first ``warmup`` fraction of the steps, then ``constant`` (1) or a
    ``cosine`` decay from 1 to ``final`` at the last step. A function of the step alone, so that a
    resumed run, whose step count is in its checkpoint, follows the same rates bit for bit.

    Args:
        schedule: ``trainer.schedule``: ``kind`` (``constant`` or ``cosine``), ``warmup`` and
            ``final`` (fractions in [0, 1]).
        step: Steps done so far.
        total_steps: Steps of the whole run.
    """
    warmup = schedule.warmup * total_steps
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule.kind == "constant":
        return 1.0
    progress = (step - warmup) / max(total_steps - 1 - warmup, 1)
    return schedule.final + (1.0 - schedule.final) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _step(
    forward: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    parameters: list[nn.Parameter],
    batch: tuple[torch.Tensor, torch.Tensor],
    autocast: contextlib.AbstractContextManager,
    check: bool = True,
) -> tuple[float, str | None]:
    """One optimisation step, taken only if the loss (always) and every gradient (with ``check``) are finite.

    Args:
        check: Check the gradients before and the weights after the optimiser step (one device sync each); without
            it only the loss is checked, whose value the curve needs anyway.

    Returns:
        The loss value, and None or what was not finite: ``loss <value>``, ``gradient``, or
        ``weights after the optimiser step`` (finite gradients can still overflow Adam's moments).
    """
    degraded, clean = batch
    optimizer.zero_grad(set_to_none=True)
    with autocast:
        loss = loss_fn(forward(degraded), clean)
    value = float(loss.detach())
    if not math.isfinite(value):
        return value, f"loss {value}"
    loss.backward()
    if check and not _all_finite([p.grad for p in parameters if p.grad is not None]):
        return value, f"gradient (loss {value})"
    optimizer.step()
    if check and not _all_finite(parameters):
        return value, f"weights after the optimiser step (loss {value})"
    return value, None
