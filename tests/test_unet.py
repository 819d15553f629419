import pytest
import torch

from lossbench.models import UNet


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(32, 32), (37, 50), (64, 48)])
@pytest.mark.parametrize("depth", [1, 3])
def test_output_shape_matches_input(channels, size, depth):
    net = UNet(channels, channels, width=4, depth=depth)
    image = torch.rand(2, channels, *size)
    assert net(image).shape == image.shape


def test_kodak_and_fastmri_sizes():
    net = UNet(3, 3, width=2, depth=4)
    assert net(torch.rand(1, 3, 512, 768)).shape == (1, 3, 512, 768)
    assert UNet(1, 1, width=2, depth=4)(torch.rand(1, 1, 320, 320)).shape == (1, 1, 320, 320)


def test_channel_counts_follow_depth_and_width():
    net = UNet(1, 1, width=8, depth=3)
    assert [block[0].out_channels for block in net.encoder] == [8, 16, 32]
    assert net.bottleneck[0].out_channels == 64
    assert net.head.in_channels == 8


def test_residual_network_starts_as_identity():
    image = torch.rand(1, 3, 40, 40)
    assert torch.equal(UNet(3, 3, width=4, depth=2, residual=True)(image), image)
    assert not torch.allclose(UNet(3, 3, width=4, depth=2)(image), image)


def test_gradients_reach_every_parameter():
    net = UNet(3, 3, width=4, depth=2)
    net(torch.rand(2, 3, 32, 32)).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("kwargs, message", [
    ({"depth": 0}, "depth"),
    ({"width": 0}, "width"),
    ({"kernel_size": 4}, "kernel_size"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNet(3, 3, **kwargs)


def test_residual_needs_matching_channels():
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        UNet(1, 3, residual=True)


def test_wrong_input_rank_raises():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        UNet(3, 3, width=2, depth=1)(torch.rand(3, 16, 16))


def test_kernel_sizes_per_level():
    net = UNet(1, 1, width=4, depth=2, kernel_sizes=[7, 5, 3])
    assert [block[0].kernel_size for block in net.encoder] == [(7, 7), (5, 5)]
    assert net.bottleneck[0].kernel_size == (3, 3)
    assert [block[0].kernel_size for block in net.decoder] == [(5, 5), (7, 7)]
    image = torch.rand(1, 1, 37, 50)
    assert net(image).shape == image.shape


@pytest.mark.parametrize("sizes", [[3, 3], [3, 4, 3]])
def test_bad_kernel_sizes_raise(sizes):
    with pytest.raises(ValueError, match="kernel"):
        UNet(1, 1, width=4, depth=2, kernel_sizes=sizes)
