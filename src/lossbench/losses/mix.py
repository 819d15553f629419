"""Zhao et al.'s mix loss: a weighted sum of registered losses, MS-SSIM and l1 by default.

Zhao, Gallo, Frosio and Kautz (2017), "Loss Functions for Image Restoration with Neural
Networks", eq. 12: L_mix = α · L_MS-SSIM + (1 − α) · G_σ · L_l1 with α = 0.84, where G_σ weights
the per-pixel l1 error with the Gaussian of MS-SSIM's coarsest scale. A normalised Gaussian
filter keeps the mean of the error map except near the borders, so the mean of G_σ · |error|
over an image equals the plain mean l1 up to border effects; this module uses the plain l1 term
of :mod:`lossbench.losses.pixel`, and the MS-SSIM term is :mod:`lossbench.metrics.msssim`'s
(11-tap window, σ = 1.5, as the thesis's), not their per-scale Gaussians. Their released Caffe
layer (NVlabs/PL4NN, ``src/loss.py``, ``MSSSIML1``) defaults to α = 0.025 rather than the
paper's 0.84; the paper's value is used here.

Not one of the thesis's losses: a study includes it by listing ``mix`` under ``losses``, and the
tables then gain its column, without a thesis value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lossbench.core.checks import check_reduction
from lossbench.core.specs import LOSSES, LossSpec, Setting, lookup

#: The paper's α = 0.84 on MS-SSIM, 1 − α on l1.
DEFAULT_WEIGHTS: dict[str, float] = {"msssim": 0.84, "l1": 0.16}


def check_params(params: Mapping[str, Any]) -> str | None:
    """Why configured mix ``params`` are invalid (one line), or None."""
    weights = params.get("weights", DEFAULT_WEIGHTS)
    if not isinstance(weights, Mapping) or not weights:
        return f"weights: expected a mapping of loss names to weights, got {weights!r}"
    for term, weight in weights.items():
        if term == "mix" or term not in LOSSES:
            return (
                f"weights.{term}: not a loss to mix (expected one of"
                f" {', '.join(name for name in LOSSES if name != 'mix')})"
            )
        if not (isinstance(weight, (int, float)) and weight >= 0):
            return f"weights.{term}: expected a number >= 0, got {weight!r}"
    term_params = params.get("term_params", {})
    if not isinstance(term_params, Mapping):
        return f"term_params: expected a mapping of loss names to parameters, got {term_params!r}"
    for term in term_params:
        if term not in weights:
            return f"term_params.{term}: {term!r} is not among the weights ({', '.join(weights)})"
    return None


class MixLoss(nn.Module):
    """``Σ weight · loss(output, target)`` over the package's losses named in ``weights``.

    Args:
        weights: Loss name → weight ≥ 0; default α = 0.84 on MS-SSIM and 0.16 on l1.
        term_params: Loss name → parameters of that term (e.g. ``{msssim: {small_images:
            reduce_scales}}`` for crops of 160 pixels or less).
        channels: Channels C of the images, passed to terms with per-channel parameters.
        reduction: ``mean`` (over the batch), ``sum`` (over its images) or ``none`` ((N,) per
            image), passed to every term.
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        term_params: Mapping[str, Mapping[str, Any]] | None = None,
        channels: int = 3,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        term_params = dict(term_params or {})
        problem = check_params({"weights": weights, "term_params": term_params})
        if problem is not None:
            raise ValueError(f"mix: {problem}")
        self.weights = weights
        self.reduction = check_reduction(reduction, "mix")
        # Every loss reduces by its mean unless told otherwise: the default leaves a term's parameters as configured.
        reduced = {} if reduction == "mean" else {"reduction": reduction}
        self.terms = nn.ModuleDict(
            {
                term: lookup(LOSSES, "loss", term).build({**term_params.get(term, {}), **reduced}, channels)
                for term in weights
            }
        )

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss from (N, C, H, W) ``output`` and ``target``, nominally in [0, 1]: a scalar, or (N,) with
        ``reduction="none"``."""
        return sum(weight * self.terms[term](output, target) for term, weight in self.weights.items())

    def extra_repr(self) -> str:
        return f"weights={self.weights}, reduction={self.reduction!r}"


@dataclass(frozen=True)
class _MixSpec(LossSpec):
    """The mix loss's spec: each term gets its own task defaults (FLIP's grayscale mode on MRI, ...)."""

    def params(self, setting: Setting, configured: Mapping[str, Any] | None = None) -> dict[str, Any]:
        params = super().params(setting, configured)
        term_params = params.get("term_params", {})
        params["term_params"] = {
            term: lookup(LOSSES, "loss", term).params(setting, term_params.get(term))
            for term in params.get("weights", DEFAULT_WEIGHTS)
        }
        return params


SPEC = _MixSpec(
    "mix",
    MixLoss,
    "Mix (MS-SSIM+l1)",
    tex=r"Mix (MS-SSIM$+l_1$)",
    channel_param="channels",
    portable_params={"term_params": {"msssim": {"small_images": "reduce_scales"}}},
    thesis=False,
    check_params=check_params,
)
