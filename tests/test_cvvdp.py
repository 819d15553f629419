"""The ColorVideoVDP metric (lossbench.metrics.cvvdp) against the official pycvvdp API called directly.

The oracle is the official package of the optional extra ``cvvdp`` (in the ``test`` extra): a fresh
``pycvvdp.cvvdp`` object, fed the 8-bit files as it reads images itself (HWC uint8). The pairs are the five
TID2013 pairs of pyiqa's calibration table, as tests/test_dists.py reads them.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pycvvdp
import pytest
import torch
from PIL import Image

from lossbench import metrics
from lossbench.core.specs import Setting
from lossbench.flip import DEFAULT_PPD, pixels_per_degree
from lossbench.metrics import cvvdp as cvvdp_module
from lossbench.registry import PACKAGE

PYIQA = "pyiqa==0.1.16"
PYIQA_SDIST = "pyiqa-0.1.16.tar.gz"
PYIQA_SHA256 = "80fb913302585a774875c224b4f95068ac17bebd88f735876e6f0c3bb0988d34"
PAIRS = ("I03", "I04", "I06", "I08", "I19")
#: Our values against the official API's on the same images and screen (JOD).
TOLERANCE = 1e-4

REPO = Path(__file__).resolve().parents[1]


def _oracle(test: np.ndarray, reference: np.ndarray, ppd: float | None) -> float:
    """The official API on (H, W, 3) arrays: standard_4k, its own geometry (``ppd`` None) or a fixed ppd."""
    geometry = None if ppd is None else pycvvdp.vvdp_display_geometry((3840, 2160), ppd=ppd)
    official = pycvvdp.cvvdp(
        display_name="standard_4k", display_geometry=geometry, quiet=True, device=torch.device("cpu")
    )
    return float(official.predict(test, reference, dim_order="HWC")[0])


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.transpose(2, 0, 1).copy()).float().div(255)[None]


@pytest.fixture(scope="module")
def tid2013(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The five (distorted, reference) TID2013 pairs, (384, 512, 3) uint8, from pyiqa's pinned sdist."""
    folder = tmp_path_factory.mktemp("pyiqa")
    (folder / "requirements.txt").write_text(f"{PYIQA} --hash=sha256:{PYIQA_SHA256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
        "--disable-pip-version-check", "--dest", str(folder), "-r", str(folder / "requirements.txt"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    root = f"{PYIQA_SDIST.removesuffix('.tar.gz')}/ResultsCalibra"
    with tarfile.open(folder / PYIQA_SDIST) as archive:

        def image(path: str) -> np.ndarray:
            return np.asarray(Image.open(io.BytesIO(archive.extractfile(f"{root}/{path}").read())).convert("RGB"))

        return {name: (image(f"dist_dir/{name}.bmp"), image(f"ref_dir/{name}.bmp")) for name in PAIRS}


def test_tid2013_pairs_match_the_official_api_at_flips_ppd(tid2013) -> None:
    for name, (test, reference) in tid2013.items():
        ours = float(metrics.compute("cvvdp", _tensor(test), _tensor(reference), ppd=DEFAULT_PPD)[0])
        assert ours == pytest.approx(_oracle(test, reference, DEFAULT_PPD), abs=TOLERANCE), name
        assert 0 < ours < cvvdp_module.BEST


def test_at_standard_4ks_own_geometry_it_is_the_official_default(tid2013) -> None:
    """Only the ppd of the geometry is replaced: at standard_4k's own ppd the values are cvvdp's defaults."""
    own = pycvvdp.vvdp_display_geometry.load("standard_4k", []).get_ppd()
    assert own == pytest.approx(75.40, abs=0.01) and abs(own - DEFAULT_PPD) > 8
    test, reference = tid2013["I04"]
    ours = float(metrics.compute("cvvdp", _tensor(test), _tensor(reference), ppd=own)[0])
    assert ours == pytest.approx(_oracle(test, reference, None), abs=TOLERANCE)
    # The ppd matters: FLIP's screen gives another value.
    assert abs(ours - _oracle(test, reference, DEFAULT_PPD)) > 10 * TOLERANCE


def test_batch_is_per_image_and_identical_images_score_the_maximum(tid2013) -> None:
    tests = torch.cat([_tensor(tid2013[name][0]) for name in ("I03", "I19")])
    references = torch.cat([_tensor(tid2013[name][1]) for name in ("I03", "I19")])
    values = metrics.compute("cvvdp", tests, references, ppd=DEFAULT_PPD)
    assert values.shape == (2,) and values.dtype == torch.float32
    for index, name in enumerate(("I03", "I19")):
        assert float(values[index]) == pytest.approx(_oracle(*tid2013[name], DEFAULT_PPD), abs=TOLERANCE)
    same = metrics.compute("cvvdp", references, references.clone(), ppd=DEFAULT_PPD)
    assert torch.equal(same, torch.full((2,), cvvdp_module.BEST)) and metrics.spec("cvvdp").best == 10.0


def test_grayscale_is_the_gray_picture_on_the_same_screen(tid2013) -> None:
    test, reference = (array.mean(axis=2).round().astype(np.uint8) for array in tid2013["I08"])
    gray = [torch.from_numpy(array).float().div(255)[None, None] for array in (test, reference)]
    ours = float(metrics.compute("cvvdp", *gray, ppd=DEFAULT_PPD)[0])
    replicated = [np.repeat(array[..., None], 3, axis=2) for array in (test, reference)]
    assert ours == pytest.approx(_oracle(*replicated, DEFAULT_PPD), abs=TOLERANCE)
    assert float(metrics.compute("cvvdp", gray[1], gray[1], ppd=DEFAULT_PPD)[0]) == cvvdp_module.BEST


def test_the_ppd_is_evaluation_flips_as_flip_sees_it() -> None:
    evaluation = {"flip": {"ppd": None, "distance_m": 0.5, "monitor_width_m": 0.6, "monitor_pixels": 2560}}
    expected = pixels_per_degree(0.5, 0.6, 2560)
    for channels in (1, 3):
        setting = Setting(channels, evaluation)
        params = metrics.spec("cvvdp").params(setting)
        assert params == {"ppd": metrics.spec("flip").params(setting)["ppd"]} and params["ppd"] == expected
    # What pycvvdp receives: the metric object its values come from sees that many pixels per degree.
    assert cvvdp_module.official(expected).pix_per_deg == expected
    assert metrics.spec("cvvdp").params(Setting(3, {"flip": {"ppd": 40.0}})) == {"ppd": 40.0}
    assert "at 67.0 pixels per degree" in metrics.spec("cvvdp").conditions({"ppd": DEFAULT_PPD})


def test_out_of_range_values_are_clipped_and_bad_inputs_are_one_line() -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 24, 32, generator=generator)
    output = target + 0.3 * torch.randn(target.shape, generator=generator)
    ours = metrics.compute("cvvdp", output, target, ppd=DEFAULT_PPD)
    assert torch.equal(ours, metrics.compute("cvvdp", output.clamp(0, 1), target, ppd=DEFAULT_PPD))
    with pytest.raises(ValueError, match=r"^cvvdp: image of \(1, 32\) pixels, expected sides of at least 2$"):
        metrics.compute("cvvdp", target[:, :, :1], target[:, :, :1])
    assert metrics.spec("cvvdp").too_small(1) is not None and metrics.spec("cvvdp").too_small(2) is None


def test_it_never_reaches_the_network() -> None:
    """In a process where every connection and name lookup is recorded and refused, without HF_HUB_OFFLINE."""
    code = """
import socket
attempts = []
def refuse(*args, **kwargs):
    attempts.append(args[:2])
    raise OSError("network disabled by the test")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.getaddrinfo = socket.create_connection = refuse
import torch
from lossbench import metrics
target = torch.rand(2, 3, 32, 40)
values = metrics.compute("cvvdp", (target + 0.05).clamp(0, 1), target)
print(values.shape[0], attempts)
"""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))}
    env["PYTHONPATH"] = str(REPO / "src")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "2 []"


