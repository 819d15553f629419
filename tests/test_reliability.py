"""Reliability cases of issue 11: nothing silently wrong, nothing lost, every bad input one line.

Stale models after a change of the training data, checkpoints that are unreadable, images of
more than 8 bits, decompression bombs, images too small for the crop or the U-net, and
configuration values that used to pass validation and fail late (or take the machine down).
"""

import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import tifffile
import torch
import yaml
from PIL import Image

from lossbench.data.images import read_image, read_rgb
from lossbench.data.tasks import prepare_embedded_photos, write_valset
from lossbench.pipeline.config import load, validate
from lossbench.pipeline.config_file import ConfigError
from lossbench.pipeline.job_settings import run_settings
from lossbench.train import __main__ as train
from lossbench.train import loop as training
from lossbench.train.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint, settings_hash

from conftest import REPO, TINY_CONFIG


def _one_line(error) -> str:
    message = str(error.value if hasattr(error, "value") else error)
    assert "\n" not in message.strip() and "Traceback" not in message, message
    return message


def _denoise_config(tiny_config, **denoise):
    config = {**tiny_config, "tasks": {"denoise": {**tiny_config["tasks"]["denoise"], **denoise}}, "figures": {}}
    return validate(config)


@pytest.fixture
def denoise(tmp_path, tiny_config):
    """A tiny denoising run: spec (2 epochs of 1 step), two training photos and a validation set."""
    config = _denoise_config(tiny_config, training={"epochs": 2, "batch_size": 4})
    spec = run_settings(config, "denoise", "l1", 0)
    prepare_embedded_photos(["chelsea", "rocket"], tmp_path / "train", max_side=96)
    prepare_embedded_photos(["astronaut"], tmp_path / "val", max_side=64)
    write_valset("rgb_denoise", spec.data, tmp_path / "val", tmp_path / "val.h5")
    return spec, tmp_path


def _run(spec, root, train_dir="train", name="out", **options):
    return training.run(
        spec,
        root / train_dir,
        root / "val.h5",
        root / name,
        root / "ckpt",
        device="cpu",
        threads=1,
        progress=False,
        **options,
    )


def _weights(path):
    return torch.load(path, weights_only=False)["model"]


def _same(a, b):
    return all(torch.equal(a[key], b[key]) for key in a)


# --- 1. A changed training set is a new run, never a resume of the old model -----------------------


@pytest.mark.parametrize(
    "dotted, value",
    [
        ("tasks.denoise.data.train", ["chelsea", "coffee"]),
        ("tasks.denoise.data.max_side", 128),
        ("tasks.knee.data.train.volumes", 2),
        ("tasks.brain.data.train.slices", 3),
    ],
)
def test_the_run_settings_cover_the_data_section(tiny_config, dotted, value):
    task = dotted.split(".")[1]
    before = run_settings(validate(yaml.safe_load(yaml.safe_dump(tiny_config))), task, "l1", 0)
    *parents, last = dotted.split(".")
    node = tiny_config
    for key in parents:
        node = node[key]
    node[last] = value
    after = run_settings(validate(tiny_config), task, "l1", 0)
    assert after != before and settings_hash(after) != settings_hash(before)


def test_changed_training_images_give_a_new_model(denoise, caplog):
    spec, root = denoise
    first = _weights(_run(spec, root))
    # Other photographs under the same file names: the spec is the same, the data are not.
    shutil.rmtree(root / "train")
    (root / "train").mkdir()
    for name, other in (("chelsea", "coffee"), ("rocket", "hubble")):
        prepare_embedded_photos([other], root / "other", max_side=96)[0].rename(root / "train" / f"{name}.png")
    with caplog.at_level(logging.INFO, logger="lossbench.train.loop"):
        second = _weights(_run(spec, root))
    assert "resuming" not in caplog.text
    assert not _same(first, second), "the rerun on new images returned the old model"
    assert len(list((root / "ckpt").iterdir())) == 2  # the old run's checkpoints are kept, not overwritten
    shutil.rmtree(root / "ckpt")
    assert _same(
        second, _weights(_run(spec, root, name="fresh"))
    )  # the new model is what a fresh run on the new images gives


