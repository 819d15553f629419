"""Tests of Barron's general / adaptive robust loss and its log-partition table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from lossbench.losses import log_partition_table
from lossbench.losses.adaptive import TABLE_PATH, AdaptiveLoss, log_partition, nll, rho

F64 = torch.float64
LOG_Z_CLOSED_FORMS = {
    0.0: math.log(math.pi * math.sqrt(2.0)),
    1.0: math.log(2.0 * math.e * special.k1(1.0)),
    2.0: 0.5 * math.log(2.0 * math.pi),
}


def _integrate_over_x(density, scale: float = 1.0) -> float:
    """Integral of an even function over the real line by adaptive quadrature on [0, inf)."""
    options = dict(epsabs=0.0, epsrel=1e-12, limit=200)
    near = integrate.quad(density, 0.0, scale, **options)[0]
    far = integrate.quad(density, scale, math.inf, **options)[0]
    return 2.0 * (near + far)


def _quadrature_log_z(alpha: float) -> float:
    """log Z(alpha) by scipy's quadrature, independent of the trapezoidal rule of the generator."""
    a = torch.tensor(alpha, dtype=F64)
    return math.log(_integrate_over_x(lambda x: math.exp(-float(rho(torch.tensor(x, dtype=F64), a, 1.0)))))


# --- log Z -------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", sorted(LOG_Z_CLOSED_FORMS))
def test_log_partition_matches_closed_forms(alpha: float) -> None:
    value = float(log_partition(torch.tensor(alpha, dtype=F64)))
    assert value == pytest.approx(LOG_Z_CLOSED_FORMS[alpha], abs=1e-9)
    assert float(log_partition(torch.tensor(alpha))) == pytest.approx(LOG_Z_CLOSED_FORMS[alpha], abs=1e-6)


def test_log_partition_matches_quadrature_at_random_alpha() -> None:
    rng = np.random.default_rng(0)
    alphas = [0.001, 1.999, *rng.uniform(0.001, 1.999, size=10)]
    interpolated = log_partition(torch.tensor(alphas, dtype=F64))
    for alpha, value in zip(alphas, interpolated.tolist()):
        assert value == pytest.approx(_quadrature_log_z(alpha), abs=1e-8), alpha


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_log_partition_is_smooth_with_finite_gradient(dtype: torch.dtype) -> None:
    alpha = torch.linspace(0.0, 2.0, 4001, dtype=dtype).requires_grad_(True)
    value = log_partition(alpha)
    (grad,) = torch.autograd.grad(value.sum(), alpha)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    # log Z decreases from log(pi sqrt 2) to log(sqrt(2 pi)) as the tails get lighter.
    assert (value[1:] < value[:-1]).all()


def test_log_partition_gradient_matches_finite_differences() -> None:
    alpha = torch.tensor([0.0005, 0.01, 0.3, 1.0, 1.7, 1.99], dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(log_partition(alpha).sum(), alpha)
    step = 1e-6
    central = (log_partition(alpha.detach() + step) - log_partition(alpha.detach() - step)) / (2 * step)
    torch.testing.assert_close(grad, central, rtol=1e-5, atol=1e-7)
    # At alpha = 0 the gradient is the one-sided derivative, not a 0 * inf artefact.
    zero = torch.tensor(0.0, dtype=F64, requires_grad=True)
    value_zero = log_partition(zero)
    (grad_zero,) = torch.autograd.grad(value_zero, zero)
    one_sided = (log_partition(torch.tensor(step, dtype=F64)) - value_zero.detach()) / step
    assert float(grad_zero) == pytest.approx(float(one_sided), rel=1e-4)


@pytest.mark.parametrize("alpha", [-0.1, 2.1, math.nan])
def test_log_partition_rejects_alpha_outside_domain(alpha: float) -> None:
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 2\]"):
        log_partition(torch.tensor([1.0, alpha]))


def test_unchecked_log_partition_clamps_to_the_table_ends() -> None:
    # Without the check (which would wait for the GPU) no alpha may index outside the table.
    ends = log_partition(torch.tensor([0.0, 2.0], dtype=torch.float64))
    unchecked = log_partition(torch.tensor([-0.1, math.nan, 2.1, math.inf], dtype=torch.float64), check=False)
    torch.testing.assert_close(unchecked, ends[[0, 0, 1, 1]], rtol=0, atol=0)


def test_shipped_table_matches_regenerated_one(tmp_path) -> None:
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    log_partition_table.main(["--output", str(first)])
    log_partition_table.main(["--output", str(second)])
    assert first.read_bytes() == second.read_bytes()
    assert TABLE_PATH.stat().st_size < 200_000
    with np.load(TABLE_PATH) as shipped, np.load(first) as regenerated:
        assert sorted(shipped.files) == sorted(regenerated.files)
        for name in shipped.files:
            np.testing.assert_allclose(shipped[name], regenerated[name], rtol=0, atol=1e-13, err_msg=name)


