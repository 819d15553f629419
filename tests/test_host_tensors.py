"""No registered loss builds tensors from host data once it has run (issue 31).

On a GPU a tensor made from host data (``torch.tensor``, ``torch.as_tensor``, ``torch.from_numpy``, ...)
is a host-to-device copy per training step, from pageable memory. A loss may build such constants on
its first call and cache them per device and dtype; a second forward and backward must build none.

What is counted, on the CPU:

* every Python call of a host-data constructor (:data:`HOST_FUNCTIONS`), seen by a
  :class:`~torch.overrides.TorchFunctionMode`, even one that would return its argument unchanged
  (``torch.as_tensor`` of a tensor): it is a host tensor as soon as a Python number reaches it;
* every ``aten.lift_fresh`` (:data:`HOST_OPS`), seen by a :class:`~torch.utils._python_dispatch.TorchDispatchMode`:
  the operator through which each of them, ``torch.from_numpy`` included, hands host memory to
  PyTorch, however it was reached.

Not counted: ``aten.scalar_tensor`` made by ATen itself, in ``torch.where(c, x, 0.0)`` and in autograd's
derivative formulas. ATen makes it on the computation's device (a fill whose value travels as a kernel
argument, as in ``x * 2.0``), so it is no host tensor; an explicit ``torch.scalar_tensor`` call is counted.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from lossbench import losses

from test_contract import build_loss, image_pair

#: Python-level constructors of a tensor from host data.
HOST_FUNCTIONS = frozenset(
    {
        torch.tensor,
        torch.as_tensor,
        torch.asarray,
        torch.from_numpy,
        torch.frombuffer,
        torch.scalar_tensor,
        torch.Tensor.new_tensor,
    }
)

#: The operators that take host memory into a tensor.
HOST_OPS = frozenset({torch.ops.aten.lift_fresh.default, torch.ops.aten.lift_fresh_copy.default})


def _caller() -> str:
    """The innermost frame outside torch and the counter: where a counted construction was asked for."""
    counter = {"_caller", "__torch_function__", "__torch_dispatch__"}
    for frame in reversed(traceback.extract_stack()):
        if "/torch/" not in frame.filename and frame.name not in counter:
            return f"{frame.filename}:{frame.lineno}: {frame.line}"
    return "(no Python caller)"


class _Functions(TorchFunctionMode):
    def __init__(self, seen: list[str]) -> None:
        super().__init__()
        self.seen = seen

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_FUNCTIONS:
            self.seen.append(f"{func.__name__} at {_caller()}")
        return func(*args, **(kwargs or {}))


class _Operators(TorchDispatchMode):
    def __init__(self, seen: list[str]) -> None:
        super().__init__()
        self.seen = seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in HOST_OPS:
            self.seen.append(f"{func} at {_caller()}")
        return func(*args, **(kwargs or {}))


def host_tensors(step: Callable[[], None]) -> list[str]:
    """The host-data constructions that ``step()`` asks for, one line each (what and where)."""
    seen: list[str] = []
    with _Functions(seen), _Operators(seen):
        step()
    return seen


def training_step(loss: torch.nn.Module, channels: int) -> Callable[[], None]:
    """One forward and backward of ``loss`` on a noisy pair of images, as a training step runs it."""
    output, target = image_pair(channels)

    def step() -> None:
        prediction = output.clone().requires_grad_(True)
        loss(prediction, target).backward()

    return step


def _loss_cases() -> list[tuple[str, int]]:
    return [(name, channels) for name in losses.names() for channels in losses.spec(name).channels]


@pytest.mark.parametrize(("name", "channels"), _loss_cases(), ids=lambda case: str(case))
def test_a_second_forward_and_backward_builds_no_host_tensor(name: str, channels: int) -> None:
    step = training_step(build_loss(name, channels), channels)
    step()  # the first call may cache its constants on the device
    seen = host_tensors(step)
    assert not seen, f"{name} ({channels} channel(s)) built {len(seen)} host tensor(s):\n" + "\n".join(seen)


class _L1WithConstant(torch.nn.Module):
    """l1 plus ``0 * make()``, a constant built in each forward: a loss the counter must flag."""

    def __init__(self, make: Callable[[], torch.Tensor]) -> None:
        super().__init__()
        self.make = make

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output - target).abs().mean() + 0.0 * self.make().sum()


class _ScaleInBackward(torch.autograd.Function):
    """Identity whose backward multiplies by a tensor it builds from a Python number."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * torch.tensor(1.0)


class _L1BuildingInBackward(torch.nn.Module):
    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (_ScaleInBackward.apply(output) - target).abs().mean()


#: Constants a loss might build per call, each of which the counter must see.
CONSTRUCTIONS = {
    "torch.tensor": lambda: torch.tensor(1.0),
    "torch.as_tensor of a number": lambda: torch.as_tensor(2.0, dtype=torch.float32),
    "torch.as_tensor of an array": lambda: torch.as_tensor(np.ones(3)),
    "torch.from_numpy": lambda: torch.from_numpy(np.ones(3)),
    "torch.asarray": lambda: torch.asarray([1.0, 2.0]),
    "torch.scalar_tensor": lambda: torch.scalar_tensor(3.0),
    "Tensor.new_tensor": lambda: torch.zeros(1).new_tensor([1.0]),
}


@pytest.mark.parametrize("construction", sorted(CONSTRUCTIONS))
def test_the_counter_sees_a_constant_built_in_forward(construction: str) -> None:
    step = training_step(_L1WithConstant(CONSTRUCTIONS[construction]), 3)
    step()
    assert host_tensors(step), f"{construction} in a loss's forward went unseen"


def test_the_counter_sees_a_constant_built_in_backward() -> None:
    step = training_step(_L1BuildingInBackward(), 3)
    step()
    assert any("grad * torch.tensor(1.0)" in line for line in host_tensors(step))


class _NumberArithmetic(torch.nn.Module):
    """x * 2.0, 1.0 - x, a clamp and where(c, x, 0.0): each number reaches its kernel as an argument."""

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = (output - target) * 2.0
        return torch.where(x > 0, 1.0 - x.clamp(0.0, 1.0), 0.0).mean()


def test_python_number_arithmetic_is_no_host_tensor() -> None:
    step = training_step(_NumberArithmetic(), 3)
    step()
    assert host_tensors(step) == []
