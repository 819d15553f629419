"""Model files and checkpoints are tensors and plain data, read without running anything in them (issue 27).

A pickled payload in ``model.pt``, in a checkpoint or in the LPIPS weights is refused by inference
(the command line and the workflow's rule), by a resume and by the converter, and never runs: the
marker file it would create stays absent. Checkpoints of an earlier lossbench (NumPy's RNG state in
them) get the command that converts them, and converted they resume bit for bit. A full disk leaves
no temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import pickle
import random
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lossbench import infer, losses
from lossbench.core.io import atomic_file
from lossbench.data.tasks import prepare_embedded_photos, write_valset
from lossbench.pipeline.config import validate
from lossbench.pipeline.job_settings import run_settings
from lossbench.train import loop as training
from lossbench.train.checkpoint import (
    RefusedFileError,
    convert,
    convert_command,
    load_checkpoint,
    load_file,
    restore_rng_states,
    rng_states,
    save_atomic,
)

from conftest import TINY_CONFIG

# torch warns when its weights-only reader meets pickle protocol 4, as in the raw pickles written here.
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol 4:UserWarning")

#: 8 training crops in batches of 2: 4 steps, a checkpoint after each; the newest two are kept.
STEPS = 4


class _Payload:
    """Unpickled, it runs ``touch marker``: what a shared model file could run on a full unpickling."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _model_with_payload(path, marker, model):
    torch.save({"note": _Payload(marker), **model}, path)  # a working model.pt that runs a payload as well


def _payload_only(path, marker, model):
    torch.save(_Payload(marker), path)


def _legacy_torch_format(path, marker, model):
    torch.save({"note": _Payload(marker), **model}, path, _use_new_zipfile_serialization=False)


def _raw_pickle(path, marker, model):
    with open(path, "wb") as handle:
        pickle.dump({"note": _Payload(marker), **model}, handle, protocol=4)


