"""No loss copies host data to the device or waits for the device in its forward or backward.

On the CPU the test counts what would be a host-to-device copy (a tensor made from numpy, a list
or a number by ``torch.tensor`` / ``torch.as_tensor`` / ``torch.from_numpy``) and what would be a
device-to-host sync (``bool``, ``float``, ``int``, ``item``, ``tolist``, ``numpy`` of a tensor)
through patched constructors and methods, and expects none after the first call, which may fill
per-(dtype, device) caches. With a GPU, ``torch.cuda.set_sync_debug_mode("error")`` checks the
real thing.
"""

from __future__ import annotations

import functools

import pytest
import torch

from lossbench import losses
from lossbench.core.precision import ieee_float32
from lossbench.losses.adaptive import AdaptiveLoss
from lossbench.losses.flip import FLIPLoss
from lossbench.metrics.msssim import ms_ssim

#: Beyond each loss's portable parameters: LPIPS+l2's ``balance`` path, whose weight is set on the device.
_EXTRA_PARAMS = {"lpips_l2": {"l2_weight": "balance"}}


def _params(name: str) -> dict:
    """Constructor parameters of loss ``name`` for the 3-channel 64×64 test batches."""
    spec = losses.spec(name)
    channels = {spec.channel_param: 3} if spec.channel_param else {}
    return {**spec.portable_params, **channels, **_EXTRA_PARAMS.get(name, {})}


#: Every registered loss, and the FLIP loss's other out-of-range treatments.
LOSSES = {
    **{name: functools.partial(losses.build, name, **_params(name)) for name in losses.names()},
    "flip_inward": lambda: FLIPLoss(out_of_range="inward"),
    "flip_extrapolate": lambda: FLIPLoss(out_of_range="extrapolate"),
}
#: Losses whose whole forward and backward run without TF32 (lossbench.core.precision.ieee_float32_autograd).
IEEE_LOSSES = ("flip", "lpips_l2", "ssim", "haarpsi", "dists")


def _step(loss: torch.nn.Module, device: str) -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 64, 64, generator=generator).to(device)
    output = (target + 0.1 * torch.randn(target.shape, generator=generator).to(device)).requires_grad_()
    loss(output, target).backward()


class _HostTraffic:
    """Records host-data tensor constructions and host reads of tensors while patched in."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[str] = []
        for name in ("tensor", "as_tensor"):
            original = getattr(torch, name)
            monkeypatch.setattr(torch, name, self._constructor(name, original))
        original_from_numpy = torch.from_numpy
        monkeypatch.setattr(
            torch, "from_numpy", lambda array: self.events.append("from_numpy") or original_from_numpy(array)
        )
        for name in ("__bool__", "__float__", "__int__", "item", "tolist", "numpy"):
            monkeypatch.setattr(torch.Tensor, name, self._reader(name, getattr(torch.Tensor, name)))

    def _constructor(self, name, original):
        def patched(data, *args, **kwargs):
            if not isinstance(data, torch.Tensor):
                self.events.append(f"torch.{name}({type(data).__name__})")
            return original(data, *args, **kwargs)

        return patched

    def _reader(self, name, original):
        def patched(tensor, *args, **kwargs):
            self.events.append(f"Tensor.{name}")
            return original(tensor, *args, **kwargs)

        return patched


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_no_host_copy_or_read_after_the_first_call(name, monkeypatch):
    loss = LOSSES[name]()
    _step(loss, "cpu")
    traffic = _HostTraffic(monkeypatch)
    _step(loss, "cpu")
    _step(loss, "cpu")
    assert traffic.events == [], f"{name}: {traffic.events}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_no_cuda_sync_after_the_first_call(name):
    loss = LOSSES[name]().cuda()
    _step(loss, "cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _step(loss, "cuda")
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _tf32_flags() -> list[str]:
    return [torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision]


@pytest.mark.parametrize("name", IEEE_LOSSES)
def test_forward_and_backward_run_without_tf32_whatever_the_caller_set(name, monkeypatch):
    # Every tensor autograd saves is packed in the forward and unpacked in the backward: the
    # settings seen at those moments are the ones the loss's kernels run under.
    seen = []
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = _tf32_flags()
    try:
        conv.fp32_precision = matmul.fp32_precision = "tf32"
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t: seen.append(("pack", *_tf32_flags())) or t, lambda t: seen.append(("unpack", *_tf32_flags())) or t
        ):
            _step(LOSSES[name](), "cpu")
        assert _tf32_flags() == ["tf32", "tf32"]
    finally:
        conv.fp32_precision, matmul.fp32_precision = before
    inside = [event for event in seen if event[1:] == ("ieee", "ieee")]
    assert {event[0] for event in inside} == {"pack", "unpack"}
    # LPIPS+l2's MSE term is outside the scope, as it has no convolution or product.
    assert len(inside) >= 0.9 * len(seen), seen


def test_ieee_float32_is_restored_after_an_error():
    before = _tf32_flags()
    with pytest.raises(KeyError), ieee_float32():
        assert _tf32_flags() == ["ieee", "ieee"]
        raise KeyError
    assert _tf32_flags() == before


def test_constants_cached_under_inference_mode_serve_training():
    images = torch.rand(1, 1, 48, 48, dtype=torch.float64)
    with torch.inference_mode():
        ms_ssim(images, images.flip(-1), small_images="reduce_scales")
    output = images.clone().requires_grad_()
    ms_ssim(output, images.flip(-1), small_images="reduce_scales").sum().backward()
    assert torch.isfinite(output.grad).all()
    adaptive = AdaptiveLoss(num_channels=1).double()
    with torch.inference_mode():
        adaptive(images, images.flip(-1))
    adaptive(output, images.flip(-1)).backward()
    assert torch.isfinite(adaptive.latent_alpha.grad).all()
    rgb = torch.rand(1, 3, 40, 40)
    with torch.inference_mode():
        FLIPLoss()(rgb, rgb.flip(-1))
    rgb_output = rgb.clone().requires_grad_()
    FLIPLoss()(rgb_output, rgb.flip(-1)).backward()
    assert torch.isfinite(rgb_output.grad).all()