# --- rho ---------------------------------------------------------------------------------------


def _special_case(alpha: float, z: torch.Tensor) -> torch.Tensor:
    """rho for the special alphas of thesis eq. 2.13 (and alpha = 1, -2), written independently."""
    if alpha == 2.0:
        return 0.5 * z
    if alpha == 1.0:
        return z / (torch.sqrt(z + 1.0) + 1.0)  # sqrt(z + 1) - 1 without cancellation
    if alpha == 0.0:
        return torch.log(0.5 * z + 1.0)
    if alpha == -2.0:
        return 2.0 * z / (z + 4.0)  # 2 (1 - 1 / (z / 4 + 1)), Geman-McClure
    assert alpha == -math.inf
    return 1.0 - torch.exp(-0.5 * z)


@pytest.mark.parametrize("alpha", [2.0, 1.0, 0.0, -2.0, -math.inf])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_rho_reduces_to_special_cases(alpha: float, dtype: torch.dtype) -> None:
    x = torch.linspace(-50.0, 50.0, 2001, dtype=dtype)
    scale = 0.7
    expected = _special_case(alpha, (x / scale) ** 2)
    tolerance = 1e-12 if dtype == F64 else 1e-5
    torch.testing.assert_close(rho(x, alpha, scale), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize(
    ("alpha", "limit"),
    [(1e-7, 0.0), (-1e-7, 0.0), (2.0 - 1e-7, 2.0), (2.0 + 1e-7, 2.0), (-1e6, -math.inf), (1.0 + 1e-7, 1.0)],
)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_rho_is_continuous_at_special_cases(alpha: float, limit: float, dtype: torch.dtype) -> None:
    x = torch.linspace(-50.0, 50.0, 2001, dtype=dtype)
    # The true differences are O(|alpha - limit| log^2 |x|); 1e-5 leaves room for that.
    torch.testing.assert_close(rho(x, alpha, 1.3), rho(x, limit, 1.3), rtol=1e-5, atol=1e-7)


def test_rho_basic_properties() -> None:
    # Up to |x| = 5 so that the Welsch loss has not yet saturated at 1 in float64.
    x = torch.linspace(0.0, 5.0, 401, dtype=F64)
    alpha = torch.tensor([-math.inf, -3.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5], dtype=F64)[:, None]
    values = rho(x, alpha, 1.0)
    assert values.shape == (8, 401)
    assert (values[:, 0] == 0).all()
    assert (values[:, 1:] > values[:, :-1]).all()
    # rho depends on x / c only.
    torch.testing.assert_close(rho(3.0 * x, alpha, 3.0), values)
    # Larger alpha, less robust: rho increases with alpha for every x.
    assert (values[1:, 1:] > values[:-1, 1:]).all()


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("alpha", [-math.inf, -1e6, -2.0, -1e-7, 0.0, 1e-7, 0.5, 1.0, 2.0 - 1e-7, 2.0, 3.0])
def test_rho_and_nll_gradients_are_finite(alpha: float, dtype: torch.dtype) -> None:
    x = torch.tensor([0.0, 1e-20, 0.3, -4.0, 1e3], dtype=dtype, requires_grad=True)
    a = torch.tensor(alpha, dtype=dtype, requires_grad=True)
    scale = torch.tensor(0.7, dtype=dtype, requires_grad=True)
    functions = [rho, nll] if 0.0 <= alpha <= 2.0 else [rho]
    for function in functions:
        value = function(x, a, scale)
        grads = torch.autograd.grad(value.sum(), [x, a, scale])
        assert torch.isfinite(value).all(), function.__name__
        assert all(torch.isfinite(g).all() for g in grads), (function.__name__, grads)
        if function is rho:
            assert float(grads[0][0]) == 0.0  # x = 0 is the minimum


@pytest.mark.parametrize(("alpha", "limit"), [(1e-7, 0.0), (-1e-7, 0.0), (2.0 - 1e-7, 2.0)])
def test_rho_gradients_are_continuous_at_special_cases(alpha: float, limit: float) -> None:
    x = torch.linspace(-30.0, 30.0, 601, dtype=F64)

    def grads(a: float) -> tuple[torch.Tensor, torch.Tensor]:
        xx, aa = x.clone().requires_grad_(True), torch.tensor(a, dtype=F64, requires_grad=True)
        return torch.autograd.grad(rho(xx, aa, 1.0).sum(), [xx, aa])

    (gx, ga), (gx_limit, ga_limit) = grads(alpha), grads(limit)
    torch.testing.assert_close(gx, gx_limit, rtol=1e-5, atol=1e-7)
    # The alpha-derivative diverges logarithmically at alpha = 2, so compare it at 0 only.
    if limit == 0.0:
        torch.testing.assert_close(ga, ga_limit, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("alpha", [0.001, 0.5, 1.0, 1.999, 2.0])
@pytest.mark.parametrize("scale", [0.2, 3.0])
def test_density_integrates_to_one(alpha: float, scale: float) -> None:
    a, c = torch.tensor(alpha, dtype=F64), torch.tensor(scale, dtype=F64)
    total = _integrate_over_x(lambda x: math.exp(-float(nll(torch.tensor(x, dtype=F64), a, c))), scale)
    assert total == pytest.approx(1.0, abs=1e-8)


# --- AdaptiveLoss ------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_adaptive_loss_initial_state_and_parameters(channels: int) -> None:
    loss = AdaptiveLoss(num_channels=channels)
    torch.testing.assert_close(loss.alpha, torch.ones(channels))
    torch.testing.assert_close(loss.scale, torch.ones(channels))
    parameters = list(loss.parameters())
    assert len(parameters) == 2
    assert all(p.shape == (channels,) and p.requires_grad for p in parameters)
    custom = AdaptiveLoss(channels, alpha_init=1.9, scale_init=0.01)
    torch.testing.assert_close(custom.alpha, torch.full((channels,), 1.9))
    torch.testing.assert_close(custom.scale, torch.full((channels,), 0.01))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_channels": 0},
        {"alpha_lo": -0.5},
        {"alpha_hi": 2.5},
        {"alpha_init": 1.999},
        {"alpha_init": 0.0},
        {"scale_lo": 0.0},
        {"scale_init": 1e-6},
    ],
)
def test_adaptive_loss_rejects_invalid_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="adaptive"):
        AdaptiveLoss(**kwargs)


