"""LPIPS metric and LPIPS + l2 loss: weights handling, agreement with the lpips package, gradients."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lpips
import pytest
import torch
import torchvision

from lossbench.metrics.lpips import (
    ALEXNET_FILENAME,
    ALEXNET_URL,
    LPIPSL2Loss,
    LPIPSModel,
    _normalize_channels,
    get_lpips,
    lpips_distance,
    trunk_label,
)

torch.set_num_threads(1)


def _pair(n: int = 2, channels: int = 3, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(n, channels, size, size, generator=generator)
    output = (target + 0.1 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    return output, target


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deterministic random AlexNet checkpoint saved with torchvision's key names."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        state = torchvision.models.alexnet().state_dict()
    path = tmp_path_factory.mktemp("hub") / ALEXNET_FILENAME
    torch.save(state, path)
    return path


def test_identical_is_zero() -> None:
    _, target = _pair()
    assert torch.equal(lpips_distance(target, target, trunk="untrained"), torch.zeros(2))


def test_distance_shape_and_positive() -> None:
    output, target = _pair(n=3)
    distance = lpips_distance(output, target, trunk="untrained")
    assert distance.shape == (3,) and distance.dtype == torch.float32
    assert (distance > 0).all()


def test_symmetric() -> None:
    output, target = _pair()
    torch.testing.assert_close(
        lpips_distance(output, target, trunk="untrained"),
        lpips_distance(target, output, trunk="untrained"),
        rtol=0,
        atol=1e-6,
    )


def test_grayscale_is_repeated_rgb() -> None:
    output, target = _pair(channels=1)
    torch.testing.assert_close(
        lpips_distance(output, target, trunk="untrained"),
        lpips_distance(output.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1), trunk="untrained"),
    )


@pytest.mark.parametrize(
    "shapes",
    [((3, 64, 64), (3, 64, 64)), ((1, 2, 64, 64), (1, 2, 64, 64)), ((1, 3, 64, 64), (1, 3, 64, 48))],
)
def test_wrong_shapes_raise(shapes) -> None:
    with pytest.raises(ValueError):
        lpips_distance(torch.rand(*shapes[0]), torch.rand(*shapes[1]), trunk="untrained")


def test_untrained_trunk_is_deterministic_and_labelled() -> None:
    model = get_lpips("untrained")
    assert model.trunk_pretrained is False and model.weights_path is None
    assert model.label == trunk_label(False) == "LPIPS (untrained AlexNet trunk)"
    assert trunk_label(True) == "LPIPS"
    # A fresh construction (bypassing the cache) gives the same weights.
    fresh = LPIPSModel("untrained")
    for a, b in zip(model.net.parameters(), fresh.net.parameters()):
        assert torch.equal(a, b)


def test_construction_leaves_global_rng_alone() -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    LPIPSModel("untrained")
    assert torch.equal(torch.rand(3), expected)


def test_pretrained_file_is_loaded(alexnet_file: Path) -> None:
    model = get_lpips("pretrained", weights_path=alexnet_file)
    assert model.trunk_pretrained is True and model.weights_path == alexnet_file
    state = torch.load(alexnet_file, weights_only=True)
    trunk = model.net.net.state_dict()
    assert torch.equal(trunk["slice2.3.weight"], state["features.3.weight"])
    assert torch.equal(trunk["slice5.10.bias"], state["features.10.bias"])


def test_auto_uses_hub_cache_file(alexnet_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = alexnet_file.parent.parent
    (hub / "checkpoints").mkdir(exist_ok=True)
    cached = hub / "checkpoints" / ALEXNET_FILENAME
    cached.write_bytes(alexnet_file.read_bytes())
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    assert get_lpips("auto").trunk_pretrained is True
    assert LPIPSL2Loss().trunk_pretrained is True


def test_auto_without_file_warns_and_is_untrained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="lossbench.metrics.lpips"):
        model = LPIPSModel("auto")
    assert model.trunk_pretrained is False
    assert "untrained trunk" in caplog.text
    output, target = _pair()
    # Same seeded trunk as trunk="untrained".
    torch.testing.assert_close(model(output, target), lpips_distance(output, target, trunk="untrained"))


def test_pretrained_without_file_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        get_lpips("pretrained")
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "checkpoints" / ALEXNET_FILENAME) in message and ALEXNET_URL in message
    with pytest.raises(FileNotFoundError):
        LPIPSL2Loss(trunk="pretrained")
    with pytest.raises(FileNotFoundError):
        get_lpips("auto", weights_path=tmp_path / "missing.pth")


def test_bad_checkpoint_and_bad_trunk(tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="features"):
        get_lpips("pretrained", weights_path=path)
    with pytest.raises(ValueError, match="trunk"):
        get_lpips("imagenet")


def test_matches_lpips_package(alexnet_file: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    state = torch.load(alexnet_file, weights_only=True)
    reference.net.load_state_dict({k: state["features." + k.split(".", 1)[1]] for k in reference.net.state_dict()})
    output, target = _pair(n=3, size=96)
    expected = reference(output, target, normalize=True).flatten()
    ours = lpips_distance(output, target, trunk="pretrained", weights_path=alexnet_file)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)
    gray_out, gray_target = output[:, :1], target[:, :1]
    expected = reference(gray_out.repeat(1, 3, 1, 1), gray_target.repeat(1, 3, 1, 1), normalize=True).flatten()
    ours = lpips_distance(gray_out, gray_target, trunk="pretrained", weights_path=alexnet_file)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


def test_loss_value_and_no_parameters() -> None:
    output, target = _pair()
    loss_fn = LPIPSL2Loss(lpips_weight=0.5, l2_weight=2.0, trunk="untrained")
    assert list(loss_fn.parameters()) == [] and list(loss_fn.buffers()) == []
    expected = 0.5 * lpips_distance(output, target, trunk="untrained").mean() + 2.0 * (output - target).square().mean()
    torch.testing.assert_close(loss_fn(output, target), expected)
    loss_fn.train()
    assert not get_lpips("untrained").net.training
    assert not any(p.requires_grad for p in get_lpips("untrained").net.parameters())


@pytest.mark.parametrize(
    "make_pair",
    [
        lambda: (_pair()[1], _pair()[1]),
        lambda: (torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)),
        lambda: (torch.zeros(1, 1, 64, 64), torch.rand(1, 1, 64, 64)),
        lambda: _pair(),
    ],
    ids=["identical", "black", "black-vs-noise-gray", "noisy"],
)
def test_loss_gradient_finite(make_pair, alexnet_file: Path) -> None:
    output, target = make_pair()
    for loss_fn in (LPIPSL2Loss(trunk="untrained"), LPIPSL2Loss(trunk="pretrained", weights_path=alexnet_file)):
        leaf = output.clone().requires_grad_()
        loss = loss_fn(leaf, target)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(leaf.grad).all()


def test_zero_features_have_finite_gradient() -> None:
    # lpips' own normalize_tensor returns NaN gradients at an all-zero feature vector.
    features = torch.zeros(1, 4, 2, 2, requires_grad=True)
    _normalize_channels(features).square().sum().backward()
    assert torch.isfinite(features.grad).all()
    features = torch.rand(1, 4, 2, 2)
    torch.testing.assert_close(_normalize_channels(features), lpips.normalize_tensor(features), rtol=0, atol=1e-7)


def test_bfloat16_autocast() -> None:
    output, target = _pair()
    expected = LPIPSL2Loss(trunk="untrained")(output, target)
    leaf = output.clone().requires_grad_()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = LPIPSL2Loss(trunk="untrained")(leaf, target)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-6)
    loss.backward()
    assert torch.isfinite(leaf.grad).all()

    bf16 = output.bfloat16().requires_grad_()
    loss = LPIPSL2Loss(trunk="untrained")(bf16, target.bfloat16())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(bf16.grad.float()).all()
