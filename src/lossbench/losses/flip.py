"""The FLIP loss (thesis §5.1): the metric's error map :func:`lossbench.flip._core.error_map` as a training loss."""

from __future__ import annotations

import torch
from torch import nn

from lossbench.core.checks import check_reduction, reduce_map
from lossbench.core.specs import LossSpec, Setting
from lossbench.flip import DEFAULT_PPD, MODES, OUT_OF_RANGE, check_inputs, gray_mode, setting_ppd
from lossbench.flip._core import error_map


class FLIPLoss(nn.Module):
    """Mean FLIP error over a batch, FLIP(reference=target, test=output), as a training loss.

    The metric clamps its inputs (and the CSF-filtered linear colours) to [0, 1], so a value
    outside the range shows as 0 or 1 and gets no gradient: a FLIP-trained denoiser leaves many
    outputs there (docs/flip_loss.md: 19 % after 400 steps), harmless once outputs are clamped for
    display and scoring, as lossbench does. ``out_of_range`` chooses:

    * ``"clamp"`` (default): the metric itself, clamps and all; with clamped outputs it optimises
      exactly the reported FLIP, and it measured best on the clamped FLIP and PSNR.
    * ``"inward"``: the same value; outside [0, 1] the gradient at the clamped value is passed on
      where a descent step moves the value back towards the range (never outwards, which would
      let values drift), so raw outputs stay nearer the range.
    * ``"extrapolate"``: FLIP's formulas continued outside [0, 1], with neither clamp (the sRGB
      curve linear below 0, every later step defined there), so an out-of-range output costs
      what the colour it encodes would cost. Equal to the metric for inputs in [0, 1] whose
      filtered colours stay in gamut.

    ``inward`` and ``extrapolate`` are documented deviations of the loss from the metric (the
    thesis, §5.1, adjusted FLIP "to work as a loss function" without saying how).

    Args:
        ppd: Pixels per degree of visual angle.
        mode: One of :data:`MODES`.
        out_of_range: One of :data:`OUT_OF_RANGE`.
        reduction: ``mean`` (over the batch), ``sum`` (of the per-image means) or ``none`` ((N,)
            per-image means, as the metric).
    """

    def __init__(
        self, ppd: float = DEFAULT_PPD, mode: str = "rgb", out_of_range: str = "clamp", reduction: str = "mean"
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"FLIPLoss: unknown mode {mode!r}, expected one of {', '.join(map(repr, MODES))}")
        if out_of_range not in OUT_OF_RANGE:
            raise ValueError(
                f"FLIPLoss: unknown out_of_range {out_of_range!r}, expected one of {', '.join(map(repr, OUT_OF_RANGE))}"
            )
        self.ppd = ppd
        self.mode = mode
        self.out_of_range = out_of_range
        self.reduction = check_reduction(reduction, "FLIPLoss")

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss from (N, C, H, W) ``output`` and ``target``, nominally in [0, 1]: a scalar, or (N,) with
        ``reduction="none"``."""
        check_inputs(output, target, self.ppd, self.mode, "FLIP loss")
        return reduce_map(error_map(output, target, float(self.ppd), self.mode, self.out_of_range), self.reduction)

    def extra_repr(self) -> str:
        return f"ppd={self.ppd}, mode={self.mode!r}, out_of_range={self.out_of_range!r}, reduction={self.reduction!r}"


def _loss_defaults(setting: Setting) -> dict[str, object]:
    # RGB tasks use the colour metric; grayscale (MRI) tasks the configured reading of thesis §3.2.
    return {"mode": "rgb" if setting.channels == 3 else gray_mode(setting), "ppd": setting_ppd(setting)}


#: Why a FLIP-trained model can trail l2's on FLIP itself, measured (docs/flip_loss.md); linked from
#: results/<experiment>/summary.md.
TRAINING_NOTES = (
    "FLIP's gradient leads the network out of the identity slowly; NVIDIA's official FLIP loss, equal to ours in value"
    " and gradient, trains the same way, and l2's model kept the lower FLIP at 1152 and 4032 steps"
    " ([docs/flip_loss.md](../../docs/flip_loss.md))"
)

LOSS = LossSpec("flip", FLIPLoss, "FLIP", defaults=_loss_defaults, own_metric="flip", training_notes=TRAINING_NOTES)
