"""Training that survives: kill and resume bit for bit, SIGTERM checkpoints, corrupted checkpoints, NaN guard."""

import csv
import logging
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch
import yaml

from lossbench.data.fastmri_synthetic import generate_dataset
from lossbench.data.tasks import prepare_embedded_photos, write_valset
from lossbench.pipeline.config import validate
from lossbench.pipeline.job_settings import run_settings
from lossbench.train import loop as training
from lossbench.train.checkpoint import KEEP_CHECKPOINTS, load_checkpoint
from lossbench.train.run_settings import Schedule

#: 8 training crops in batches of 2: 4 steps per epoch, so kills land mid-epoch too.
EPOCHS, STEPS_PER_EPOCH = 2, 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny denoising run (config file, data, validation set) and its uninterrupted final weights."""
    root = tmp_path_factory.mktemp("resume")
    with open(os.path.join(os.path.dirname(__file__), "data", "config_tiny.yaml")) as handle:
        config = yaml.safe_load(handle)
    config["tasks"] = {"denoise": config["tasks"]["denoise"]}
    config["tasks"]["denoise"].update(crops_per_image=4, training={"epochs": EPOCHS, "batch_size": 2})
    config["trainer"] = {"checkpoint_every": 3}
    config["figures"] = {}
    # The CLI scores these at every validation (LPIPS builds a network: its draws must not move the
    # weights, which are compared with a run without metrics); MS-SSIM's 5 scales do not fit 64 pixels.
    config["metrics"] = ["l1", "psnr", "lpips", "flip"]
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    config = validate(config)
    spec = run_settings(config, "denoise", "l1", 0)
    prepare_embedded_photos(["chelsea", "rocket"], root / "train", max_side=96)
    prepare_embedded_photos(["astronaut"], root / "val", max_side=64)
    write_valset("rgb_denoise", spec.data, root / "val", root / "val.h5")
    reference = training.run(
        spec,
        root / "train",
        root / "val.h5",
        root / "reference",
        root / "ckpt_reference",
        device="cpu",
        threads=1,
        progress=False,
        checkpoint_every=3,
    )
    return root, spec, torch.load(reference, weights_only=False)["model"]


def _cli(root, name):
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
        "--seed",
        "0",
        "--train-dir",
        str(root / "train"),
        "--valset",
        str(root / "val.h5"),
        "--out",
        str(root / name),
        "--checkpoints",
        str(root / f"ckpt_{name}"),
        "--device",
        "cpu",
        "--no-progress",
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _checkpoint_steps(folder):
    return sorted(int(path.stem.removeprefix("step_")) for path in folder.rglob("step_*.pt"))


def _wait_for_step(process, folder, step, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not any(s >= step for s in _checkpoint_steps(folder)):
        assert process.poll() is None, f"training ended before step {step}:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, f"no checkpoint of step {step} after {timeout} s"
        time.sleep(0.02)


def _assert_same_weights(path, reference):
    weights = torch.load(path, weights_only=False)["model"]
    assert weights.keys() == reference.keys()
    different = [key for key in reference if not torch.equal(weights[key], reference[key])]
    assert not different, f"resumed weights differ from the uninterrupted run's in {different}"


def test_sigkill_at_a_random_step_then_rerun_gives_identical_weights(setup):
    root, _, reference = setup
    kill_after = random.randint(1, EPOCHS * STEPS_PER_EPOCH - 2)
    process = _cli(root, "killed")
    _wait_for_step(process, root / "ckpt_killed", kill_after)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (root / "killed" / "model.pt").exists()
    # The curve beside the checkpoints holds every validation done before the kill (the outputs may be deleted).
    completed = max(_checkpoint_steps(root / "ckpt_killed")) // STEPS_PER_EPOCH
    live = list((root / "ckpt_killed").rglob("curve.csv"))
    if completed:
        with open(live[0]) as handle, open(root / "reference" / "curve.csv") as expected:
            rows, reference_rows = list(csv.DictReader(handle)), list(csv.DictReader(expected))
        assert len(rows) in (completed, completed + 1), f"{len(rows)} rows after {completed} epochs"
        assert [row["val_loss"] for row in rows] == [row["val_loss"] for row in reference_rows[: len(rows)]]
    rerun = _cli(root, "killed")
    output = rerun.communicate()[0]
    assert rerun.returncode == 0, output
    assert "resuming" in output, output
    _assert_same_weights(root / "killed" / "model.pt", reference)
    with open(root / "killed" / "curve.csv") as handle, open(root / "reference" / "curve.csv") as expected:
        rows, reference_rows = list(csv.DictReader(handle)), list(csv.DictReader(expected))
    # The reference was trained without validation metrics: its columns are the resumed run's, but for them.
    assert [{k: row[k] for k in reference_rows[0] if k != "seconds"} for row in rows] == [
        {k: v for k, v in row.items() if k != "seconds"} for row in reference_rows
    ], f"killed after step {kill_after}"
    assert all(row[f"val_{name}"] for row in rows for name in ("l1", "lpips", "flip")), rows


def test_sigterm_checkpoints_exits_nonzero_and_resumes(setup, caplog):
    root, spec, reference = setup
    process = _cli(root, "terminated")
    _wait_for_step(process, root / "ckpt_terminated", 1)
    process.send_signal(signal.SIGTERM)
    output = process.communicate()[0]
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "SIGTERM received: checkpoint" in output
    steps = _checkpoint_steps(root / "ckpt_terminated")
    assert len(steps) <= KEEP_CHECKPOINTS and steps[-1] < EPOCHS * STEPS_PER_EPOCH
    # The newest checkpoint is corrupted: the resume falls back to the one before, with a warning.
    newest = sorted((root / "ckpt_terminated").rglob("step_*.pt"))[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with caplog.at_level(logging.INFO, logger="lossbench"):
        path = training.run(
            spec,
            root / "train",
            root / "val.h5",
            root / "terminated",
            root / "ckpt_terminated",
            device="cpu",
            threads=1,
            progress=False,
            checkpoint_every=3,
        )
    if len(steps) == KEEP_CHECKPOINTS:
        assert f"{newest} is unreadable" in caplog.text and "resuming" in caplog.text
    _assert_same_weights(path, reference)


def test_checkpoints_are_pruned_to_the_last_two(setup):
    root, _, _ = setup
    steps = _checkpoint_steps(root / "ckpt_reference")
    assert steps == [6, EPOCHS * STEPS_PER_EPOCH]  # every 3 steps and each epoch's end, newest two kept
    assert not list((root / "ckpt_reference").rglob("*.tmp"))


def test_diverging_weights_stop_with_one_line_and_keep_the_good_checkpoints(setup):
    root, spec, _ = setup
    # Adam moves every weight by about lr per step: with 1e30 the moments and the forward pass overflow.
    diverging = replace(spec, lr=1e30, trainer=replace(spec.trainer, nonfinite="skip"))
    with pytest.raises(training.NonFiniteError) as error:
        training.run(
            diverging,
            root / "train",
            root / "val.h5",
            root / "nan",
            root / "ckpt_nan",
            device="cpu",
            threads=1,
            progress=False,
            checkpoint_every=1,
        )
    message = str(error.value)
    match = re.match(
        r"non-finite (?:loss \S+|weights after the optimiser step \(loss \S+\)) at step (\d+) \(epoch 1, batch \d+\);"
        r" last finite loss (\S+); stopped",
        message,
    )
    assert match and "\n" not in message, message
    assert not (root / "nan" / "model.pt").exists()
    checkpoint, _ = load_checkpoint(next((root / "ckpt_nan").iterdir()))
    assert checkpoint["progress"]["step"] == int(match[1]) - 1
    assert all(torch.isfinite(value).all() for value in checkpoint["model"].values())


@pytest.fixture(scope="module")
def corrupted_knee(tmp_path_factory):
    """Knee training data whose first slice has NaN k-space (a damaged file), and a clean validation set."""
    root = tmp_path_factory.mktemp("knee")
    generate_dataset(root / "train", "singlecoil", n_volumes=1, n_slices=2, seed=0)
    generate_dataset(root / "val", "singlecoil", n_volumes=1, n_slices=1, seed=1)
    with h5py.File(next((root / "train").glob("*.h5")), "r+") as handle:
        handle["kspace"][0] = np.nan
    with open(os.path.join(os.path.dirname(__file__), "data", "config_tiny.yaml")) as handle:
        config = validate(yaml.safe_load(handle))
    config["tasks"]["knee"]["training"].update(epochs=2, batch_size=1)
    spec = run_settings(config, "knee", "l1", 0)
    write_valset("mri_singlecoil", spec.data, root / "val", root / "val.h5")
    return root, spec


def test_nonfinite_loss_stops_with_step_loss_and_last_finite_value(corrupted_knee):
    root, spec = corrupted_knee
    with pytest.raises(
        training.NonFiniteError,
        match=r"^non-finite loss nan at step \d \(epoch 1, batch \d\); last finite loss (None|0\.\d+); stopped",
    ):
        training.run(
            spec,
            root / "train",
            root / "val.h5",
            root / "stop",
            root / "ckpt_stop",
            device="cpu",
            threads=1,
            progress=False,
            checkpoint_every=1,
        )


def test_nonfinite_batches_are_skipped_and_counted_when_configured(corrupted_knee, caplog):
    root, spec = corrupted_knee
    skipping = replace(spec, trainer=replace(spec.trainer, nonfinite="skip"))
    with caplog.at_level(logging.WARNING, logger="lossbench.train.loop"):
        path = training.run(
            skipping,
            root / "train",
            root / "val.h5",
            root / "skip",
            root / "ckpt_skip",
            device="cpu",
            threads=1,
            progress=False,
        )
    with open(root / "skip" / "curve.csv") as handle:
        curve = list(csv.DictReader(handle))
    assert [int(row["skipped"]) for row in curve] == [1, 1]  # the damaged slice, once per epoch
    assert caplog.text.count("batch skipped") == 2
    assert all(math.isfinite(float(row[key])) for row in curve for key in ("train_loss", "val_loss", "val_psnr"))
    assert all(torch.isfinite(value).all() for value in torch.load(path, weights_only=False)["model"].values())


def test_learning_rate_schedule_warms_up_then_decays_to_final():
    cosine = Schedule(kind="cosine", warmup=0.1, final=0.05)
    factors = [training.learning_rate_factor(cosine, step, 100) for step in range(100)]
    assert factors[0] == pytest.approx(1 / 11) and factors[9] == pytest.approx(10 / 11)
    assert factors[10] == pytest.approx(1.0) and factors[-1] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    constant = Schedule(kind="constant", warmup=0.0, final=0.0)
    assert {training.learning_rate_factor(constant, step, 100) for step in range(100)} == {1.0}


def test_scheduled_run_resumed_from_a_mid_epoch_checkpoint_ends_bit_for_bit_the_same(setup, tmp_path):
    root, spec, constant_reference = setup
    scheduled = replace(spec, trainer=replace(spec.trainer, schedule=Schedule(kind="cosine", warmup=0.25, final=0.1)))
    reference = training.run(
        scheduled,
        root / "train",
        root / "val.h5",
        tmp_path / "reference",
        tmp_path / "ckpt",
        device="cpu",
        threads=1,
        progress=False,
        checkpoint_every=3,
    )
    reference = torch.load(reference, weights_only=False)["model"]
    assert any(not torch.equal(reference[key], constant_reference[key]) for key in reference), (
        "the schedule changed nothing"
    )
    # Resume from the checkpoint at step 6 (epoch 2, batch 2): the rates of steps 7 and 8 come from the step count
    # alone.
    middle = next((tmp_path / "ckpt").rglob("step_000000006.pt"))
    copy = tmp_path / "resumed" / middle.relative_to(tmp_path / "ckpt")
    copy.parent.mkdir(parents=True)
    copy.write_bytes(middle.read_bytes())
    path = training.run(
        scheduled,
        root / "train",
        root / "val.h5",
        tmp_path / "out",
        tmp_path / "resumed",
        device="cpu",
        threads=1,
        progress=False,
        checkpoint_every=3,
    )
    _assert_same_weights(path, reference)


def test_log_of_a_1000_step_job_stays_small(setup):
    """The progress bar redraws at most every 30 s in a log, whatever the step rate (with per-step loss shown)."""
    root, _, _ = setup
    config = yaml.safe_load((root / "config.yaml").read_text())
    config["tasks"]["denoise"]["training"] = {"epochs": 125, "batch_size": 1}  # 8 steps per epoch
    (root / "long.yaml").write_text(yaml.safe_dump(config))
    command = [
        sys.executable,
        "-m",
        "lossbench.train",
        "--config",
        str(root / "long.yaml"),
        "--task",
        "denoise",
        "--loss",
        "l1",
        "--seed",
        "0",
        "--train-dir",
        str(root / "train"),
        "--valset",
        str(root / "val.h5"),
        "--out",
        str(root / "long"),
        "--checkpoints",
        str(root / "ckpt_long"),
        "--device",
        "cpu",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1000/1000" in done.stderr
    size = len((done.stdout + done.stderr).encode())
    assert size < 50_000, f"{size} bytes of log for 1000 steps"
    with open(root / "long" / "curve.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 125