#: Run before the code of a subprocess: pycvvdp cannot be imported, as where the extra is not installed.
BLOCK = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
"""


def _without_extra(code: str, *argv: str, blocked: str = "pycvvdp") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    block = f"BLOCKED = {blocked!r}" + BLOCK
    return subprocess.run(
        [sys.executable, "-c", block + code, *argv], capture_output=True, text=True, env=env, timeout=300
    )


MESSAGE = "metric 'cvvdp' needs the optional extra ColorVideoVDP: pip install -e '.[cvvdp]' (pycvvdp is not installed)"


def test_without_the_extra_computing_it_is_one_line() -> None:
    code = """
import torch
from lossbench import metrics
try:
    metrics.compute("cvvdp", torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
except ImportError as error:
    print(error)
print(metrics.compute("psnr", torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.1)).shape[0])
"""
    result = _without_extra(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [MESSAGE, "1"]
    # Installed but one of its requirements missing: that one is named.
    result = _without_extra(code, blocked="einops")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        MESSAGE.replace("is not installed", "cannot be imported: No module named 'einops'"),
        "1",
    ]


def test_without_the_extra_the_command_line_says_it_and_lists_it(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        Image.fromarray(np.random.default_rng(len(name)).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            tmp_path / name
        )
    run = "import runpy; runpy.run_module('lossbench.metrics', run_name='__main__')"
    result = _without_extra(run, "--metric", "cvvdp", str(tmp_path / "a.png"), str(tmp_path / "b.png"))
    assert result.returncode == 1 and result.stderr.strip() == f"error: {MESSAGE}"
    listed = _without_extra(run, "--list")
    assert listed.returncode == 0 and any(line.startswith("cvvdp ") for line in listed.stdout.splitlines())
    assert "optional extra: pip install -e '.[cvvdp]'" in listed.stdout


def test_without_the_extra_a_configuration_that_lists_it_is_refused_up_front(tiny_config: dict, tmp_path) -> None:
    import yaml

    for metrics_list, name in ((["l1", "cvvdp"], "with.yaml"), (["l1", "psnr"], "without.yaml")):
        (tmp_path / name).write_text(yaml.safe_dump({**tiny_config, "metrics": metrics_list}))
    code = """
