"""Barron's general and adaptive robust loss (thesis §2.4.5, eqs. 2.12-2.14).

The general loss is

    rho(x, alpha, c) = |alpha - 2| / alpha * (((x / c)^2 / |alpha - 2| + 1)^(alpha / 2) - 1)

with its limits at alpha = 2 (l2), 0 (Cauchy / log) and -inf (Welsch). The adaptive loss is
the negative log-likelihood of the density p(x) = exp(-rho(x, alpha, c)) / (c Z(alpha)), with
alpha and c learnt per channel alongside the network.

``log_partition`` interpolates log Z(alpha) from a table that
:mod:`lossbench.losses.log_partition_table` computes by numerical integration and ships as
``log_partition.npz``.

Example:
    >>> import torch
    >>> loss = AdaptiveLoss(num_channels=3)
    >>> value = loss(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    >>> tuple(loss.alpha.shape), float(loss.alpha[0])
    ((3,), 1.0)
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lossbench.core.checks import check_image_pair, check_reduction, reduce_map
from lossbench.core.specs import LossSpec

#: The shipped table of log Z(alpha) at the knots of :func:`alpha_to_knot_coordinate`.
TABLE_PATH = Path(__file__).with_name("log_partition.npz")

#: Exponents (p, q) of the knot reparametrisation alpha = 2 (1 - (1 - t^q)^p), t in [0, 1].
#: log Z behaves like -(2 - alpha) log(2 - alpha) / 4 near alpha = 2, whose derivative is
#: unbounded; p = 4 makes that term smooth in t. Near alpha = 0 the derivatives of log Z grow
#: fast (its integrand has 1/x^2 tails), and q = 2 packs knots there while keeping log Z an even,
#: smooth function of t. Uniform knots in t then give a ~1e-10 accurate cubic Hermite spline.
KNOT_EXPONENTS = (4, 2)

# Below this |t| the ratio expm1(t) / t is evaluated by its Taylor series, whose gradient stays
# accurate where the quotient's gradient would lose digits to cancellation (relative error
# ~2 eps / |t|, so ~2e-6 in float32 at the threshold).
_SERIES_THRESHOLD = 0.1
# Taylor coefficients 1 / (k + 1)!, k = 0..8: the truncation error at the threshold is ~3e-16.
_SERIES_COEFFICIENTS = tuple(1.0 / math.factorial(k + 1) for k in range(9))


def _promote(*values: torch.Tensor | float) -> list[torch.Tensor]:
    """Convert numbers and tensors to tensors of one common floating dtype and device.

    Python numbers adopt the dtype of the tensors given; with no tensors, the default dtype.
    """
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    dtype, device = torch.get_default_dtype(), None
    if tensors:
        device = tensors[0].device
        common = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
        if common.is_floating_point:
            dtype = common
    # Only Python numbers become new tensors (host tensors, copied to the device): AdaptiveLoss passes tensors
    # alone, so a training step builds none (tests/test_host_tensors.py).
    return [
        v.to(dtype=dtype, device=device)
        if isinstance(v, torch.Tensor)
        else torch.as_tensor(v, dtype=dtype, device=device)
        for v in values
    ]


def _expm1_ratio(t: torch.Tensor) -> torch.Tensor:
    """expm1(t) / t, equal to 1 at t = 0, with accurate values and gradients everywhere."""
    small = t.abs() < _SERIES_THRESHOLD
    # Both branches are evaluated everywhere, so each gets inputs that are safe for it: a NaN
    # in the branch torch.where discards would still poison the gradient.
    t_direct = torch.where(small, torch.ones_like(t), t)
    t_series = torch.where(small, t, torch.zeros_like(t))
    series = torch.full_like(t, _SERIES_COEFFICIENTS[-1])
    for coefficient in reversed(_SERIES_COEFFICIENTS[:-1]):
        series = series * t_series + coefficient
    return torch.where(small, series, torch.expm1(t_direct) / t_direct)


def rho(x: torch.Tensor | float, alpha: torch.Tensor | float, scale: torch.Tensor | float) -> torch.Tensor:
    """General robust loss rho(x, alpha, c) (thesis eq. 2.13, Barron eq. 1), elementwise.

    Writing z = (x / c)^2, b = |alpha - 2| and L = log1p(z / b), the general case equals
    (b / 2) L expm1(alpha L / 2) / (alpha L / 2). In that form alpha = 0 (where the ratio is 1)
    and alpha = 1 need no special case, and values and gradients are continuous across both.
    Only b is nudged away from 0 by the dtype's machine epsilon, which leaves alpha = 2 exact
    (the result is z / 2 for any b there) and its alpha-gradient finite, although the true one
    diverges logarithmically. alpha = -inf gives the Welsch loss 1 - exp(-z / 2).

    Args:
        x: Residuals, any shape, any real value.
        alpha: Shape parameter, broadcastable with ``x``, in [-inf, 2] (values above 2 are
            valid too, growing faster than l2).
        scale: Scale c > 0, broadcastable with ``x``.

    Returns:
        rho of the broadcast shape, >= 0, with value 0 at x = 0. Gradients with respect to
        all three inputs are finite wherever the value is.
    """
    x, alpha, scale = _promote(x, alpha, scale)
    z = (x / scale).square()
    welsch = alpha == -math.inf
    alpha_finite = torch.where(welsch, torch.zeros_like(alpha), alpha)
    b = (alpha_finite - 2.0).abs().clamp_min(torch.finfo(alpha.dtype).eps)
    log_term = torch.log1p(z / b)
    general = 0.5 * b * log_term * _expm1_ratio(0.5 * alpha_finite * log_term)
    return torch.where(welsch, -torch.expm1(-0.5 * z), general)


def alpha_to_knot_coordinate(alpha: torch.Tensor) -> torch.Tensor:
    """Map alpha in [0, 2] to the spline coordinate t in [0, 1], inverse of the knot curve.

    t = (1 - (1 - alpha / 2)^(1/p))^(1/q), computed with log1p / expm1 so that alpha near 0
    keeps its precision. The slope of t is infinite at both ends. At alpha = 0 a tiny offset
    under the root keeps it finite, and the spline's zero slope there turns the product into
    the correct one-sided derivative of log Z. At alpha = 2, where the derivative of log Z
    itself is infinite, t = 1 is returned directly with zero gradient.

    Args:
        alpha: Any shape, values in [0, 2].

    Returns:
        t, same shape and dtype, in [0, 1].
    """
    p, q = KNOT_EXPONENTS
    interior = (alpha >= 0.0) & (alpha < 2.0)
    safe_alpha = torch.where(interior, alpha, torch.zeros_like(alpha))
    inner = -torch.expm1(torch.log1p(-0.5 * safe_alpha) / p)
    t = (inner + torch.finfo(alpha.dtype).tiny) ** (1.0 / q)
    return torch.where(interior, t, (alpha >= 2.0).to(alpha.dtype))


def knot_coordinate_to_alpha(t: torch.Tensor) -> torch.Tensor:
    """Map the spline coordinate t in [0, 1] to alpha = 2 (1 - (1 - t^q)^p) in [0, 2]."""
    p, q = KNOT_EXPONENTS
    return 2.0 * (1.0 - (1.0 - t**q) ** p)


@functools.cache
def _load_table() -> tuple[np.ndarray, np.ndarray]:
    """Knot values log Z and tangents d log Z / dt, each (K + 1,), at t = 0, 1/K, ..., 1."""
    with np.load(TABLE_PATH) as table:
        if tuple(table["knot_exponents"]) != KNOT_EXPONENTS:
            raise RuntimeError(
                f"{TABLE_PATH.name} was built for knot exponents {tuple(table['knot_exponents'])}, "
                f"the code uses {KNOT_EXPONENTS}: run `python -m lossbench.losses.log_partition_table`"
            )
        return table["log_z"], table["dlog_z_dt"]


@functools.cache
def _table_tensors(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The table as tensors, cached per (dtype, device) so that training steps do not copy it to
    the device again; made outside inference mode, so that autograd may use them later."""
    with torch.inference_mode(False):
        return tuple(torch.as_tensor(array, dtype=dtype, device=device) for array in _load_table())


