import csv
import logging
from dataclasses import replace

import pytest
import torch

from lossbench import infer
from lossbench.data.tasks import prepare_embedded_photos, write_valset
from lossbench.data.valset import ImageFile
from lossbench.models import UNet
from lossbench.pipeline.config import validate
from lossbench.pipeline.job_settings import run_settings
from lossbench.train import epoch as training_epoch
from lossbench.train import loop as training


@pytest.fixture
def denoise_run(tmp_path, tiny_config):
    config = validate(tiny_config)
    spec = run_settings(config, "denoise", "l2", 0)
    prepare_embedded_photos(["chelsea", "rocket"], tmp_path / "train", max_side=96)
    prepare_embedded_photos(["astronaut"], tmp_path / "val", max_side=64)
    write_valset("rgb_denoise", spec.data, tmp_path / "val", tmp_path / "val.h5")
    return spec, tmp_path


def _train(spec, root, name):
    return training.run(
        spec,
        root / "train",
        root / "val.h5",
        root / name,
        root / "checkpoints" / name,
        device="cpu",
        threads=1,
        progress=False,
    )


def test_training_writes_model_and_curve_and_is_reproducible(denoise_run):
    spec, root = denoise_run
    spec = replace(spec, training=replace(spec.training, epochs=2))
    first = _train(spec, root, "a")
    second = _train(spec, root, "b")
    with open(root / "a" / "curve.csv") as handle:
        curve = list(csv.DictReader(handle))
    assert [row["epoch"] for row in curve] == ["1", "2"]
    assert set(curve[0]) == set(training.CURVE_COLUMNS)
    state_a, state_b = torch.load(first, weights_only=False), torch.load(second, weights_only=False)
    assert all(torch.equal(state_a["model"][k], state_b["model"][k]) for k in state_a["model"])
    assert state_a["spec"] == spec.to_dict()


def test_rerun_resumes_from_the_checkpoint(denoise_run, caplog):
    spec, root = denoise_run
    _train(spec, root, "a")
    with caplog.at_level(logging.INFO, logger="lossbench.train.loop"):
        _train(spec, root, "a")
    assert "resuming" in caplog.text


def test_adam_learning_rate_and_seed_change_the_weights(denoise_run):
    spec, root = denoise_run
    reference = torch.load(_train(spec, root, "a"), weights_only=False)["model"]
    other_seed = torch.load(_train(replace(spec, seed=1), root, "b"), weights_only=False)["model"]
    assert not all(torch.equal(reference[k], other_seed[k]) for k in reference)


def test_inference_restores_every_validation_image(denoise_run):
    spec, root = denoise_run
    model_path = _train(spec, root, "a")
    assert infer.run(model_path, root / "val.h5", root / "out.h5", device="cpu") == 1
    with ImageFile(root / "out.h5") as outputs, ImageFile(root / "val.h5") as val:
        assert outputs.ids == val.ids
        assert outputs.read("output", "astronaut").shape == val.read("target", "astronaut").shape


def test_bfloat16_autocast_and_channels_last_train_and_change_the_numerics(denoise_run):
    spec, root = denoise_run
    plain = replace(spec, trainer=replace(spec.trainer, autocast="none", channels_last=False))
    reference = torch.load(_train(plain, root, "float32"), weights_only=False)["model"]
    fast = replace(spec, trainer=replace(spec.trainer, autocast="bfloat16", channels_last=True))
    state = torch.load(_train(fast, root, "bfloat16"), weights_only=False)
    assert state["spec"]["trainer"]["autocast"] == "bfloat16"
    assert all(value.dtype == torch.float32 and torch.isfinite(value).all() for value in state["model"].values())
    assert not all(torch.equal(state["model"][k], reference[k]) for k in reference)
    with open(root / "bfloat16" / "curve.csv") as handle:
        assert float(next(csv.DictReader(handle))["val_psnr"]) > 10


