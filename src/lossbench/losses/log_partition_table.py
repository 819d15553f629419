"""Generator of ``log_partition.npz``, the table behind :func:`lossbench.losses.adaptive.log_partition`.

Regenerate the shipped table (deterministic, byte for byte on a given machine, ~1 s) with:

    python -m lossbench.losses.log_partition_table

log Z(alpha) = log of the integral of exp(-rho(x, alpha, 1)) over x is integrated numerically
at knots uniform in the coordinate t of :func:`~lossbench.losses.adaptive.alpha_to_knot_coordinate`,
together with its exact t-derivative (by autograd through the quadrature), which the cubic
Hermite spline uses as tangents.

The quadrature substitutes x = exp(s): Z = 2 * integral of exp(s - rho(e^s, alpha, 1)) ds. The new
integrand decays like exp(-|s|) or faster at both ends even for the 1/x^2 tails of alpha = 0,
and it is analytic in a strip around the real axis, so the plain trapezoidal rule converges
geometrically: a step of 0.1 reaches float64 rounding (checked against scipy's adaptive
quadrature and the closed forms Z(0) = pi sqrt(2), Z(1) = 2 e K1(1), Z(2) = sqrt(2 pi)).
"""

from __future__ import annotations

import argparse
import math
import zipfile
from pathlib import Path

import numpy as np
import torch

from lossbench.losses.adaptive import KNOT_EXPONENTS, TABLE_PATH, knot_coordinate_to_alpha, rho

#: Number of spline intervals; the table holds INTERVALS + 1 knots.
INTERVALS = 512
#: Trapezoidal step in s = log x.
STEP = 0.1
#: The s-range [-HALF_WIDTH, HALF_WIDTH]; the integrand is below exp(-HALF_WIDTH) ~ 6e-19 beyond.
HALF_WIDTH = 42.0
# Knots per batch, to bound memory (batch x nodes float64 intermediates kept for autograd).
_BATCH = 64


def integrate_log_partition(alpha: torch.Tensor) -> torch.Tensor:
    """log Z(alpha) by the trapezoidal rule in s = log x, differentiable in alpha.

    Args:
        alpha: (A,) float64, values in [0, 2].

    Returns:
        (A,) float64 log Z, accurate to ~1e-15.
    """
    s = torch.arange(-HALF_WIDTH, HALF_WIDTH + STEP / 2, STEP, dtype=torch.float64)
    log_integrand = s - rho(torch.exp(s)[None, :], alpha[:, None], 1.0)
    # The factor 2 folds in the mirror half x < 0.
    return math.log(2.0 * STEP) + torch.logsumexp(log_integrand, dim=1)


def build_table(intervals: int = INTERVALS) -> dict[str, np.ndarray]:
    """Compute the knot values and tangents of the log Z spline.

    Args:
        intervals: Number of uniform intervals in t; knots at t = 0, 1/intervals, ..., 1.

    Returns:
        ``log_z`` and ``dlog_z_dt``, each (intervals + 1,) float64, and ``knot_exponents``, the
        (p, q) of the knot curve they were computed for.
    """
    t = torch.linspace(0.0, 1.0, intervals + 1, dtype=torch.float64)
    values, tangents = [], []
    for batch in t.split(_BATCH):
        batch = batch.clone().requires_grad_(True)
        log_z = integrate_log_partition(knot_coordinate_to_alpha(batch))
        # Each log Z depends on its own knot only, so the gradient of the sum is the derivative.
        (dlog_z_dt,) = torch.autograd.grad(log_z.sum(), batch)
        values.append(log_z.detach())
        tangents.append(dlog_z_dt)
    return {
        "log_z": torch.cat(values).numpy(),
        "dlog_z_dt": torch.cat(tangents).numpy(),
        "knot_exponents": np.array(KNOT_EXPONENTS, dtype=np.int64),
    }


def write_table(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` that ``np.load`` reads, identical bytes for identical data.

    ``np.savez`` stamps each member with the current time; fixed stamps keep regenerated
    tables comparable by checksum.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: build the table and write it (default: the shipped file)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=TABLE_PATH, help="where to write the .npz")
    parser.add_argument("--intervals", type=int, default=INTERVALS, help="number of spline intervals")
    args = parser.parse_args(argv)
    write_table(args.output, build_table(args.intervals))
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