def log_partition(alpha: torch.Tensor | float, check: bool = True) -> torch.Tensor:
    """log Z(alpha), Z(alpha) = integral of exp(-rho(x, alpha, 1)) over the real line (eq. 2.14).

    A cubic Hermite spline through the shipped table, uniform in the knot coordinate of
    :func:`alpha_to_knot_coordinate`, so it is smooth (C1) and differentiable in alpha; it
    matches direct integration to ~1e-10 in float64. Z(0) = pi sqrt(2), Z(1) = 2 e K1(1),
    Z(2) = sqrt(2 pi).

    Args:
        alpha: Any shape, values in [0, 2]; below 0 the density is not normalisable.
        check: Raise for alpha outside [0, 2]. Reading the result of the check waits for the
            GPU, so callers whose alpha lies in range by construction (:class:`AdaptiveLoss`)
            pass False. Unchecked, alpha above 2 gets log Z(2) and alpha below 0 or NaN gets
            log Z(0) (:func:`alpha_to_knot_coordinate` maps them to the ends), never an index
            outside the table.

    Returns:
        log Z, same shape, in [log sqrt(2 pi), log(pi sqrt(2))] ~ [0.919, 1.491].

    Raises:
        ValueError: If ``check`` and any alpha is outside [0, 2] or NaN.
    """
    (alpha,) = _promote(alpha)
    if check and not bool(((alpha >= 0.0) & (alpha <= 2.0)).all()):
        raise ValueError(
            "log_partition: alpha must lie in [0, 2], got values in "
            f"[{float(alpha.detach().min()):.6g}, {float(alpha.detach().max()):.6g}]"
        )
    log_z, tangents = _table_tensors(alpha.dtype, alpha.device)
    intervals = log_z.numel() - 1
    position = alpha_to_knot_coordinate(alpha) * intervals
    index = position.detach().floor().clamp(0, intervals - 1).long()
    u = position - index
    # Tangents are stored per unit t; the Hermite basis works per unit interval.
    m0, m1 = tangents[index] / intervals, tangents[index + 1] / intervals
    u2, u3 = u * u, u * u * u
    return (
        (2 * u3 - 3 * u2 + 1) * log_z[index]
        + (u3 - 2 * u2 + u) * m0
        + (3 * u2 - 2 * u3) * log_z[index + 1]
        + (u3 - u2) * m1
    )