def test_one_persistent_loader_serves_every_epoch_with_the_same_data(denoise_run, monkeypatch):
    spec, root = denoise_run
    spec = replace(spec, training=replace(spec.training, epochs=2))
    in_process = torch.load(_train(spec, root, "in_process"), weights_only=False)["model"]
    built = []

    class CountedLoader(training.DataLoader):
        def __init__(self, *args, **kwargs):
            built.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(training, "DataLoader", CountedLoader)
    spec = replace(spec, training=replace(spec.training, workers=2))
    workers = torch.load(_train(spec, root, "workers"), weights_only=False)["model"]
    assert len(built) == 1 and built[0]["persistent_workers"] is True
    # Every sample's crop and noise come from its own seed, whichever process loads it.
    assert all(torch.equal(in_process[k], workers[k]) for k in in_process)


def test_validation_runs_the_uncompiled_module(denoise_run, monkeypatch):
    spec, root = denoise_run
    compiled, validated = [], []
    real_compile, real_validate = torch.compile, training.validate
    # Dynamo's real tracing with the eager backend: no C++ toolchain or minutes of inductor needed.
    monkeypatch.setattr(
        torch, "compile", lambda model: compiled.append(real_compile(model, backend="eager")) or compiled[-1]
    )
    monkeypatch.setattr(
        training_epoch, "validate", lambda model, *args: validated.append(model) or real_validate(model, *args)
    )
    _train(replace(spec, trainer=replace(spec.trainer, compile=True)), root, "compiled")
    assert len(compiled) == 1 and validated
    assert all(isinstance(model, UNet) for model in validated)


def test_validation_metrics_are_scored_as_evaluation_scores_them_and_leave_the_weights_alone(denoise_run, tiny_config):
    # The own-metric race's data: every configured metric at every validation, on clamped outputs, as
    # lossbench.evaluate scores them. They draw nothing from the training's random stream.
    from lossbench import evaluate
    from lossbench.pipeline.job_settings import evaluation_settings, validation_metrics

    spec, root = denoise_run
    spec = replace(spec, training=replace(spec.training, epochs=2))
    config = validate({**tiny_config, "metrics": ["l1", "psnr", "lpips", "flip"]})
    scored = validation_metrics(config, "denoise", evaluation_settings(config))
    plain = torch.load(_train(spec, root, "plain"), weights_only=False)["model"]
    with_metrics = training.run(
        spec,
        root / "train",
        root / "val.h5",
        root / "metrics",
        root / "checkpoints" / "metrics",
        device="cpu",
        threads=1,
        progress=False,
        metrics=scored,
    )
    assert all(torch.equal(plain[k], torch.load(with_metrics, weights_only=False)["model"][k]) for k in plain)
    with open(root / "metrics" / "curve.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "epoch",
        "step",
        "train_loss",
        "val_loss",
        "val_psnr",
        "val_l1",
        "val_lpips",
        "val_flip",
        "skipped",
        "seconds",
    ]
    # The last epoch's values are the final model's, scored by evaluation on the same image.
    assert infer.run(with_metrics, root / "val.h5", root / "out.h5", device="cpu") == 1
    (evaluated,) = evaluate.evaluate(
        root / "val.h5", root / "out.h5", ["l1", "lpips", "flip"], evaluation_settings(config)
    )
    for name in ("l1", "lpips", "flip"):
        assert float(rows[-1][f"val_{name}"]) == pytest.approx(evaluated[name], rel=1e-5, abs=1e-7), name


def test_a_metric_the_validation_images_are_too_small_for_stops_before_training(denoise_run):
    spec, root = denoise_run
    with pytest.raises(
        ValueError, match=r"val\.h5: validation image 'astronaut' is 64×64, too small for the msssim metric's 5 scales"
    ):
        training.run(
            spec,
            root / "train",
            root / "val.h5",
            root / "x",
            root / "checkpoints" / "x",
            device="cpu",
            threads=1,
            progress=False,
            metrics={"msssim": {}},
        )
    assert not (root / "checkpoints" / "x").exists() or not any((root / "checkpoints" / "x").rglob("*.pt"))


class _NaNGradient(torch.autograd.Function):
    """The identity, whose backward is NaN where ``bad``: a finite loss with a non-finite gradient."""

    @staticmethod
    def forward(ctx, value, bad):
        ctx.bad = bad
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        return (grad * float("nan") if ctx.bad else grad), None


