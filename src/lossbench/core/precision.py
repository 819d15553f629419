"""The scope in which the losses' and metrics' float32 convolutions and matrix products run without TF32, forward and
backward.

Below the training code: a loss or metric uses it without depending on device selection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch.autograd.function import once_differentiable


def float32_precision_flags(tf32: bool) -> list[tuple[object, str, object]]:
    """(owner, attribute, value) that let (``tf32``) or keep (IEEE) float32 cuDNN convolutions and
    cuBLAS matrix products from rounding their inputs to TF32."""
    # torch >= 2.9 has a per-operator API, which must not be mixed with the legacy flags (an error);
    # older wheels (for older drivers) only have the legacy flags.
    if hasattr(torch.backends.cudnn, "conv"):
        value = "tf32" if tf32 else "ieee"
        return [
            (torch.backends.cudnn.conv, "fp32_precision", value),
            (torch.backends.cuda.matmul, "fp32_precision", value),
        ]
    return [(torch.backends.cudnn, "allow_tf32", tf32), (torch.backends.cuda.matmul, "allow_tf32", tf32)]


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """Run float32 convolutions and matrix products inside in full float32 (no TF32), restoring the caller's settings
    after.

    Ampere and later GPUs round float32 convolution inputs to TF32 (10-bit mantissa) by default,
    which shifts loss values such as MS-SSIM by up to 1e-2; matrix products do so when
    ``trainer.tf32`` (:func:`configure_cuda_kernels`) or ``torch.set_float32_matmul_precision("high")``
    asks for it. The U-net may keep TF32 for speed. The settings are global, so code inside must not depend on the
    caller's TF32 choice.
    """
    flags = float32_precision_flags(tf32=False)
    previous = [getattr(owner, name) for owner, name, _ in flags]
    for owner, name, value in flags:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for (owner, name, _), value in zip(flags, previous):
            setattr(owner, name, value)


class _IEEEFloat32(torch.autograd.Function):
    """Runs a function's forward and backward inside :func:`ieee_float32` (see :func:`ieee_float32_autograd`)."""

    @staticmethod
    def forward(ctx, function, *inputs: torch.Tensor) -> torch.Tensor:
        # The function's own graph is built here and kept on ctx, so that backward replays it in scope.
        with torch.enable_grad(), ieee_float32():
            leaves = [x.detach().requires_grad_(x.requires_grad) for x in inputs]
            output = function(*leaves)
        ctx.graph = (leaves, output)
        return output.detach()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if ctx.graph is None:
            raise RuntimeError("ieee_float32_autograd: backward a second time; its graph was freed by the first")
        # Freed now rather than with the caller's graph: the function's activations are done with.
        (leaves, output), ctx.graph = ctx.graph, None
        wanted = [leaf for leaf in leaves if leaf.requires_grad]
        with ieee_float32():
            grads = iter(torch.autograd.grad(output, wanted, grad, allow_unused=True))
        return (None, *(next(grads) if leaf.requires_grad else None for leaf in leaves))


def ieee_float32_autograd(function: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    """``function(*inputs)`` with its forward and its backward inside :func:`ieee_float32`.

    Autograd runs the backward after the caller's scope has closed, under whatever TF32 setting
    holds then; this replays the function's graph in full float32. ``function`` must return one
    tensor and depend on no tensor that needs a gradient other than ``inputs``; it is once
    differentiable, and its graph is freed by the first backward (a second one, as after
    ``retain_graph=True``, raises an error). Without a gradient to compute it is simply
    called in scope.
    """
    if not (torch.is_grad_enabled() and any(x.requires_grad for x in inputs)):
        with ieee_float32():
            return function(*inputs)
    return _IEEEFloat32.apply(function, *inputs)
