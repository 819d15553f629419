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


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"depth": 0}, "depth"),
        ({"width": 0}, "width"),
        ({"kernel_size": 4}, "kernel_size"),
    ],
)
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


# --- The registry of networks (model.name) and fastMRI's U-net ---

from fastmri.models import Unet as FastMRIUnet  # noqa: E402

from lossbench import models  # noqa: E402
from lossbench.train.loop import load_model  # noqa: E402


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(32, 32), (37, 50)])
def test_fastmri_unet_is_fastmris_network_for_any_channel_count(channels, size):
    net = models.build({"name": "fastmri_unet", "chans": 4, "num_pool_layers": 2, "drop_prob": 0.0}, channels)
    assert (
        type(net) is FastMRIUnet
        and net.in_chans == net.out_chans == channels
        and net.chans == 4
        and net.num_pool_layers == 2
    )
    torch.manual_seed(0)
    reference = FastMRIUnet(channels, channels, chans=4, num_pool_layers=2)
    net.load_state_dict(reference.state_dict())  # same architecture, key for key
    image = torch.rand(2, channels, *size)
    assert torch.equal(net(image), reference(image)) and net(image).shape == image.shape


@pytest.mark.parametrize(
    "section, channels",
    [
        ({"name": "unet", "width": 4, "depth": 3, "kernel_size": 3, "kernel_sizes": [5, 3, 3, 3]}, 1),
        ({"name": "unet", "width": 6, "depth": 2, "kernel_size": 3, "residual": True}, 3),
        ({"name": "fastmri_unet", "chans": 4, "num_pool_layers": 3, "drop_prob": 0.0}, 1),
        ({"name": "fastmri_unet", "chans": 8, "num_pool_layers": 2, "drop_prob": 0.1}, 3),
    ],
)
def test_each_specs_parameter_count_is_exact(section, channels):
    # The configuration's memory limit counts the weights from the spec, without building the network.
    network = models.build(section, channels)
    assert models.of(section).parameters(models.params(section), channels) == sum(
        p.numel() for p in network.parameters()
    )


def test_a_section_without_name_is_the_thesis_unet_and_an_unknown_name_one_line():
    assert isinstance(models.build({"width": 2, "depth": 1}, 1), UNet)
    with pytest.raises(ValueError, match=r"^unknown model 'resnet': expected one of unet, fastmri_unet$"):
        models.spec("resnet")


def _save_model_pt(path, section, tiny_config):
    from lossbench.pipeline.config import validate
    from lossbench.pipeline.job_settings import run_settings

    torch.manual_seed(0)
    network = models.build(section, 1)
    spec = {**run_settings(validate(tiny_config), "knee", "l1", 0).to_dict(), "model": section}
    torch.save({"spec": spec, "model": network.state_dict(), "loss": {}}, path)
    return network


@pytest.mark.parametrize(
    "section",
    [
        {"name": "fastmri_unet", "chans": 4, "num_pool_layers": 2, "drop_prob": 0.0},
        {"name": "unet", "width": 4, "depth": 2, "kernel_size": 3, "kernel_sizes": None, "residual": False},
        # Checkpoints from before model.name: the thesis's U-net.
        {"width": 4, "depth": 2, "kernel_size": 3, "kernel_sizes": None, "residual": False},
    ],
)
def test_load_model_builds_the_network_its_checkpoint_names(tmp_path, section, tiny_config):
    saved = _save_model_pt(tmp_path / "model.pt", section, tiny_config)
    loaded, spec = load_model(tmp_path / "model.pt")
    assert type(loaded) is type(saved) and not loaded.training and spec.model == section
    image = torch.rand(1, 1, 24, 24)
    assert torch.equal(loaded(image), saved.eval()(image))


def test_the_model_section_is_checked_against_the_named_networks_schema(tiny_config):
    from lossbench.pipeline.config import validate
    from lossbench.pipeline.config_file import ConfigError

    tiny_config["model"] = {"name": "fastmri_unet", "chans": 4, "num_pool_layers": 2}
    assert validate(tiny_config, "tiny.yaml")["model"] == {
        "name": "fastmri_unet",
        "chans": 4,
        "num_pool_layers": 2,
        "drop_prob": 0.0,
    }
    tiny_config["model"] = {"name": "fastmri_unet", "width": 4}
    with pytest.raises(
        ConfigError, match=r"^tiny\.yaml: model: Additional properties are not allowed \('width' was unexpected\)$"
    ):
        validate(tiny_config, "tiny.yaml")
    tiny_config["model"] = {"name": "resnet", "width": 4}
    with pytest.raises(
        ConfigError, match=r"^tiny\.yaml: model\.name: 'resnet' is not one of \['unet', 'fastmri_unet'\]$"
    ):
        validate(tiny_config, "tiny.yaml")
    tiny_config["model"] = {"name": "fastmri_unet", "num_pool_layers": 6}
    with pytest.raises(
        ConfigError,
        match=(
            r"^tiny\.yaml: model\.num_pool_layers: 6 pooling levels need crops of at least 2\*\*6 = 64 pixels, but"
            r" tasks\.denoise\.crop is 32 \(num_pool_layers at most 5\)$"
        ),
    ):
        validate(tiny_config, "tiny.yaml")