@pytest.mark.parametrize(
    ("channels", "output_shape", "target_shape", "message"),
    [
        (1, (2, 3, 8, 8), (2, 3, 8, 8), "built for 1 channel"),
        (3, (2, 1, 8, 8), (2, 1, 8, 8), "built for 3 channel"),
        (1, (1, 8, 8), (1, 8, 8), r"\(N, C, H, W\)"),
        (1, (2, 2, 8, 8), (2, 2, 8, 8), "1 or 3 channels"),
        (1, (2, 1, 8, 8), (2, 1, 8, 9), "differs"),
    ],
)
def test_adaptive_loss_rejects_wrong_shapes(channels, output_shape, target_shape, message) -> None:
    loss = AdaptiveLoss(num_channels=channels)
    with pytest.raises(ValueError, match=message):
        loss(torch.zeros(output_shape), torch.zeros(target_shape))


def test_adaptive_loss_is_mean_nll_and_minimal_for_identical_inputs() -> None:
    torch.manual_seed(0)
    loss = AdaptiveLoss(num_channels=3, alpha_init=0.5, scale_init=0.1)
    output = torch.rand(2, 3, 8, 8, dtype=F64, requires_grad=True)
    target = torch.rand(2, 3, 8, 8, dtype=F64)
    value = loss(output, target)
    assert value.dtype == F64 and value.shape == ()
    expected = nll(output - target, loss.alpha.double().view(1, 3, 1, 1), loss.scale.double().view(1, 3, 1, 1))
    torch.testing.assert_close(value, expected.mean())

    same = loss(output, output.detach())
    (grad,) = torch.autograd.grad(same, output)
    assert float(grad.abs().max()) == 0.0
    torch.testing.assert_close(same, math.log(0.1) + log_partition(torch.tensor(0.5, dtype=F64)), rtol=1e-6, atol=1e-6)
    assert float(same.detach()) < float(value.detach())


def test_adaptive_loss_learns_alpha_from_residual_distribution() -> None:
    generator = torch.Generator().manual_seed(0)
    shape = (4, 1, 48, 48)
    gaussian = torch.randn(shape, generator=generator)
    laplacian = torch.sign(torch.rand(shape, generator=generator) - 0.5) * torch.log(
        torch.rand(shape, generator=generator)
    )
    cauchy = torch.tan(math.pi * (torch.rand(shape, generator=generator) - 0.5))
    residuals = 0.1 * torch.cat([gaussian, laplacian, cauchy], dim=1)

    loss = AdaptiveLoss(num_channels=3)
    optimiser = torch.optim.Adam(loss.parameters(), lr=0.05)
    for _ in range(100):
        optimiser.zero_grad()
        loss(residuals, torch.zeros_like(residuals)).backward()
        optimiser.step()

    alpha = loss.alpha
    assert alpha[0] > 1.5, alpha  # Gaussian residuals: towards l2
    assert alpha[2] < 0.5, alpha  # Cauchy residuals: towards the log (Cauchy) loss
    assert alpha[0] > alpha[1] > alpha[2], alpha
    assert (loss.scale < 1.0).all()  # residuals are ~0.1, far below the initial scale
