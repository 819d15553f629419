import math

import pytest
import torch

from lossbench import losses, metrics


def test_identical_images_are_perfect():
    image = torch.rand(2, 3, 16, 16)
    assert torch.equal(metrics.compute("l1", image, image), torch.zeros(2))
    assert torch.equal(metrics.compute("l2", image, image), torch.zeros(2))
    assert torch.isinf(metrics.compute("psnr", image, image)).all()


def test_values_per_image():
    target = torch.zeros(2, 1, 4, 4)
    output = torch.stack([torch.full((1, 4, 4), 0.1), torch.full((1, 4, 4), 0.2)])
    assert torch.allclose(metrics.compute("l1", output, target), torch.tensor([0.1, 0.2]))
    assert torch.allclose(metrics.compute("l2", output, target), torch.tensor([0.01, 0.04]))
    assert metrics.compute("psnr", output, target)[0].item() == pytest.approx(20.0, abs=1e-4)


@pytest.mark.parametrize("name", ["l1", "l2", "psnr"])
def test_symmetric(name):
    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    assert torch.allclose(metrics.compute(name, a, b), metrics.compute(name, b, a))


@pytest.mark.parametrize("name", ["l1", "l2"])
def test_losses_match_metric_means_and_have_finite_gradients(name):
    output = torch.rand(2, 3, 8, 8, requires_grad=True)
    target = torch.rand(2, 3, 8, 8)
    loss = losses.build(name)(output, target)
    assert loss.item() == pytest.approx(metrics.compute(name, output.detach(), target).mean().item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(output.grad).all()
    identical = output.detach().clone().requires_grad_()
    losses.build(name)(identical, identical.detach()).backward()
    assert torch.isfinite(identical.grad).all()


@pytest.mark.parametrize(
    "output, target, message",
    [
        (torch.rand(3, 8, 8), torch.rand(3, 8, 8), r"\(N, C, H, W\)"),
        (torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8), "1 or 3 channels"),
        (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9), "differs"),
    ],
)
@pytest.mark.parametrize("name", ["l1", "l2", "psnr"])
def test_bad_shapes_raise(name, output, target, message):
    with pytest.raises(ValueError, match=message):
        metrics.compute(name, output, target)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown metric 'vif'"):
        metrics.compute("vif", torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="unknown loss 'huber'"):
        losses.build("huber")


def test_psnr_of_known_mse():
    output = torch.full((1, 1, 4, 4), 0.5)
    target = torch.full((1, 1, 4, 4), 0.5 + math.sqrt(1e-3))
    assert metrics.compute("psnr", output, target).item() == pytest.approx(30.0, abs=1e-3)
