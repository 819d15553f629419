"""Every registered loss takes ``reduction=``: 'mean' (the training loss, unchanged), 'sum', 'none' (per image)."""

import pytest
import torch

from lossbench import losses
from lossbench.core.specs import Setting


def _build(name, channels, **extra):
    spec = losses.spec(name)
    return spec.build({**spec.params(Setting(channels), spec.portable_params), **extra}, channels)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", losses.names())
def test_none_is_each_images_loss_sum_their_sum_and_mean_is_unchanged(name, channels):
    torch.manual_seed(0)
    target = torch.rand(3, channels, 48, 48)
    output = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    default = _build(name, channels)(output, target).detach()
    per_image = _build(name, channels, reduction="none")(output, target).detach()
    assert per_image.shape == (3,) and not torch.equal(per_image[0], per_image[1])
    # Tolerance: float32 sums in another order, relative 1e-5 (the adaptive loss's log-density sits near 0).
    singles = torch.stack([_build(name, channels)(output[i : i + 1], target[i : i + 1]).detach() for i in range(3)])
    torch.testing.assert_close(per_image, singles, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_build(name, channels, reduction="sum")(output, target).detach(), per_image.sum(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(per_image.mean(), default, rtol=1e-5, atol=1e-6)
    # 'mean', the default, is computed as it always was: training runs stay bit for bit the same.
    assert torch.equal(_build(name, channels, reduction="mean")(output, target).detach(), default)


@pytest.mark.parametrize("name", losses.names())
def test_per_image_losses_have_per_image_gradients(name):
    torch.manual_seed(1)
    target = torch.rand(2, 3, 48, 48)
    output = (target + 0.1 * torch.randn_like(target)).clamp(0, 1).requires_grad_()
    _build(name, 3, reduction="none")(output, target)[0].backward()
    assert output.grad[0].abs().sum() > 0 and torch.count_nonzero(output.grad[1]) == 0


@pytest.mark.parametrize("name", losses.names())
def test_an_unknown_reduction_is_one_line(name):
    with pytest.raises(ValueError, match=r"^[\w+]+: unknown reduction 'avg', expected one of 'mean', 'sum', 'none'$"):
        _build(name, 3, reduction="avg")


def test_training_rejects_per_image_losses_in_one_line(tiny_config):
    from lossbench.pipeline.config import ConfigError, validate

    tiny_config["losses"]["l1"]["params"] = {"reduction": "none"}
    with pytest.raises(ConfigError, match=r"^tiny\.yaml: losses\.l1\.params\.reduction: 'none' gives one loss per image; training needs a scalar \('mean' or 'sum'\)$"):
        validate(tiny_config, "tiny.yaml")
