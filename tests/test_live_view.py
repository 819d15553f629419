"""The live view of a training job: validation snapshots as PNGs and TensorBoard logs (trainer.snapshots,
trainer.tensorboard)."""

from __future__ import annotations

import csv
import sys
from dataclasses import replace

import pytest
from PIL import Image

from lossbench.data.tasks import prepare_embedded_photos, write_valset
from lossbench.pipeline.config import validate
from lossbench.pipeline.config_file import ConfigError
from lossbench.pipeline.job_settings import live_settings, run_settings
from lossbench.train import loop as training
from lossbench.train.live import LiveViewError


@pytest.fixture
def run(tmp_path, tiny_config):
    config = validate(tiny_config)
    spec = run_settings(config, "denoise", "l2", 0)
    spec = replace(spec, training=replace(spec.training, epochs=2))
    prepare_embedded_photos(["chelsea"], tmp_path / "train", max_side=64)
    prepare_embedded_photos(["astronaut", "coffee"], tmp_path / "val", max_side=48)
    write_valset(spec.kind, spec.data, tmp_path / "val", tmp_path / "val.h5")

    def go(live):
        return training.run(
            spec,
            tmp_path / "train",
            tmp_path / "val.h5",
            tmp_path / "out",
            tmp_path / "checkpoints",
            device="cpu",
            threads=1,
            progress=False,
            live=live,
        )

    return go, tmp_path


def test_snapshots_and_tensorboard_follow_the_epochs(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    go, root = run
    go({"snapshots": {"every": 1, "images": 1}, "tensorboard": True})
    snapshots = root / "out" / "snapshots"
    # The first validation image only, each epoch, and its input and reference once.
    assert sorted(path.relative_to(snapshots).as_posix() for path in snapshots.rglob("*.png")) == [
        "epoch_0001/astronaut.png",
        "epoch_0002/astronaut.png",
        "input/astronaut.png",
        "target/astronaut.png",
    ]
    assert (
        Image.open(snapshots / "epoch_0002" / "astronaut.png").size == Image.open(root / "val" / "astronaut.png").size
    )
    assert (
        Image.open(snapshots / "epoch_0001" / "astronaut.png").tobytes()
        != Image.open(snapshots / "epoch_0002" / "astronaut.png").tobytes()
    )
    with open(root / "out" / "curve.csv") as handle:
        curve = list(csv.DictReader(handle))
    (run_dir,) = (root / "out" / "tensorboard").iterdir()
    events = EventAccumulator(str(run_dir)).Reload()
    for name in ("train_loss", "val_loss", "val_psnr"):
        logged = [(event.step, event.value) for event in events.Scalars(name)]
        assert logged == [(int(row["step"]), pytest.approx(float(row[name]), rel=1e-6)) for row in curve]
    assert [event.step for event in events.Images("validation/astronaut")] == [int(row["step"]) for row in curve]


def test_every_n_epochs_and_off_by_default(run, tiny_config):
    go, root = run
    go({"snapshots": {"every": 2, "images": 5}, "tensorboard": False})
    snapshots = root / "out" / "snapshots"
    assert sorted(path.name for path in snapshots.iterdir()) == ["epoch_0002", "input", "target"]
    assert sorted(path.name for path in (snapshots / "epoch_0002").iterdir()) == ["astronaut.png", "coffee.png"]
    assert not (root / "out" / "tensorboard").exists()
    config = validate(tiny_config)
    assert live_settings(config) == {"snapshots": None, "tensorboard": False}


def test_the_live_view_changes_no_run(tiny_config):
    plain = run_settings(validate(tiny_config), "knee", "l1", 0)
    tiny_config["trainer"] = {"snapshots": {"every": 3, "images": 2}, "tensorboard": True}
    assert run_settings(validate(tiny_config), "knee", "l1", 0) == plain  # same spec, same checkpoints, no rerun
    tiny_config["trainer"] = {"snapshots": {"every": 0, "images": 2}}
    with pytest.raises(ConfigError, match="trainer.snapshots"):
        validate(tiny_config)


def test_tensorboard_without_the_package_is_one_line_before_anything_is_written(run, monkeypatch):
    go, root = run
    monkeypatch.setitem(
        sys.modules, "torch.utils.tensorboard", None
    )  # what an environment without it raises: ImportError
    with pytest.raises(
        LiveViewError,
        match=(
            r"^trainer.tensorboard is true but the tensorboard package is not installed: pip install -e"
            r" '\.\[tensorboard\]', or set trainer.tensorboard: false$"
        ),
    ):
        go({"snapshots": None, "tensorboard": True})
    assert not (root / "out").exists() and not (root / "checkpoints").exists()
