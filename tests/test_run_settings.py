"""The typed run settings: its plain data is the configuration's, in the configuration's key order, and back."""

import dataclasses

import pytest

from lossbench.pipeline.config import validate
from lossbench.pipeline.job_settings import run_settings
from lossbench.train.checkpoint import settings_hash
from lossbench.train.run_settings import RunSettings, Schedule


def test_plain_data_keeps_the_configurations_key_order_and_reads_back_to_the_same_spec(tiny_config):
    # Snakemake compares the repr of the plain data: another key order would rerun every finished job.
    tiny_config["trainer"] = {"tf32": False, "nonfinite": "skip"}
    tiny_config["tasks"]["knee"]["training"] = {
        "batch_size": 2,
        "schedule": {"warmup": 0.1, "kind": "cosine"},
        "epochs": 3,
    }
    spec = run_settings(validate(tiny_config), "knee", "l2", 1)
    plain = spec.to_dict()
    assert list(plain) == [
        "task",
        "kind",
        "loss",
        "loss_params",
        "lr",
        "seed",
        "model",
        "training",
        "trainer",
        "data",
        "dataset",
    ]
    assert list(plain["trainer"])[:2] == ["tf32", "nonfinite"] and list(plain["trainer"]["schedule"]) == [
        "warmup",
        "kind",
        "final",
    ]
    assert list(plain["training"]) == ["batch_size", "epochs", "val_images", "workers"]
    assert (
        spec.trainer.schedule == Schedule(kind="cosine", warmup=0.1, final=0)
        and spec.training.epochs == 3
        and spec.lr == 2e-3
    )
    read = RunSettings.from_dict(plain)
    assert read == spec and repr(read.to_dict()) == repr(plain) and settings_hash(read) == settings_hash(spec)


def test_plain_data_is_a_copy_and_the_spec_is_frozen(tiny_config):
    spec = run_settings(validate(tiny_config), "denoise", "l1", 0)
    plain = spec.to_dict()
    plain["data"]["crop"] = 1
    plain["model"]["width"] = 1
    assert spec.data["crop"] == 32 and spec.model["width"] == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.lr = 1.0
    assert dataclasses.replace(spec, lr=1.0).lr == 1.0 and spec.lr == 1e-3


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda plain: plain.pop("trainer"),
            r"^run settings: missing trainer \(expected task, kind, .*; written by another lossbench version\?\)$",
        ),
        (
            lambda plain: plain["trainer"].pop("cudnn_benchmark"),
            r"^run settings trainer: missing cudnn_benchmark \(expected nonfinite, ",
        ),
        (
            lambda plain: plain["trainer"]["schedule"].update(steps=3),
            r"^run settings trainer\.schedule: unknown steps \(expected kind, warmup, final; ",
        ),
        (lambda plain: plain.update(optimizer="sgd"), r"^run settings: unknown optimizer \(expected "),
    ],
)
def test_plain_data_of_another_shape_is_one_line_naming_the_key(tiny_config, change, message):
    plain = run_settings(validate(tiny_config), "denoise", "l1", 0).to_dict()
    change(plain)
    with pytest.raises(ValueError, match=message):
        RunSettings.from_dict(plain)