class _L2WithANaNGradient(torch.nn.Module):
    """l2 whose gradient is NaN at training step ``bad_step`` (validation, without gradients, does not count)."""

    def __init__(self, bad_step: int):
        super().__init__()
        self.bad_step, self.steps = bad_step, 0

    def forward(self, output, target):
        self.steps += torch.is_grad_enabled()
        return ((_NaNGradient.apply(output, self.steps == self.bad_step) - target) ** 2).mean()


@pytest.mark.parametrize("every", [1, 10])
def test_finite_checks_at_an_interval_stop_before_a_bad_checkpoint_is_written(denoise_run, every):
    from lossbench.core.specs import LossSpec
    from lossbench.losses import SPECS
    from lossbench.registry import Registry
    from lossbench.train.checkpoint import load_checkpoint
    from lossbench.train.run_settings import LossSettings

    spec, root = denoise_run
    registry = Registry(losses={**SPECS, "nan_at_6": LossSpec("nan_at_6", _L2WithANaNGradient, "NaN at 6", False)})
    spec = replace(
        spec, loss=LossSettings("nan_at_6", {"bad_step": 6}), training=replace(spec.training, epochs=3, batch_size=1)
    )
    with pytest.raises(training.NonFiniteError) as error:
        training.run(
            spec,
            root / "train",
            root / "val.h5",
            root / "out",
            root / "checkpoints",
            device="cpu",
            threads=1,
            progress=False,
            checkpoint_every=3,
            registry=registry,
            finite_check_every=every,
        )
    # Checked every step: the gradient of step 6 is refused before it is applied. Every 10: it is applied unseen, and
    # the checkpoint due after it finds the weights non-finite and is not written.
    expected = (
        r"^non-finite gradient \(loss [0-9.e-]+\) at step 6 "
        if every == 1
        else r"^non-finite weights before the checkpoint at step 6 \(gradients and weights are checked every 10 steps"
    )
    assert error.match(expected)
    (folder,) = (root / "checkpoints").iterdir()
    state, _ = load_checkpoint(folder)
    assert state["progress"]["step"] == 4  # the first epoch's end, the last checkpoint before step 6
    assert all(torch.isfinite(tensor).all() for tensor in state["model"].values())


@pytest.mark.parametrize(
    "device, cuda, expected",
    [
        ("cpu", False, True),
        ("auto", False, True),
        ("auto", True, False),  # GPUs: not measured yet, NCHW as before
        ("cuda:0", False, False),
    ],
)
def test_the_auto_layout_is_resolved_for_the_planned_device(monkeypatch, device, cuda, expected):
    from lossbench.train import device as devices

    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: cuda)
    trainer = {"channels_last": "auto", "autocast": "none", "tf32": True}
    assert devices.resolve_layout(trainer, device) == trainer | {"channels_last": expected}
    assert devices.resolve_layout({"channels_last": False, "autocast": "bfloat16"}, "cpu")["channels_last"] is False


def test_the_demo_steps_in_nhwc_give_the_gradients_of_nchw():
    from lossbench.train.run_settings import Trainer
    from lossbench.train.step import _to_device

    torch.manual_seed(0)
    model = UNet(3, 3, width=8, depth=3, residual=True)
    batch = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)
    gradients = []
    for channels_last in (False, True):
        network = model.to(memory_format=torch.channels_last) if channels_last else model
        network.zero_grad()
        trainer = replace(Trainer.from_dict(_TRAINER, "trainer"), channels_last=channels_last)
        ((network(_to_device(batch[0], torch.device("cpu"), trainer)) - batch[1]) ** 2).mean().backward()
        gradients.append([parameter.grad.clone() for parameter in network.parameters()])
    assert max(float((a - b).abs().max()) for a, b in zip(*gradients)) <= 1e-5


_TRAINER = {
    "nonfinite": "stop",
    "autocast": "none",
    "channels_last": False,
    "compile": False,
    "tf32": True,
    "cudnn_benchmark": False,
    "schedule": {"kind": "constant", "warmup": 0.0, "final": 0.0},
}
