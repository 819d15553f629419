"""MS-SSIM metric and loss: agreement with pytorch-msssim, finite gradients, small-image handling."""

from __future__ import annotations

import importlib

import pytest
import pytorch_msssim
import skimage.data
import torch
import torch.nn.functional as F

from lossbench.losses.msssim import MSSSIMLoss
from lossbench.metrics import msssim as msssim_module
from lossbench.metrics.msssim import SCALE_WEIGHTS, ms_ssim, usable_scales

torch.set_num_threads(1)

# The package re-exports the function `ssim` under the submodule's name; fetch the submodule.
_reference_module = importlib.import_module("pytorch_msssim.ssim")


def _photo(name: str, size: tuple[int, int] = (192, 192)) -> torch.Tensor:
    """Centre crop of a scikit-image sample photo, (1, 3, H, W) in [0, 1]."""
    image = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float() / 255
    top = (image.shape[1] - size[0]) // 2
    left = (image.shape[2] - size[1]) // 2
    return image[None, :, top : top + size[0], left : left + size[1]]


def _distortions(image: torch.Tensor) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(image.shape, generator=generator)
    return [
        (image + 0.05 * noise).clamp(0, 1),
        (image + 0.3 * noise).clamp(0, 1),
        F.avg_pool2d(image, 5, stride=1, padding=2, count_include_pad=False),
    ]