def test_the_cli_with_another_train_dir_starts_fresh(denoise, tiny_config, capsys):
    spec, root = denoise
    config_path = root / "config.yaml"
    # The CLI scores the configuration's metrics at every validation: MS-SSIM's 5 scales do not fit the 64-pixel
    # photograph.
    metrics = [name for name in tiny_config["metrics"] if name != "msssim"]
    config_path.write_text(
        yaml.safe_dump(
            {
                **tiny_config,
                "metrics": metrics,
                "tasks": {"denoise": {**tiny_config["tasks"]["denoise"], "training": {"epochs": 2, "batch_size": 4}}},
                "figures": {},
            }
        )
    )
    prepare_embedded_photos(["coffee", "hubble"], root / "train_b", max_side=96)

    def cli(train_dir):
        train.main(
            [
                "--config",
                str(config_path),
                "--task",
                "denoise",
                "--loss",
                "l1",
                "--train-dir",
                str(root / train_dir),
                "--valset",
                str(root / "val.h5"),
                "--out",
                str(root / "cli"),
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        return _weights(root / "cli" / "model.pt")

    assert not _same(cli("train"), cli("train_b"))


# --- 2. Unreadable checkpoints are moved aside and never eat new ones -------------------------------


def test_pruning_keeps_the_checkpoint_just_written(tmp_path):
    for step in (90, 120):  # higher-numbered files of an earlier run
        torch.save({"progress": {"step": step}}, tmp_path / f"step_{step:09d}.pt")
    path = save_checkpoint(tmp_path, {"progress": {"step": 3}})
    assert path.exists()
    save_checkpoint(tmp_path, {"progress": {"step": 6}})
    assert path.exists()  # the newest two of this run: steps 3 and 6
    save_checkpoint(tmp_path, {"progress": {"step": 9}})
    assert not path.exists() and sorted(p.name for p in tmp_path.glob("step_*.pt"))[:2] == [
        "step_000000006.pt",
        "step_000000009.pt",
    ]


def test_unreadable_checkpoints_are_moved_aside_with_one_warning_line(tmp_path, caplog):
    for step in (4, 8):
        (tmp_path / f"step_{step:09d}.pt").write_bytes(b"not a checkpoint")
    torch.save({"model": {}}, tmp_path / "step_000000002.pt")  # readable, but no checkpoint
    with caplog.at_level(logging.WARNING, logger="lossbench.train.checkpoint"):
        assert load_checkpoint(tmp_path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"step_{step:09d}.pt.corrupt" for step in (2, 4, 8)]
    restart = [record.getMessage() for record in caplog.records if "restarts from step 0" in record.getMessage()]
    assert len(restart) == 1 and "3 moved aside as *.corrupt" in restart[0]
    assert all("\n" not in record.getMessage() for record in caplog.records)


@pytest.fixture
def long_run(tmp_path, tiny_config):
    """A 40-step denoising run (checkpoints every step), its config file, data and uninterrupted weights."""
    config = {
        **tiny_config,
        "tasks": {
            "denoise": {
                **tiny_config["tasks"]["denoise"],
                "crops_per_image": 20,
                "training": {"epochs": 2, "batch_size": 2},
            }
        },
        "figures": {},
        "trainer": {"checkpoint_every": 1},
        "metrics": [name for name in tiny_config["metrics"] if name != "msssim"],
    }  # MS-SSIM does not fit 64 pixels
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    spec = run_settings(validate(config), "denoise", "l1", 0)
    prepare_embedded_photos(["chelsea", "rocket"], tmp_path / "train", max_side=96)
    prepare_embedded_photos(["astronaut"], tmp_path / "val", max_side=64)
    write_valset("rgb_denoise", spec.data, tmp_path / "val", tmp_path / "val.h5")
    reference = training.run(
        spec,
        tmp_path / "train",
        tmp_path / "val.h5",
        tmp_path / "reference",
        tmp_path / "ckpt_reference",
        device="cpu",
        threads=1,
        progress=False,
        checkpoint_every=1,
    )
    return tmp_path, _weights(reference)


def _cli(root):
    command = [
        sys.executable,
        "-m",
        "lossbench.train",
        "--config",
        str(root / "config.yaml"),
        "--task",
        "denoise",
        "--loss",
        "l1",
        "--train-dir",
        str(root / "train"),
        "--valset",
        str(root / "val.h5"),
        "--out",
        str(root / "killed"),
        "--checkpoints",
        str(root / "ckpt"),
        "--device",
        "cpu",
        "--no-progress",
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_all_checkpoints_corrupted_then_a_kill_resumes_from_a_new_one(long_run):
    root, reference = long_run
    # The state after 40 steps of work and a disk fault: every kept checkpoint unreadable.
    shutil.copytree(root / "ckpt_reference", root / "ckpt")
    corrupted = sorted((root / "ckpt").rglob("step_*.pt"))
    assert [int(p.stem.removeprefix("step_")) for p in corrupted] == [39, 40]
    for path in corrupted:
        path.write_bytes(path.read_bytes()[:100])
    process = _cli(root)
    deadline = time.monotonic() + 120
    # Wait for a checkpoint of the restarted run (below step 39) to stay on disk, then kill the job.
    while not any(int(p.stem.removeprefix("step_")) < 39 for p in (root / "ckpt").rglob("step_*.pt")):
        assert process.poll() is None, f"the restarted run kept no checkpoint of its own:\n{process.stdout.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0]
    assert "(2 moved aside as *.corrupt): training restarts from step 0" in output, output
    assert sorted(p.name for p in (root / "ckpt").rglob("*.corrupt")) == [p.name + ".corrupt" for p in corrupted]
    rerun = _cli(root)
    output = rerun.communicate()[0]
    assert rerun.returncode == 0, output
    assert "resuming" in output and ".corrupt" not in output.split("resuming")[1].splitlines()[0], output
    assert _same(_weights(root / "killed" / "model.pt"), reference)


def _simulate_cuda(monkeypatch, count):
    """torch's real CUDA RNG functions over ``count`` simulated devices (CPU generators stand in)."""
    import torch.cuda.random as cuda_random

    generators = tuple(torch.Generator().manual_seed(100 + index) for index in range(count))
    monkeypatch.setattr(torch.cuda, "default_generators", generators)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name, value in (
        ("_lazy_init", lambda: None),
        ("_lazy_call", lambda callback, **kwargs: callback()),
        ("is_initialized", lambda: True),
        ("device_count", lambda: count),
        ("current_device", lambda: 0),
    ):
        monkeypatch.setattr(cuda_random, name, value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    return generators


def test_resume_on_fewer_gpus_restores_the_training_device_rng_only(monkeypatch):
    saved_on = _simulate_cuda(monkeypatch, 2)
    states = rng_states(torch.device("cuda", 1))  # trained on the second GPU of a workstation
    resumed_on = _simulate_cuda(monkeypatch, 1)  # resumed under SLURM with one GPU
    restore_rng_states(states, torch.device("cuda", 0))
    assert torch.equal(resumed_on[0].get_state(), saved_on[1].get_state())
    cpu_states = rng_states(torch.device("cpu"))
    assert "cuda" not in cpu_states


def test_checkpoints_load_onto_the_cpu(denoise):
    spec, root = denoise
    _run(spec, root)
    checkpoint, _ = load_checkpoint(next((root / "ckpt").iterdir()))
    tensors = [v for v in checkpoint["model"].values()] + [
        v for s in checkpoint["optimizer"]["state"].values() for v in s.values()
    ]
    assert all(t.device.type == "cpu" for t in tensors)


# --- 4. Images at their real bit depth, bombs and too-small images ----------------------------------


def _gradient16(path):
    values = (np.linspace(0, 1, 96 * 64).reshape(64, 96) * 65535).round().astype(np.uint16)
    Image.fromarray(values).save(path)
    return values


def test_16_bit_png_is_scaled_by_its_range(tmp_path):
    values = _gradient16(tmp_path / "gray16.png")
    Image.fromarray((values / 257).round().astype(np.uint8)).save(tmp_path / "gray8.png")
    image = read_rgb(tmp_path / "gray16.png")
    assert image.shape == (64, 96, 3) and np.allclose(image[..., 1], values / 65535, atol=1e-6)
    assert np.abs(image - read_rgb(tmp_path / "gray8.png")).max() <= 0.5 / 255 + 1e-6
    # The metrics CLI agrees: the 16-bit image against its 8-bit copy is a near match, not 4.8 dB.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lossbench.metrics",
            "--metric",
            "psnr",
            str(tmp_path / "gray8.png"),
            str(tmp_path / "gray16.png"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("psnr = ") and result.stdout.rstrip().endswith(" dB")
    assert float(result.stdout.split()[2]) > 50
    gray = subprocess.run(
        [
            sys.executable,
            "-m",
            "lossbench.metrics",
            "--metric",
            "psnr",
            "--gray",
            str(tmp_path / "gray8.png"),
            str(tmp_path / "gray16.png"),
        ],
        capture_output=True,
        text=True,
    )
    assert float(gray.stdout.split()[2]) > 50, gray.stderr


def test_float_tiff_is_read_as_it_is_and_out_of_range_floats_are_refused(tmp_path):
    values = np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(32, 48)
    tifffile.imwrite(tmp_path / "float.tif", values)
    assert np.array_equal(read_image(tmp_path / "float.tif", gray=True), values)
    assert np.array_equal(read_rgb(tmp_path / "float.tif")[..., 2], values)
    tifffile.imwrite(tmp_path / "hdr.tif", values * 4)
    with pytest.raises(
        ValueError, match=r"hdr\.tif: float image has values in \[0, 4\], expected finite values in \[0, 1\]"
    ) as error:
        read_rgb(tmp_path / "hdr.tif")
    _one_line(error)
    tifffile.imwrite(tmp_path / "int32.tif", (values * 1000).astype(np.int32))
    with pytest.raises(ValueError, match=r"int32\.tif: image mode I has no defined value range") as error:
        read_rgb(tmp_path / "int32.tif")
    _one_line(error)


def _bomb(path, side=20000):
    """A PNG whose header declares side × side pixels (no pixel data: PIL refuses it at the header)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")
    )
    return path


def test_a_decompression_bomb_is_one_line_naming_the_file(denoise):
    spec, root = denoise
    bomb = _bomb(root / "train" / "huge.png")
    with pytest.raises(ValueError, match=r"huge\.png: refused as a possible decompression bomb") as error:
        read_rgb(bomb)
    _one_line(error)
    result = subprocess.run(
        [sys.executable, "-m", "lossbench.metrics", "--metric", "l1", str(bomb), str(bomb)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and result.stderr.strip().startswith(
        f"error: {bomb}: refused as a possible decompression bomb"
    ), result.stderr
    _one_line(result.stderr)
    with pytest.raises(ValueError, match=r"huge\.png: refused") as error:
        _run(spec, root)
    assert not (root / "ckpt").exists()  # refused before any training


def test_a_training_image_smaller_than_the_crop_is_refused_before_training(denoise):
    spec, root = denoise
    Image.new("RGB", (40, 20)).save(root / "train" / "small.png")
    with pytest.raises(
        ValueError,
        match=(
            r"small\.png: image 40×20 is smaller than the 32×32 crop \(tasks\.denoise\.crop\): every training image"
            r" needs at least 32 pixels per side"
        ),
    ) as error:
        _run(spec, root)
    _one_line(error)
    assert not (root / "ckpt").exists() and not (root / "out").exists()


def test_a_1x1_validation_image_is_refused_before_training(denoise):
    spec, root = denoise
    Image.new("RGB", (1, 1)).save(root / "val" / "dot.png")
    write_valset("rgb_denoise", spec.data, root / "val", root / "val.h5")
    with pytest.raises(
        ValueError,
        match=(
            r"val\.h5: validation image 'dot' is 1×1, smaller than the 4×4 minimum of a U-net of depth 2"
            r" \(2\*\*model\.depth\)"
        ),
    ) as error:
        _run(spec, root)
    _one_line(error)
    assert not (root / "ckpt").exists()


# --- 5. Configuration values refused at config time, in one line naming the key ---------------------


def _set(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {}) if key == "params" else node[key]
    node[last] = value


@pytest.mark.parametrize(
    "dotted, value, message",
    [
        ("losses.l1.lr", float("nan"), r"tiny\.yaml: losses\.l1\.lr: nan is not a finite number"),
        (
            "tasks.denoise.sigma_train",
            [float("nan"), 10],
            r"tiny\.yaml: tasks\.denoise\.sigma_train\.0: nan is not a finite number",
        ),
        ("tasks.denoise.sigma_val", float("inf"), r"tasks\.denoise\.sigma_val: inf is not a finite number"),
        ("model.depth", 50, r"tiny\.yaml: model\.depth: 50 is greater than the maximum of 16"),
        (
            "model.depth",
            6,
            (
                r"tiny\.yaml: model\.depth: 6 pooling levels need crops of at least 2\*\*6 = 64 pixels, but"
                r" tasks\.denoise\.crop is 32 \(depth at most 5\)"
            ),
        ),
        (
            "model.width",
            200000,
            (
                r"tiny\.yaml: model: a U-net of width 200000 and depth 2 needs about [\d.e+]+ GiB to train on"
                r" tasks\.denoise \(4 crops of 32×32\), over the 256 GiB limit"
            ),
        ),
        (
            "tasks.knee.mask",
            {"center_fraction": 0.5, "acceleration": 8},
            r"tiny\.yaml: tasks\.knee\.mask\.center_fraction: 0\.5 exceeds 1/acceleration = 0\.125",
        ),
        (
            "losses.l1.params.weight",
            2.0,
            r"tiny\.yaml: losses\.l1\.params\.weight: not a parameter of the l1 loss \(it takes reduction\)",
        ),
        (
            "losses.flip.params.ppdd",
            67.0,
            (
                r"tiny\.yaml: losses\.flip\.params\.ppdd: not a parameter of the flip loss \(it takes ppd, mode,"
                r" out_of_range, reduction\)"
            ),
        ),
        (
            "tasks.denoise.crop",
            200,
            (
                r"tiny\.yaml: tasks\.denoise\.data\.train: photo 'chelsea' is 192×128 \(after max_side 192\), smaller"
                r" than the 200×200 crop \(tasks\.denoise\.crop\)"
            ),
        ),
        (
            "tasks.denoise.data.max_side",
            3,
            r"tasks\.denoise\.data\.train: photo 'chelsea' is 3×2 \(after max_side 3\), smaller than the 32×32 crop",
        ),
        (
            "tasks.knee.crop",
            400,
            (
                r"tiny\.yaml: tasks\.knee\.crop: 400 is larger than the synthetic 320×320 images"
                r" \(tasks\.knee\.data\.matrix\)"
            ),
        ),
    ],
)
def test_late_failing_values_are_refused_at_config_time(tiny_config, dotted, value, message):
    _set(tiny_config, dotted, value)
    with pytest.raises(ConfigError, match=message) as error:
        validate(tiny_config, "tiny.yaml")
    _one_line(error)


def test_a_validation_photo_smaller_than_the_unet_allows_is_refused(tiny_config):
    tiny_config["tasks"]["denoise"]["data"].update(train=["astronaut"], val=["chelsea"], max_side=40)
    # Kernels of 1: a 3×3 kernel would be refused first, wider than the 1×1 maps of level 5 of a 32-pixel crop.
    tiny_config["model"].update(depth=5, kernel_size=1)
    tiny_config["figures"] = {}
    with pytest.raises(
        ConfigError,
        match=(
            r"tasks\.denoise\.data\.val: photo 'chelsea' is 40×27 \(after max_side 40\), smaller than the U-net's"
            r" 2\*\*model\.depth = 32"
        ),
    ) as error:
        validate(tiny_config, "tiny.yaml")
    _one_line(error)


def test_empty_training_folders_are_refused(tiny_config, tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.txt").write_text("no images here")
    (tmp_path / "val").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "val" / "a.png")
    tiny_config["tasks"]["denoise"]["data"] = {
        "source": "folder",
        "train_dir": str(tmp_path / "train"),
        "val_dir": str(tmp_path / "val"),
    }
    with pytest.raises(
        ConfigError, match=r"tiny\.yaml: tasks\.denoise\.data\.train_dir: folder '.*train' holds no image files"
    ) as error:
        validate(tiny_config, "tiny.yaml")
    _one_line(error)
    tiny_config["tasks"]["knee"]["data"] = {
        "source": "fastmri",
        "train_dir": str(tmp_path / "val"),
        "val_dir": str(tmp_path / "val"),
    }
    tiny_config["tasks"]["denoise"]["data"]["train_dir"] = str(tmp_path / "val")
    with pytest.raises(ConfigError, match=r"tasks\.knee\.data\.train_dir: folder '.*val' holds no fastMRI \.h5 files"):
        validate(tiny_config, "tiny.yaml")


def test_duplicate_yaml_keys_are_refused_naming_the_line(tmp_path):
    text = TINY_CONFIG.read_text().replace("  l1: {lr: 1.0e-3}\n", "  l1: {lr: 1.0e-3}\n  flip: {lr: 1.0}\n", 1)
    (tmp_path / "dup.yaml").write_text(text)
    line = text.splitlines().index("  flip: {lr: 1.0}") + 1
    with pytest.raises(
        ConfigError, match=rf"dup\.yaml: line {line + 2}: duplicate key 'flip' \(each key may appear once per mapping\)"
    ) as error:
        load(tmp_path / "dup.yaml")
    _one_line(error)


def _snakemake(workdir, *args):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--dry-run",
            "--cores",
            "1",
            *args,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return result.returncode, (result.stdout + result.stderr).strip()


def test_the_workflow_refuses_duplicate_keys_and_bad_config_overrides(tmp_path):
    duplicated = tmp_path / "dup.yaml"
    duplicated.write_text(TINY_CONFIG.read_text().replace("model: {", "threads: 2\nmodel: {", 1))
    line = duplicated.read_text().splitlines().index("threads: 2") + 1
    code, output = _snakemake(tmp_path, "--configfile", str(duplicated))
    assert (
        code != 0
        and output.splitlines()[-1]
        == f"Configuration error: {duplicated}: line {line}: duplicate key 'threads' (each key may appear once per"
        " mapping)"
    ), output
    assert "Traceback" not in output
    # Snakemake merges --config into the configuration (nested values as strings); the merged result is validated.
    code, output = _snakemake(tmp_path, "--configfile", str(TINY_CONFIG), "--config", "threads=nan")
    assert (
        code != 0
        and output.splitlines()[-1]
        == f"Configuration error: --config threads (over {TINY_CONFIG}): threads: nan is not a finite number"
    ), output