def nll(
    x: torch.Tensor | float, alpha: torch.Tensor | float, scale: torch.Tensor | float, check: bool = True
) -> torch.Tensor:
    """Negative log-likelihood -log p(x | 0, alpha, c) = rho(x, alpha, c) + log c + log Z(alpha).

    Args:
        x: Residuals, any shape.
        alpha: Shape, broadcastable with ``x``, in [0, 2].
        scale: Scale c > 0, broadcastable with ``x``.
        check: Check the range of alpha (see :func:`log_partition`).

    Returns:
        NLL of the broadcast shape; exp(-nll) integrates to 1 over x.
    """
    x, alpha, scale = _promote(x, alpha, scale)
    return rho(x, alpha, scale) + torch.log(scale) + log_partition(alpha, check)


class AdaptiveLoss(nn.Module):
    """The thesis's "Adaptive" loss: mean NLL with alpha and scale learnt per channel.

    alpha = alpha_lo + (alpha_hi - alpha_lo) sigmoid(a) and scale = scale_lo + softplus(s) keep
    both in range for any value of the latent parameters a and s, which ``parameters()``
    exposes so the optimiser that trains the network trains them too.

    Args:
        num_channels: Channels C of the images, one (alpha, scale) pair each.
        alpha_lo: Lower bound of alpha, >= 0 (log Z is tabulated on [0, 2]).
        alpha_hi: Upper bound of alpha, <= 2.
        alpha_init: Initial alpha, strictly between the bounds.
        scale_lo: Lower bound of the scale, > 0.
        scale_init: Initial scale, > scale_lo.
        reduction: ``mean`` (over every element of the batch), ``sum`` (of the per-image means)
            or ``none`` ((N,) per-image means).
    """

    def __init__(
        self,
        num_channels: int = 1,
        alpha_lo: float = 0.001,
        alpha_hi: float = 1.999,
        alpha_init: float = 1.0,
        scale_lo: float = 1e-5,
        scale_init: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if num_channels < 1:
            raise ValueError(f"adaptive: num_channels must be >= 1, got {num_channels}")
        if not 0.0 <= alpha_lo < alpha_init < alpha_hi <= 2.0:
            raise ValueError(
                f"adaptive: need 0 <= alpha_lo < alpha_init < alpha_hi <= 2, got {alpha_lo}, {alpha_init}, {alpha_hi}"
            )
        if not 0.0 < scale_lo < scale_init:
            raise ValueError(f"adaptive: need 0 < scale_lo < scale_init, got {scale_lo}, {scale_init}")
        self.num_channels = num_channels
        self.reduction = check_reduction(reduction, "adaptive")
        self.alpha_lo, self.alpha_hi, self.scale_lo = alpha_lo, alpha_hi, scale_lo
        fraction = (alpha_init - alpha_lo) / (alpha_hi - alpha_lo)
        latent_alpha = math.log(fraction / (1.0 - fraction))
        # Inverse softplus, log(expm1(y)), written to stay finite for large y.
        excess = scale_init - scale_lo
        latent_scale = excess + math.log(-math.expm1(-excess))
        self.latent_alpha = nn.Parameter(torch.full((num_channels,), latent_alpha))
        self.latent_scale = nn.Parameter(torch.full((num_channels,), latent_scale))

    def _alpha(self) -> torch.Tensor:
        return self.alpha_lo + (self.alpha_hi - self.alpha_lo) * torch.sigmoid(self.latent_alpha)

    def _scale(self) -> torch.Tensor:
        return self.scale_lo + F.softplus(self.latent_scale)

    @property
    def alpha(self) -> torch.Tensor:
        """Current shape parameters, (C,), detached, in (alpha_lo, alpha_hi)."""
        return self._alpha().detach()

    @property
    def scale(self) -> torch.Tensor:
        """Current scales, (C,), detached, > scale_lo."""
        return self._scale().detach()

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean NLL of the residuals output - target over all elements (per image with ``reduction="none"``).

        Args:
            output: (N, C, H, W), C == num_channels.
            target: Same shape as ``output``.

        Returns:
            Scalar loss, or (N,) with ``reduction="none"``; it can be negative, since it is a log-density.

        Raises:
            ValueError: For shapes other than (N, C, H, W) with C == num_channels.
        """
        check_image_pair(output, target, "adaptive")
        if output.shape[1] != self.num_channels:
            raise ValueError(
                f"adaptive: built for {self.num_channels} channel(s), got {output.shape[1]} "
                f"(shape {tuple(output.shape)})"
            )
        # At least float32: log Z and the tail of rho lose too much in half precision.
        dtype = torch.promote_types(output.dtype, torch.float32)
        residual = (output - target).to(dtype)
        alpha = self._alpha().to(dtype).view(1, -1, 1, 1)
        scale = self._scale().to(dtype).view(1, -1, 1, 1)
        # alpha lies in (alpha_lo, alpha_hi) by construction: no range check, which would wait for the GPU.
        return reduce_map(nll(residual, alpha, scale, check=False), self.reduction)


SPEC = LossSpec("adaptive", AdaptiveLoss, "Adaptive", learnable=True, channel_param="num_channels", minimum=None)