import sys
from lossbench.pipeline.config import load
from lossbench.pipeline.config_file import ConfigError
for path in sys.argv[1:]:
    try:
        print(sorted(load(path, require_data=False)["metrics"]))
    except ConfigError as error:
        print(error)
"""
    result = _without_extra(code, str(tmp_path / "with.yaml"), str(tmp_path / "without.yaml"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [f"{tmp_path / 'with.yaml'}: metrics: {MESSAGE}", "['l1', 'psnr']"]


def test_installed_the_configuration_takes_it(tiny_config: dict) -> None:
    from lossbench.pipeline.config import validate

    assert metrics.spec("cvvdp").unavailable() is None
    assert "cvvdp" in validate({**tiny_config, "metrics": ["l1", "cvvdp"]}, "tiny", require_data=False)["metrics"]


def test_the_agreement_table_compares_it_in_jod_directly() -> None:
    """By its spec's unit (JOD), in the package's registry as it is: ColorVideoVDP gets the direct column, PSNR not."""
    from lossbench.userstudy.agreement import agreement_rows
    from lossbench.userstudy.scaling import from_samples

    losses = ["l1", "l2", "msssim", "lpips_l2", "flip", "adaptive"]
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(1, 3, 48, 48, generator=generator)
    noise = torch.randn(target.shape, generator=generator)
    outputs = torch.cat([(target + level * noise).clamp(0, 1) for level in (0.02, 0.04, 0.06, 0.09, 0.12, 0.16)])
    jod_values = metrics.compute("cvvdp", outputs, target.expand_as(outputs), ppd=DEFAULT_PPD).double().numpy()
    psnr_values = metrics.compute("psnr", outputs, target.expand_as(outputs)).double().numpy()
    # Observers who saw what ColorVideoVDP predicts, up to JOD's free origin.
    jod = jod_values - jod_values.mean()
    samples = jod + np.random.default_rng(0).normal(0, 0.05, (40, 6))
    study = from_samples(losses, jod, samples, observers=10, resampled="trials")
    values = {"cvvdp": dict(zip(losses, jod_values)), "psnr": dict(zip(losses, psnr_values))}
    rows = {row["metric"]: row for row in agreement_rows(study, values, "synthetic", registry=PACKAGE)}
    assert float(rows["cvvdp"]["direct_rmse"]) == pytest.approx(0.0, abs=1e-9) and float(rows["cvvdp"]["tau"]) == 1.0
    assert rows["psnr"]["direct_rmse"] == ""
    assert PACKAGE.metric("cvvdp").info.unit == "JOD"
