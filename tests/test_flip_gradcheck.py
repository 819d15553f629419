"""Float64 ``torch.autograd.gradcheck`` of the FLIP metric and loss: analytic gradients against finite differences.

The images are small and well inside [0, 1], away from FLIP's clamps, so that every step is
differentiable there; each mode runs at the thesis's 67.02 and the demo's 22.3 pixels per degree.
gradcheck's fast mode compares one random projection of the Jacobian, which any wrong gradient
term changes, at a fraction of the full Jacobian's cost (about 0.3 s a check).
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from lossbench.flip import DEFAULT_PPD, OUT_OF_RANGE, flip, flip_map
from lossbench.losses.flip import FLIPLoss

#: (mode, channels): the colour metric and each grayscale reading.
CASES = [("rgb", 3), ("gray_thesis", 1), ("gray_lab", 1), ("gray_replicated", 1)]
PPDS = [DEFAULT_PPD, 22.3]


def _images(channels: int, low: float = 0.2, high: float = 0.8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, target): two independent 12×12 float64 images uniform in [low, high], both needing gradients."""
    generator = torch.Generator().manual_seed(seed)
    return tuple(
        (
            low + (high - low) * torch.rand(1, channels, 12, 12, generator=generator, dtype=torch.float64)
        ).requires_grad_()
        for _ in range(2)
    )


@pytest.mark.parametrize("ppd", PPDS)
@pytest.mark.parametrize("mode, channels", CASES)
def test_metric_gradients_match_finite_differences(mode: str, channels: int, ppd: float) -> None:
    output, target = _images(channels)
    assert flip_map(output, target, ppd, mode).dtype == torch.float64
    assert gradcheck(lambda o, t: flip_map(o, t, ppd, mode), (output, target), fast_mode=True)
    assert gradcheck(lambda o, t: flip(o, t, ppd, mode), (output, target), fast_mode=True)


@pytest.mark.parametrize("out_of_range", OUT_OF_RANGE)
@pytest.mark.parametrize("ppd", PPDS)
@pytest.mark.parametrize("mode, channels", CASES)
def test_loss_gradients_match_finite_differences(mode: str, channels: int, ppd: float, out_of_range: str) -> None:
    loss = FLIPLoss(ppd, mode, out_of_range)
    output, target = _images(channels)
    assert loss(output, target).dtype == torch.float64
    assert gradcheck(loss, (output, target), fast_mode=True)


@pytest.mark.parametrize("out_of_range", ["clamp", "extrapolate"])
@pytest.mark.parametrize("mode, channels", CASES)
def test_loss_gradients_outside_the_range_match_finite_differences(mode: str, channels: int, out_of_range: str) -> None:
    # inward is left out: outside [0, 1] its gradient is, by design, not the derivative of its clamped value.
    generator = torch.Generator().manual_seed(1)
    distance = 0.05 + 0.25 * torch.rand(1, channels, 12, 12, generator=generator, dtype=torch.float64)
    above = torch.rand(1, channels, 12, 12, generator=generator) < 0.5
    output = torch.where(above, 1.0 + distance, -distance).requires_grad_()
    _, target = _images(channels)
    loss = FLIPLoss(DEFAULT_PPD, mode, out_of_range)
    assert loss(output, target).dtype == torch.float64
    assert gradcheck(loss, (output, target), fast_mode=True)