def _reference(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return pytorch_msssim.ms_ssim(output, target, data_range=1, size_average=False)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
@pytest.mark.parametrize("gray", [False, True])
def test_matches_pytorch_msssim(name: str, gray: bool) -> None:
    target = _photo(name)
    outputs = torch.cat(_distortions(target))
    targets = target.expand_as(outputs)
    if gray:
        outputs, targets = outputs.mean(1, keepdim=True), targets.mean(1, keepdim=True)
    ours = ms_ssim(outputs, targets)
    assert ours.shape == (3,)
    torch.testing.assert_close(ours, _reference(outputs, targets), rtol=0, atol=1e-4)


def test_matches_pytorch_msssim_odd_size() -> None:
    target = _photo("chelsea", (171, 193))
    output = _distortions(target)[0]
    torch.testing.assert_close(ms_ssim(output, target), _reference(output, target), rtol=0, atol=1e-4)


def test_negative_contrast_structure_matches_reference_and_has_finite_gradient() -> None:
    target = _photo("astronaut")
    output = (1 - target).requires_grad_()  # anti-correlated: contrast-structure terms < 0
    value = ms_ssim(output, target)
    torch.testing.assert_close(value, _reference(output.detach(), target), rtol=0, atol=1e-4)
    (1 - value).sum().backward()
    assert torch.isfinite(output.grad).all()


def test_identical_is_one() -> None:
    image = _photo("coffee")
    torch.testing.assert_close(ms_ssim(image, image), torch.ones(1), rtol=0, atol=1e-6)


def test_loss_is_one_minus_mean() -> None:
    target = _photo("chelsea").expand(3, -1, -1, -1)
    output = torch.cat(_distortions(_photo("chelsea")))
    torch.testing.assert_close(MSSSIMLoss()(output, target), 1 - ms_ssim(output, target).mean())


@pytest.mark.parametrize(
    "make_pair",
    [
        lambda: (_photo("astronaut"), _photo("astronaut")),
        lambda: (torch.zeros(1, 3, 192, 192), torch.zeros(1, 3, 192, 192)),
        lambda: (torch.full((1, 1, 192, 192), 0.5), torch.full((1, 1, 192, 192), 0.5)),
        lambda: (torch.zeros(1, 3, 192, 192), _photo("coffee")),
        lambda: (torch.full((1, 3, 192, 192), 0.3), torch.full((1, 3, 192, 192), 0.7)),
    ],
    ids=["identical", "black", "constant", "black-vs-photo", "constants"],
)
def test_loss_gradient_finite(make_pair) -> None:
    output, target = make_pair()
    output = output.clone().requires_grad_()
    loss = MSSSIMLoss()(output, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(output.grad).all()


def test_bfloat16_autocast() -> None:
    target = _photo("astronaut")
    output = _distortions(target)[0].requires_grad_()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = MSSSIMLoss()(output, target)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, 1 - _reference(output.detach(), target).mean(), rtol=0, atol=1e-4)
    loss.backward()
    assert torch.isfinite(output.grad).all()

    bf16 = output.detach().bfloat16().requires_grad_()
    loss = MSSSIMLoss()(bf16, target.bfloat16())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(bf16.grad.float()).all()


def test_small_image_error_names_size_and_minimum() -> None:
    image = torch.rand(1, 3, 64, 80)
    with pytest.raises(ValueError, match=r"64x80.*160"):
        ms_ssim(image, image)
    with pytest.raises(ValueError, match=r"64x80.*160"):
        MSSSIMLoss()(image, image)


def test_reduce_scales_counts() -> None:
    assert usable_scales(161, 500) == 5
    assert usable_scales(160, 500) == 4
    assert usable_scales(64, 64) == 3
    assert usable_scales(11, 11) == 1
    assert usable_scales(10, 64) == 0
    with pytest.raises(ValueError, match=r"10x64.*11"):
        ms_ssim(torch.rand(1, 1, 10, 64), torch.rand(1, 1, 10, 64), small_images="reduce_scales")


def test_reduce_scales_is_identity_for_large_images() -> None:
    target = _photo("coffee")
    output = _distortions(target)[1]
    assert torch.equal(ms_ssim(output, target, small_images="reduce_scales"), ms_ssim(output, target))


def test_reduce_scales_single_scale_is_ssim() -> None:
    target = _photo("astronaut", (16, 16))
    output = _distortions(target)[0]
    reference = pytorch_msssim.ssim(output, target, data_range=1, size_average=False, nonnegative_ssim=True)
    torch.testing.assert_close(ms_ssim(output, target, small_images="reduce_scales"), reference, rtol=0, atol=1e-5)


def test_reduce_scales_three_scales_on_64px() -> None:
    target = _photo("chelsea", (64, 64))
    output = _distortions(target)[1]
    # Build the three-scale value from the reference's single-scale terms.
    weights = torch.tensor(SCALE_WEIGHTS[:3]) / sum(SCALE_WEIGHTS[:3])
    window = _reference_module._fspecial_gauss_1d(11, 1.5).repeat(3, 1, 1, 1)
    x, y, terms = output, target, []
    for _ in range(2):
        _, cs = _reference_module._ssim(x, y, data_range=1, win=window)
        terms.append(cs.relu())
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    ssim_val, _ = _reference_module._ssim(x, y, data_range=1, win=window)
    terms.append(ssim_val.relu())
    expected = (torch.stack(terms) ** weights.view(-1, 1, 1)).prod(0).mean(1)

    torch.testing.assert_close(ms_ssim(output, target, small_images="reduce_scales"), expected, rtol=0, atol=1e-5)
    loss_input = output.clone().requires_grad_()
    loss = MSSSIMLoss(small_images="reduce_scales")(loss_input, target)
    loss.backward()
    torch.testing.assert_close(loss, 1 - expected.mean(), rtol=0, atol=1e-5)
    assert torch.isfinite(loss_input.grad).all()


@pytest.mark.parametrize(
    "shapes",
    [((3, 192, 192), (3, 192, 192)), ((1, 2, 192, 192), (1, 2, 192, 192)), ((1, 3, 192, 192), (1, 3, 192, 180))],
)
def test_wrong_shapes_raise(shapes) -> None:
    with pytest.raises(ValueError):
        ms_ssim(torch.rand(*shapes[0]), torch.rand(*shapes[1]))


def test_invalid_small_images_option() -> None:
    with pytest.raises(ValueError, match="small_images"):
        MSSSIMLoss(small_images="pad")


def test_gradient_matches_pytorch_msssim() -> None:
    # Backward goes through the custom full-float32 blur; the reference differentiates plain
    # convolutions with a float32 window, which limits agreement to ~6e-5 of the largest gradient.
    target = _photo("coffee").double()
    output = _distortions(_photo("coffee"))[0].double().requires_grad_()
    ours = torch.autograd.grad(ms_ssim(output, target).sum(), output)[0]
    reference = torch.autograd.grad(_reference(output, target).sum(), output)[0]
    torch.testing.assert_close(ours, reference, rtol=0, atol=2e-4 * reference.abs().max().item())


def test_blur_backward_is_its_gradient() -> None:
    from lossbench.metrics.msssim import _constants, _GaussianBlur

    window, _ = _constants(torch.float64, torch.device("cpu"), 5)
    images = torch.rand(2, 3, 14, 13, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: _GaussianBlur.apply(x, window), (images,))


@pytest.fixture
def tf32():
    """TF32 on for cuDNN convolutions, as it is by default on Ampere and later, during the test."""
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    conv.fp32_precision = "tf32"
    yield
    conv.fp32_precision = before


def test_convolutions_run_without_tf32_forward_and_backward(tf32, monkeypatch) -> None:
    # On the CPU the flag changes nothing, but what it is during each convolution shows the scope.
    seen = []
    conv2d = F.conv2d
    monkeypatch.setattr(
        F,
        "conv2d",
        lambda *args, **kwargs: seen.append(torch.backends.cudnn.conv.fp32_precision) or conv2d(*args, **kwargs),
    )
    conv2d_input = torch.nn.grad.conv2d_input
    monkeypatch.setattr(
        msssim_module,
        "conv2d_input",
        lambda *args, **kwargs: seen.append(torch.backends.cudnn.conv.fp32_precision) or conv2d_input(*args, **kwargs),
    )
    target = _photo("astronaut")
    output = _distortions(target)[1].requires_grad_()
    MSSSIMLoss()(output, target).backward()
    assert len(seen) == 2 * 5 * 2  # two passes per blur, five scales, forward and backward
    assert set(seen) == {"ieee"}
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_value_and_gradient_match_the_cpu_with_tf32_enabled(tf32) -> None:
    # TF32 rounding would shift MS-SSIM by 1e-3 to 1e-2 on Ampere and later GPUs (issue 14, item 4).
    target = _photo("chelsea")
    output = (target + 25 / 255 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    values, grads = [], []
    for device in ("cpu", "cuda"):
        moved = output.to(device).requires_grad_()
        value = ms_ssim(moved, target.to(device))
        value.sum().backward()
        values.append(value.detach().cpu())
        grads.append(moved.grad.cpu())
    torch.testing.assert_close(values[1], values[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-4 * grads[0].abs().max().item())