WRITERS = [_model_with_payload, _payload_only, _legacy_torch_format, _raw_pickle]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny denoising run with a checkpoint after every step: root, spec, final weights, its checkpoint folder."""
    root = tmp_path_factory.mktemp("model_files")
    with open(TINY_CONFIG) as handle:
        config = yaml.safe_load(handle)
    config["tasks"] = {"denoise": config["tasks"]["denoise"]}
    config["tasks"]["denoise"].update(crops_per_image=4, training={"epochs": 1, "batch_size": 2})
    config["figures"] = {}
    spec = run_settings(validate(config), "denoise", "l1", 0)
    prepare_embedded_photos(["chelsea", "rocket"], root / "train", max_side=96)
    prepare_embedded_photos(["astronaut"], root / "val", max_side=64)
    write_valset(spec.kind, spec.data, root / "val", root / "val.h5")
    model = training.run(
        spec,
        root / "train",
        root / "val.h5",
        root / "reference",
        root / "ckpt",
        device="cpu",
        threads=1,
        progress=False,
        checkpoint_every=1,
    )
    (folder,) = (root / "ckpt").iterdir()
    assert sorted(path.name for path in folder.glob("step_*.pt")) == [
        f"step_{STEPS - 1:09d}.pt",
        f"step_{STEPS:09d}.pt",
    ]
    return root, spec, model, folder


def _train(run, checkpoints):
    root, spec, _, _ = run
    return training.run(
        spec,
        root / "train",
        root / "val.h5",
        checkpoints.parent / "out",
        checkpoints.parent,
        device="cpu",
        threads=1,
        progress=False,
        checkpoint_every=1,
    )


def _assert_same_weights(path, reference_path):
    weights, reference = load_file(path)["model"], load_file(reference_path)["model"]
    assert weights.keys() == reference.keys()
    assert all(torch.equal(weights[key], reference[key]) for key in reference), (
        "resumed weights differ from the uninterrupted run's"
    )


def _earlier_format(checkpoint: Path, out: Path) -> None:
    """``checkpoint`` as lossbench wrote it before: NumPy's RNG state as ``np.random.get_state()``'s tuple of a NumPy
    array."""
    state = load_file(checkpoint)
    numpy = state["rng"]["numpy"]
    state["rng"]["numpy"] = (
        numpy["bit_generator"],
        numpy["state"]["key"].numpy(),
        numpy["state"]["pos"],
        numpy["has_gauss"],
        numpy["gauss"],
    )
    torch.save(state, out)


def _cli(*arguments):
    return subprocess.run([sys.executable, "-m", *arguments], capture_output=True, text=True, timeout=300)


# --- What lossbench writes: tensors and plain data -------------------------------------------------


def test_models_and_checkpoints_hold_tensors_and_plain_data_only(run):
    _, _, model, folder = run
    for path in [model, *folder.glob("step_*.pt")]:
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == [], path
        state = torch.load(path, weights_only=True)
        assert {"spec", "model"} <= state.keys()
    checkpoint = torch.load(sorted(folder.glob("step_*.pt"))[-1], weights_only=True)
    assert checkpoint["progress"]["curve"] and checkpoint["optimizer"]["state"]


def test_every_losss_state_loads_with_weights_only():
    with open(TINY_CONFIG) as handle:
        config = yaml.safe_load(handle)
    config["losses"] = {name: {"lr": 1e-3} for name in losses.names()}
    config = validate(config)
    for name in losses.names():
        # Portable, set past validation (LPIPS's trunk is an evaluation setting there): a loss whose weights are
        # fetched (DISTS) is built without them, and its state holds none of them.
        config["losses"][name]["params"].update(losses.spec(name).portable_params)
        state = training.build_loss(run_settings(config, "denoise", name, 0)).state_dict()
        buffer = io.BytesIO()
        torch.save(state, buffer)
        loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[key], state[key]) for key in state), name


def test_rng_states_survive_a_weights_only_round_trip():
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.standard_normal()  # NumPy caches the second Gaussian of a pair: its state has has_gauss = 1
    buffer = io.BytesIO()
    torch.save(rng_states(torch.device("cpu")), buffer)
    expected = (torch.rand(3), np.random.standard_normal(3), np.random.randint(0, 2**31, 3), random.random())
    restore_rng_states(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True), torch.device("cpu"))
    drawn = (torch.rand(3), np.random.standard_normal(3), np.random.randint(0, 2**31, 3), random.random())
    assert (
        torch.equal(drawn[0], expected[0])
        and np.array_equal(drawn[1], expected[1])
        and np.array_equal(drawn[2], expected[2])
        and drawn[3] == expected[3]
    )


def test_a_model_written_before_loads(run, tmp_path):
    # model.pt held tensors and plain data before already: the same dict, saved as lossbench saved it, loads.
    _, spec, model, _ = run
    state = torch.load(model, weights_only=True)
    torch.save(
        {
            "spec": state["spec"],
            "data_identity": state["data_identity"],
            "model": state["model"],
            "loss": state["loss"],
        },
        tmp_path / "model.pt",
    )
    assert training.load_model(tmp_path / "model.pt")[1] == spec


def test_a_file_of_plain_data_without_spec_and_weights_is_no_model(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(
        ValueError,
        match=(
            f"^{re.escape(str(path))}: not a model written by lossbench.train \\(expected a dict with the keys model"
            " and spec\\)$"
        ),
    ):
        training.load_model(path)


# --- A payload never runs ------------------------------------------------------------------------------


@pytest.mark.parametrize("write", WRITERS)
def test_the_payload_runs_on_a_full_unpickling(run, tmp_path, write):
    # The control: each payload file does run its payload when unpickled in full, so its marker's absence below means
    # something.
    marker = tmp_path / "marker"
    write(tmp_path / "payload.pt", marker, torch.load(run[2], weights_only=True))
    with contextlib.suppress(RuntimeError):  # a raw pickle is no torch file: refused, but only once its payload ran
        torch.load(tmp_path / "payload.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("write", WRITERS)
def test_load_model_refuses_a_payload_without_running_it(run, tmp_path, write):
    marker, path = tmp_path / "marker", tmp_path / "model.pt"
    write(path, marker, torch.load(run[2], weights_only=True))
    with pytest.raises(RefusedFileError) as error:
        training.load_model(path)
    message = str(error.value)
    assert (
        message.startswith(f"{path}: not a lossbench model or checkpoint")
        and "refused without running" in message
        and "\n" not in message
    )
    if write is not _raw_pickle and write is not _legacy_torch_format:
        assert "posix.system" in message  # the global it would have called, read off the pickle's opcodes
    assert not marker.exists()


@pytest.mark.parametrize("write", [_model_with_payload, _payload_only])
def test_infer_command_refuses_a_payload_model_without_running_it(run, tmp_path, write):
    root, _, model, _ = run
    marker, path = tmp_path / "marker", tmp_path / "model.pt"
    write(path, marker, torch.load(model, weights_only=True))
    result = _cli(
        "lossbench.infer",
        "--model",
        str(path),
        "--input",
        str(root / "val"),
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
    )
    assert result.returncode != 0, result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert str(path) in last and "refused without running them" in last, result.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_workflow_inference_refuses_a_payload_model_without_running_it(run, tmp_path):
    # The workflow's infer rule calls infer.run on the model.pt it is given.
    root, _, model, _ = run
    marker, path = tmp_path / "marker", tmp_path / "model.pt"
    _model_with_payload(path, marker, torch.load(model, weights_only=True))
    with pytest.raises(RefusedFileError, match="refused without running them"):
        infer.run(path, root / "val.h5", tmp_path / "outputs.h5", device="cpu")
    assert not marker.exists() and not (tmp_path / "outputs.h5").exists()


@pytest.mark.parametrize("write", WRITERS)
def test_a_payload_checkpoint_is_moved_aside_without_running(run, tmp_path, caplog, write):
    _, _, _, folder = run
    shutil.copy(folder / f"step_{STEPS - 1:09d}.pt", tmp_path)
    marker, newest = tmp_path / "marker", tmp_path / f"step_{STEPS:09d}.pt"
    write(newest, marker, load_file(folder / newest.name))  # a complete checkpoint with a payload, or a payload alone
    with caplog.at_level(logging.WARNING, logger="lossbench.train.checkpoint"):
        checkpoint, path = load_checkpoint(tmp_path)
    assert path.name == f"step_{STEPS - 1:09d}.pt" and checkpoint["progress"]["step"] == STEPS - 1
    assert not newest.exists() and (tmp_path / f"{newest.name}.corrupt").exists()
    (warning,) = [record.getMessage() for record in caplog.records]
    assert (
        warning.startswith(f"checkpoint {newest} is not a lossbench model or checkpoint")
        and "refused without running" in warning
    ), warning
    assert not marker.exists()


def test_resume_past_a_payload_checkpoint_gives_identical_weights(run, tmp_path, caplog):
    _, _, model, folder = run
    checkpoints = tmp_path / "ckpt" / folder.name
    checkpoints.mkdir(parents=True)
    shutil.copy(folder / f"step_{STEPS - 1:09d}.pt", checkpoints)
    marker = tmp_path / "marker"
    _model_with_payload(checkpoints / f"step_{STEPS:09d}.pt", marker, load_file(folder / f"step_{STEPS:09d}.pt"))
    with caplog.at_level(logging.INFO, logger="lossbench"):
        path = _train(run, checkpoints)
    assert not marker.exists()
    assert (
        f"step_{STEPS:09d}.pt.corrupt" in caplog.text
        and f"resuming {folder.name} from {checkpoints / f'step_{STEPS - 1:09d}.pt'}" in caplog.text
    ), caplog.text
    _assert_same_weights(path, model)


def test_lpips_weights_with_a_payload_do_not_run(run, tmp_path):
    from lossbench.metrics.lpips import LPIPSModel

    marker, path = tmp_path / "marker", tmp_path / "alexnet.pth"
    _model_with_payload(path, marker, {})
    with pytest.raises(pickle.UnpicklingError):  # read with weights_only=True already
        LPIPSModel("pretrained", weights_path=path)
    assert not marker.exists()


# --- Checkpoints of an earlier lossbench: the command that converts them ------------------------------


def test_an_earlier_checkpoint_is_refused_with_the_command_that_converts_it(run, tmp_path, caplog):
    _, _, _, folder = run
    shutil.copy(folder / f"step_{STEPS - 1:09d}.pt", tmp_path)
    newest = tmp_path / f"step_{STEPS:09d}.pt"
    _earlier_format(folder / newest.name, newest)
    with pytest.raises(RefusedFileError) as error:
        load_file(newest)
    assert (
        str(error.value)
        == f"{newest}: written by an earlier lossbench (NumPy arrays in it, which this version does not unpickle);"
        f" refused without running anything in it; convert it with: {convert_command(newest)}"
    )
    with caplog.at_level(logging.WARNING, logger="lossbench.train.checkpoint"):
        _, path = load_checkpoint(tmp_path)
    assert path.name == f"step_{STEPS - 1:09d}.pt"
    aside = tmp_path / f"{newest.name}.corrupt"
    assert (
        caplog.records[0]
        .getMessage()
        .endswith(
            f"moved aside to {aside.name}; convert it with: python -m lossbench.train.checkpoint convert {aside} --out"
            f" {newest}"
        )
    )


def test_a_converted_checkpoint_resumes_to_identical_weights(run, tmp_path):
    _, _, model, folder = run
    checkpoints = tmp_path / "ckpt" / folder.name
    checkpoints.mkdir(parents=True)
    earlier = checkpoints / f"step_{STEPS - 1:09d}.pt"
    _earlier_format(folder / earlier.name, earlier)
    original = earlier.read_bytes()
    result = _cli("lossbench.train.checkpoint", "convert", str(earlier))
    assert (
        result.returncode == 0
        and result.stdout.strip() == f"converted {earlier} to {earlier} (the original kept as {earlier}.orig)"
    ), result.stderr
    assert (checkpoints / f"{earlier.name}.orig").read_bytes() == original
    assert torch.serialization.get_unsafe_globals_in_checkpoint(earlier) == []
    again = _cli("lossbench.train.checkpoint", "convert", str(earlier))
    assert (
        again.returncode != 0
        and again.stderr.strip()
        == f"error: {earlier}: in today's format already (tensors and plain data only); nothing to convert"
    )
    _assert_same_weights(_train(run, checkpoints), model)


def test_convert_to_another_file_leaves_the_original_and_never_overwrites(run, tmp_path):
    _, _, _, folder = run
    earlier, out = tmp_path / "step.pt.corrupt", tmp_path / "step.pt"
    _earlier_format(folder / f"step_{STEPS:09d}.pt", earlier)
    original = earlier.read_bytes()
    assert _cli("lossbench.train.checkpoint", "convert", str(earlier), "--out", str(out)).returncode == 0
    assert earlier.read_bytes() == original and not list(tmp_path.glob("*.orig")) and not list(tmp_path.glob("*.tmp"))
    assert load_file(out)["rng"]["numpy"]["state"]["key"].dtype == torch.uint32
    again = _cli("lossbench.train.checkpoint", "convert", str(earlier), "--out", str(out))
    assert again.returncode != 0 and again.stderr.strip() == f"error: {out}: exists already; choose another --out"


def test_convert_refuses_a_payload_without_running_it(run, tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "step.pt"
    _model_with_payload(path, marker, load_file(run[3] / f"step_{STEPS:09d}.pt"))
    original = path.read_bytes()
    result = _cli("lossbench.train.checkpoint", "convert", str(path))
    assert (
        result.returncode != 0
        and result.stderr.startswith(f"error: {path}: not a lossbench model or checkpoint")
        and result.stderr.count("\n") == 1
    ), result.stderr
    assert not marker.exists() and path.read_bytes() == original and sorted(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("extra", [np.zeros(2), np.zeros(2, dtype=np.uint32)], ids=["float64", "uint32"])
def test_convert_refuses_numpy_arrays_besides_the_rng_state(run, tmp_path, extra):
    path = tmp_path / "step.pt"
    _earlier_format(run[3] / f"step_{STEPS:09d}.pt", path)
    torch.save({**torch.load(path, weights_only=False), "extra": extra}, path)  # a file this test wrote itself
    with pytest.raises(
        ValueError,
        match=f"^{re.escape(str(path))}: holds NumPy arrays besides a checkpoint's NumPy RNG state; not converted$",
    ):
        convert(path, path)
    assert sorted(tmp_path.iterdir()) == [path]


# --- A full disk: one line naming the file, no temporary file ------------------------------------------


@pytest.mark.skipif(
    not Path("/dev/full").exists(), reason="needs /dev/full, a device whose every write fails with ENOSPC"
)
@pytest.mark.parametrize(
    "write",
    [
        lambda path: save_atomic({"weights": torch.zeros(1000)}, path),
        lambda path: training.write_curve([{"epoch": 1}], path),
    ],
)
def test_a_full_disk_leaves_the_file_as_it_was_and_no_temporary_file(tmp_path, write):
    path = tmp_path / "file"
    path.write_bytes(b"before")
    (tmp_path / "file.tmp").symlink_to("/dev/full")  # the temporary file's writes hit a full disk
    with pytest.raises(OSError) as error:
        write(path)
    assert error.value.errno == errno.ENOSPC and str(path) in str(error.value) and "\n" not in str(error.value)
    assert path.read_bytes() == b"before" and sorted(tmp_path.iterdir()) == [path]


def test_a_full_checkpoint_disk_stops_training_with_one_line_and_no_temporary_file(run, tmp_path, monkeypatch):
    real_save = torch.save

    def save_on_a_full_disk(obj, handle, *args, **kwargs):
        real_save(obj, io.BytesIO())
        handle.write(b"part of a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    folder = tmp_path / "ckpt" / run[3].name
    with pytest.raises(OSError) as error:
        _train(run, folder)
    assert (
        str(error.value)
        == f"[Errno 28] {folder / 'step_000000001.pt'}: not written (No space left on device); the file there before,"
        " if any, is unchanged"
    )
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.pt"))


def test_atomic_file_removes_its_temporary_file_on_any_error(tmp_path):
    with pytest.raises(KeyError), atomic_file(tmp_path / "file") as handle:
        handle.write(b"half")
        raise KeyError("stop")
    assert not list(tmp_path.iterdir())
