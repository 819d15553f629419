"""Model outputs are clamped to [0, 1] before every metric, as an 8-bit image of them would be."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from lossbench import infer
from lossbench.data.tasks import prepare_embedded_photos, write_valset
from lossbench.data.valset import ImageFile, write_images
from lossbench.evaluate import evaluate
from lossbench.pipeline.config import validate
from lossbench.pipeline.job_settings import run_settings
from lossbench.train import loop as training


def test_inference_writes_clamped_outputs_and_logs_the_share(tmp_path, tiny_config, caplog):
    config = validate(tiny_config)
    spec = run_settings(config, "denoise", "flip", 0)
    prepare_embedded_photos(["chelsea"], tmp_path / "train", max_side=64)
    prepare_embedded_photos(["astronaut"], tmp_path / "val", max_side=64)
    write_valset("rgb_denoise", spec.data, tmp_path / "val", tmp_path / "val.h5")
    model = training.run(
        spec,
        tmp_path / "train",
        tmp_path / "val.h5",
        tmp_path / "model",
        tmp_path / "checkpoints",
        device="cpu",
        threads=1,
        progress=False,
    )
    with caplog.at_level(logging.INFO, logger="lossbench.infer"):
        infer.run(model, tmp_path / "val.h5", tmp_path / "out.h5", device="cpu")
    with ImageFile(tmp_path / "out.h5") as outputs:
        output = outputs.read("output", "astronaut")
    assert output.min() >= 0.0 and output.max() <= 1.0
    shares = [float(r.getMessage().split("%")[0]) for r in caplog.records if "outside [0, 1]" in r.getMessage()]
    # The noisy input itself has values outside [0, 1], which a briefly trained residual net keeps.
    assert len(shares) == 1 and shares[0] > 0


def test_outputs_are_scored_clamped_and_inputs_as_they_are(tmp_path):
    rng = np.random.default_rng(0)
    target = rng.random((3, 32, 32)).astype(np.float32)
    degraded = target + rng.normal(0, 0.3, target.shape).astype(np.float32)
    write_images(tmp_path / "val.h5", {"input": [("a", degraded)], "target": [("a", target)]}, {"kind": "rgb_denoise"})
    write_images(tmp_path / "raw.h5", {"output": [("a", degraded)]})
    write_images(tmp_path / "clamped.h5", {"output": [("a", np.clip(degraded, 0, 1))]})
    metrics = ["l2", "psnr", "flip"]
    raw, clamped = (
        evaluate(tmp_path / "val.h5", tmp_path / "raw.h5", metrics)[0],
        evaluate(tmp_path / "val.h5", tmp_path / "clamped.h5", metrics)[0],
    )
    assert raw == pytest.approx(clamped, abs=1e-7)
    unclamped_input = evaluate(tmp_path / "val.h5", None, metrics)[0]
    assert (
        unclamped_input["l2"] == pytest.approx(float(np.mean((degraded - target) ** 2)), rel=1e-5)
        and unclamped_input["l2"] > raw["l2"]
    )
