"""Extension points: a user's own loss and metric through the configuration only, the opt-in mix
loss, and tables that gain a column for a loss and a row for a metric the thesis lacks."""

import sys
import textwrap

import pytest
import torch

from lossbench import losses, metrics
from lossbench.losses.mix import MixLoss
from lossbench.metrics.msssim import ms_ssim
from lossbench.pipeline.config import validate
from lossbench.pipeline.config_file import ConfigError
from lossbench.pipeline.job_settings import run_settings
from lossbench.registry import Registry
from lossbench.report import paper
from lossbench.report.table_files import comparison_rows, to_latex, to_markdown, write_all
from lossbench.report.tables import build_table
from lossbench.train.loop import build_loss

USER_MODULE = '''
import torch
from torch import nn


class ScaledL1(nn.Module):
    """l1 times a learnt per-channel scale, to show that a user's parameters are trained too."""

    def __init__(self, factor: float = 1.0, num_channels: int = 3):
        super().__init__()
        self.factor = factor
        self.scale = nn.Parameter(torch.ones(num_channels))

    def forward(self, output, target):
        return self.factor * ((output - target).abs() * self.scale[:, None, None]).mean()


class NotAModule:
    pass


class OneArgument(nn.Module):
    def forward(self, output):
        return output.mean()


def max_error(output, target, power: float = 1.0):
    """A metric function: the largest absolute error of each image, to the ``power``."""
    return (output - target).abs().flatten(1).amax(dim=1) ** power


class MeanOffset(nn.Module):
    """A metric module: the mean of output - target per image, plus a constant ``offset``."""

    def __init__(self, offset: float = 0.0):
        super().__init__()
        self.offset = offset

    def forward(self, output, target):
        return (output - target).flatten(1).mean(dim=1) + self.offset


def one_image_argument(output):
    return output.mean()


def image_mean(output, target):
    return (output - target).mean()  # one value for the batch, not one per image


NOT_CALLABLE = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """An importable module ``user_losses_<id>`` outside the package, holding a user's losses; whatever the test does
    with it, the package's registries are as they were (a configuration's own specs live in its registry only)."""
    name = f"user_losses_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    before = (list(losses.SPECS), list(metrics.SPECS))
    yield name
    sys.modules.pop(name, None)
    assert (list(losses.SPECS), list(metrics.SPECS)) == before


def test_a_users_loss_from_the_config_is_registered_labelled_and_built(tiny_config, user_module):
    tiny_config["losses"]["mine"] = {
        "module": f"{user_module}:ScaledL1",
        "lr": 1e-3,
        "params": {"factor": 2.0, "num_channels": 3},
        "label": "My loss",
    }
    config = validate(tiny_config, "tiny.yaml")
    registry = Registry.from_config(config)
    assert registry.loss_label("mine") == "My loss" and "mine" not in losses.STUDY_LOSSES
    with pytest.raises(ValueError, match=r"^unknown loss 'mine': expected one of l1, l2, "):
        losses.spec("mine")  # the package's registry never gains a configuration's own loss
    spec = run_settings(config, "denoise", "mine", 0, registry)
    assert spec == run_settings(config, "denoise", "mine", 0)  # without one, the configuration's registry is built
    assert (
        spec.loss.module == f"{user_module}:ScaledL1"
        and "loss_module" not in run_settings(config, "denoise", "l1", 0, registry).to_dict()
    )
    with pytest.raises(ValueError, match=r"^unknown loss 'mine'"):
        build_loss(spec)  # the package's registry, by default
    loss_fn = build_loss(spec, registry)
    target = torch.rand(2, 3, 16, 16)
    assert float(loss_fn(target + 0.1, target).detach()) == pytest.approx(0.2, abs=1e-6)
    assert [p.numel() for p in loss_fn.parameters()] == [3]


@pytest.mark.parametrize(
    "module, message",
    [
        (
            "no_such_package_xyz.losses:Loss",
            r"^tiny\.yaml: losses\.mine\.module: cannot import 'no_such_package_xyz\.losses' \(ModuleNotFoundError: ",
        ),
        ("{m}:Missing", r"^tiny\.yaml: losses\.mine\.module: module '{m}' has no 'Missing'$"),
        ("{m}:NotAModule", r"^tiny\.yaml: losses\.mine\.module: {m}:NotAModule is not a torch\.nn\.Module subclass"),
        (
            "{m}:OneArgument",
            (
                r"^tiny\.yaml: losses\.mine\.module: {m}:OneArgument\.forward takes 1 image argument\(s\), expected"
                r" forward\(output, target\)$"
            ),
        ),
        ("{m}.ScaledL1", r"^tiny\.yaml: losses\.mine\.module: '{m}\.ScaledL1' does not match"),
    ],
)
def test_a_bad_users_loss_is_one_config_line_naming_key_and_module(tiny_config, user_module, module, message):
    tiny_config["losses"]["mine"] = {"module": module.format(m=user_module), "lr": 1e-3}
    with pytest.raises(ConfigError, match=message.format(m=user_module)) as error:
        validate(tiny_config, "tiny.yaml")
    assert "\n" not in str(error.value)


def test_a_users_loss_may_not_take_a_registered_name(tiny_config, user_module):
    tiny_config["losses"]["l2"] = {"module": f"{user_module}:ScaledL1", "lr": 1e-3}
    with pytest.raises(ConfigError, match=r"^tiny\.yaml: losses\.l2\.module: loss 'l2' is already registered$"):
        validate(tiny_config, "tiny.yaml")


def _own_metrics(user_module):
    return {
        "max_error": {
            "module": f"{user_module}:max_error",
            "direction": "lower",
            "label": "Max error",
            "scale": 100,
            "decimals": 1,
            "params": {"power": 2.0},
        },
        "offset": {"module": f"{user_module}:MeanOffset", "direction": "higher", "params": {"offset": 1.0}},
    }


def test_a_users_metrics_from_the_config_are_registered_computed_and_rowed_after_the_thesis(tiny_config, user_module):
    from lossbench.evaluate import metric_params

    tiny_config["own_metrics"] = _own_metrics(user_module)
    tiny_config["metrics"] = ["l1", "max_error", "psnr", "offset"]
    config = validate(tiny_config, "tiny.yaml")
    registry = Registry.from_config(config)
    assert config["own_metrics"]["offset"]["scale"] == 1.0 and config["own_metrics"]["offset"]["decimals"] == 4
    info = registry.metric("max_error").info
    assert (info.label, info.higher_is_better, info.scale, info.decimals) == ("Max error", False, 100, 1)
    assert registry.metric("offset").info.label == "offset" and registry.metric("offset").info.higher_is_better
    assert "max_error" not in metrics.STUDY_METRICS and not registry.metric("max_error").thesis
    target = torch.zeros(2, 1, 8, 8)
    output = target.clone()
    output[0, 0, 3, 3], output[1, 0, 0, 0] = 0.5, 0.25
    for kind in ("rgb_denoise", "mri_singlecoil"):  # the configured params, the same on every task
        assert metric_params("max_error", kind, registry=registry) == {"power": 2.0}
    params = metric_params("max_error", "mri_singlecoil", registry=registry)
    assert registry.compute("max_error", output, target, **params).tolist() == [0.25, 0.0625]
    assert registry.compute(
        "offset", output, target, **metric_params("offset", "rgb_denoise", registry=registry)
    ).tolist() == pytest.approx([1 + 0.5 / 64, 1 + 0.25 / 64])
    assert list(registry.metric_rows(config["metrics"])) == [*metrics.STUDY_METRICS, "max_error", "offset"]
    with pytest.raises(ValueError, match=r"^unknown metric 'max_error'"):
        metric_params("max_error", "rgb_denoise")  # the package's registry, by default
    # Validating again (the Snakefile, then a CLI) and building the registry again give the same specs.
    assert Registry.from_config(validate(tiny_config, "tiny.yaml")).metrics.keys() == registry.metrics.keys()


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            {"module": "no_such_package_xyz.metrics:f"},
            (
                r"^tiny\.yaml: own_metrics\.mine\.module: cannot import 'no_such_package_xyz\.metrics'"
                r" \(ModuleNotFoundError: "
            ),
        ),
        ({"module": "{m}:missing"}, r"^tiny\.yaml: own_metrics\.mine\.module: module '{m}' has no 'missing'$"),
        (
            {"module": "{m}:NOT_CALLABLE"},
            (
                r"^tiny\.yaml: own_metrics\.mine\.module: {m}:NOT_CALLABLE is neither a function nor a"
                r" torch\.nn\.Module subclass "
            ),
        ),
        (
            {"module": "{m}:NotAModule"},
            (
                r"^tiny\.yaml: own_metrics\.mine\.module: {m}:NotAModule is neither a function nor a torch\.nn\.Module"
                r" subclass "
            ),
        ),
        (
            {"module": "{m}:one_image_argument"},
            (
                r"^tiny\.yaml: own_metrics\.mine\.module: {m}:one_image_argument takes 1 image argument\(s\), expected"
                r" \(output, target\)$"
            ),
        ),
        (
            {"module": "{m}:OneArgument"},
            (
                r"^tiny\.yaml: own_metrics\.mine\.module: {m}:OneArgument\.forward takes 1 image argument\(s\),"
                r" expected \(output, target\)$"
            ),
        ),
        ({"module": "{m}.max_error"}, r"^tiny\.yaml: own_metrics\.mine\.module: '{m}\.max_error' does not match"),
        (
            {"module": "{m}:max_error", "direction": "up"},
            r"^tiny\.yaml: own_metrics\.mine\.direction: 'up' is not one of \['higher', 'lower'\]$",
        ),
        (
            {"module": "{m}:max_error", "direction": None},
            r"^tiny\.yaml: own_metrics\.mine: 'direction' is a required property$",
        ),
        (
            {"module": "{m}:max_error", "params": {"exponent": 2}},
            (
                r"^tiny\.yaml: own_metrics\.mine\.params\.exponent: not a parameter of {m}:max_error \(the mine"
                r" metric\) \(it takes power\)$"
            ),
        ),
        (
            {"module": "{m}:MeanOffset", "params": {"shift": 2}},
            (
                r"^tiny\.yaml: own_metrics\.mine\.params\.shift: not a parameter of {m}:MeanOffset \(the mine metric\)"
                r" \(it takes offset\)$"
            ),
        ),
    ],
)
def test_a_bad_users_metric_is_one_config_line_naming_key_and_module(tiny_config, user_module, settings, message):
    settings = {
        "direction": "lower",
        **{key: value.format(m=user_module) if isinstance(value, str) else value for key, value in settings.items()},
    }
    tiny_config["own_metrics"] = {"mine": {key: value for key, value in settings.items() if value is not None}}
    tiny_config["metrics"].append("mine")
    with pytest.raises(ConfigError, match=message.format(m=user_module)) as error:
        validate(tiny_config, "tiny.yaml")
    assert "\n" not in str(error.value)


def test_a_users_metric_may_not_take_a_registered_name_nor_the_image_column(tiny_config, user_module):
    tiny_config["own_metrics"] = {"psnr": {"module": f"{user_module}:max_error", "direction": "lower"}}
    with pytest.raises(
        ConfigError, match=r"^tiny\.yaml: own_metrics\.psnr\.module: metric 'psnr' is already registered$"
    ):
        validate(tiny_config, "tiny.yaml")
    tiny_config["own_metrics"] = {"image": {"module": f"{user_module}:max_error", "direction": "lower"}}
    with pytest.raises(
        ConfigError,
        match=(
            r"^tiny\.yaml: own_metrics\.image: 'image' names the image column of the per-image metric files; choose"
            r" another name$"
        ),
    ):
        validate(tiny_config, "tiny.yaml")
    assert "image" not in metrics.names()
    tiny_config["own_metrics"] = {}
    tiny_config["metrics"].append("max_error")
    with pytest.raises(ConfigError, match=r"^tiny\.yaml: metrics\.6: 'max_error' is not one of \['l1', "):
        validate(tiny_config, "tiny.yaml")


def test_a_metric_that_does_not_give_one_value_per_image_is_a_one_line_error(user_module):
    broken = metrics.from_module(
        "broken",
        {"module": f"{user_module}:image_mean", "direction": "lower", "scale": 1.0, "decimals": 4, "params": {}},
    )
    with pytest.raises(
        ValueError, match=r"^metric 'broken' returned shape \(\) for 2 image\(s\), expected a tensor of shape \(2,\)$"
    ):
        metrics.compute_spec(broken, torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))


def test_the_schema_does_not_repeat_the_registries_names(repo):
    text = (repo / "src" / "lossbench" / "pipeline" / "schemas" / "config.schema.yaml").read_text()
    assert "lpips_l2]" not in text and "lpips, flip]" not in text


def test_mix_is_opt_in_and_weights_msssim_and_l1_as_zhao_et_al():
    assert "mix" in losses.names() and "mix" not in losses.STUDY_LOSSES
    torch.manual_seed(0)
    target = torch.rand(2, 3, 64, 64)
    output = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    loss_fn = MixLoss(term_params={"msssim": {"small_images": "reduce_scales"}})
    expected = (
        0.84 * (1 - ms_ssim(output, target, small_images="reduce_scales").mean())
        + 0.16 * (output - target).abs().mean()
    )
    assert float(loss_fn(output, target)) == pytest.approx(float(expected), rel=1e-6)


def test_mix_through_the_config_gives_its_terms_their_task_defaults_and_channels(tiny_config):
    tiny_config["losses"]["mix"] = {
        "lr": 1e-3,
        "params": {
            "weights": {"l2": 0.5, "adaptive": 0.3, "flip": 0.2},
            "term_params": {"flip": {"out_of_range": "inward"}},
        },
    }
    config = validate(tiny_config, "tiny.yaml")
    spec = run_settings(config, "knee", "mix", 0)
    assert spec.loss.params["term_params"]["flip"] == {
        "out_of_range": "inward",
        "mode": "gray_thesis",
        "ppd": pytest.approx(67.0206, abs=1e-4),
    }
    loss_fn = build_loss(spec)
    assert [p.numel() for p in loss_fn.parameters()] == [1, 1]  # adaptive's alpha and scale for one channel
    target = torch.rand(2, 1, 32, 32)
    assert torch.isfinite(loss_fn(target.flip(-1), target))


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"weights": {"huber": 1.0}},
            r"^tiny\.yaml: losses\.mix\.params\.weights\.huber: not a loss to mix \(expected one of l1, l2, ",
        ),
        ({"weights": {"l1": -1}}, r"^tiny\.yaml: losses\.mix\.params\.weights\.l1: expected a number >= 0, got -1$"),
        (
            {"term_params": {"flip": {}}},
            r"^tiny\.yaml: losses\.mix\.params\.term_params\.flip: 'flip' is not among the weights \(msssim, l1\)$",
        ),
        (
            {"alpha": 0.5},
            (
                r"^tiny\.yaml: losses\.mix\.params\.alpha: not a parameter of the mix loss \(it takes weights,"
                r" term_params, channels, reduction\)$"
            ),
        ),
    ],
)
def test_bad_mix_params_are_one_config_line(tiny_config, params, message):
    tiny_config["losses"]["mix"] = {"lr": 1e-3, "params": params}
    with pytest.raises(ConfigError, match=message):
        validate(tiny_config, "tiny.yaml")


def _metrics_csv(path, rows):
    path.write_text("image,l1,l2,psnr\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return path


def test_a_loss_the_thesis_lacks_gets_a_column_without_a_thesis_value(tmp_path):
    inputs = _metrics_csv(tmp_path / "input.csv", [["a", 0.08, 0.0096, 20.2], ["b", 0.078, 0.0096, 20.1]])
    l1 = _metrics_csv(tmp_path / "l1.csv", [["a", 0.025, 0.0011, 29.8], ["b", 0.024, 0.0011, 29.9]])
    mix = _metrics_csv(tmp_path / "mix.csv", [["a", 0.02, 0.0009, 30.8], ["b", 0.021, 0.0009, 30.9]])
    table = build_table("table_6_1", inputs, {"l1": [l1], "mix": [mix]})
    assert table.columns == ["input", *losses.STUDY_LOSSES, "mix"]
    assert table.cells["l1"]["mix"].bold and not table.cells["l1"]["l1"].bold
    assert "Mix (MS-SSIM+l1)" in to_markdown(table) and r"Mix (MS-SSIM$+l_1$)" in to_latex(table)
    rows = {(row["metric"], row["model"]): row for row in comparison_rows(table)}
    assert "mix" not in paper.table("table_6_1").get("l1", {})
    assert rows[("l1", "mix")]["paper"] == "" and rows[("l1", "mix")]["ours"] == "20.50"
    assert len(write_all(table, tmp_path / "table_6_1")) == 5


def test_a_metric_the_thesis_lacks_gets_a_row_without_a_thesis_value_in_every_table(tmp_path, user_module):
    from lossbench.report.statistics_tables import pair_rows
    from lossbench.report.summary import summarise
    from lossbench.report.table_files import write_per_seed
    from lossbench.userstudy.agreement import measured_values

    own = metrics.from_module("max_error", {**_own_metrics(user_module)["max_error"], "decimals": 1})
    registry = Registry(metrics={**metrics.SPECS, "max_error": own})

    def per_image(name, rows):
        path = tmp_path / f"{name}.csv"
        path.write_text("image,l1,psnr,max_error\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
        return path

    inputs = per_image("input", [["a", 0.08, 20.2, 0.5], ["b", 0.078, 20.1, 0.4]])
    models = {
        "l1": [per_image("l1", [["a", 0.025, 29.8, 0.2], ["b", 0.024, 29.9, 0.3]])],
        "l2": [per_image("l2", [["a", 0.03, 29.0, 0.1], ["b", 0.031, 29.1, 0.1]])],
    }
    with pytest.raises(ValueError, match=r"^unknown metric 'max_error'"):
        build_table("table_6_1", inputs, models)  # the package's registry, by default
    table = build_table("table_6_1", inputs, models, registry=registry)
    assert list(table.cells) == [*metrics.STUDY_METRICS, "max_error"]
    row = table.cells["max_error"]
    assert row["input"].text(1) == "45.0" and row["l2"].bold and not row["l1"].bold  # ×100, lower is better
    # Two images are too few to test (lossbench.report.statistics.MIN_UNITS): no † beside the best.
    assert table.metric_labels[
        "max_error"
    ] == "Max error ↓" and "| Max error ↓ | 45.0 | 25.0 | **10.0** |  |  |  |  |" in to_markdown(table)
    assert r"Max error $\downarrow$ & 45.0 & 25.0 & \textbf{10.0} &  &" in to_latex(table)
    compared = {row["model"]: row for row in comparison_rows(table) if row["metric"] == "max_error"}
    assert compared["l2"]["ours"] == "10.0" and all(
        row["paper"] == "" and row["difference"] == "" for row in compared.values()
    )
    paths = write_all(table, tmp_path / "tables" / "table_6_1")
    assert "max_error,Max error ↓,45.000" in paths[0].read_text() and "Max error" in paths[4].read_text()
    per_seed = write_per_seed("table_6_1", models, [0], tmp_path / "tables" / "table_6_1", registry=registry)
    assert (
        "max_error,l2,0,10.000" in per_seed[0].read_text()
        and "| Max error | 0 | 25.0 | 10.0 |" in per_seed[1].read_text()
    )
    summary = summarise({"table_6_1": paths[0]}, registry=registry)
    assert "| Max error | l2 |  |" in summary
    assert {row["metric"] for row in pair_rows(models, registry.metric_rows(["max_error"]))} >= {
        "l1",
        "psnr",
        "max_error",
    }
    assert measured_values(paths[0])["max_error"] == {"l1": 25.0, "l2": 10.0}


def test_a_loss_or_metric_that_does_not_take_a_tasks_channels_is_a_config_line(tiny_config, monkeypatch):
    import dataclasses

    monkeypatch.setitem(losses.SPECS, "l1", dataclasses.replace(losses.SPECS["l1"], channels=(3,)))
    with pytest.raises(
        ConfigError, match=r"^tiny\.yaml: losses: l1 takes images of 3 channel\(s\), but tasks\.knee has 1$"
    ):
        validate(tiny_config, "tiny.yaml")
    monkeypatch.setitem(losses.SPECS, "l1", dataclasses.replace(losses.SPECS["l1"], channels=(1, 3)))
    monkeypatch.setitem(metrics.SPECS, "psnr", dataclasses.replace(metrics.SPECS["psnr"], channels=(1,)))
    with pytest.raises(
        ConfigError, match=r"^tiny\.yaml: metrics: psnr takes images of 1 channel\(s\), but tasks\.denoise has 3$"
    ):
        validate(tiny_config, "tiny.yaml")


def test_an_unknown_task_kind_is_an_error_not_a_fall_through(tmp_path):
    from lossbench.data.tasks import channels, train_dataset, write_valset

    assert [channels(kind) for kind in ("rgb_denoise", "mri_singlecoil", "mri_multicoil", "rgb_jpeg")] == [3, 1, 1, 3]
    for call in (
        lambda: channels("rgb"),
        lambda: train_dataset("rgb", {}, tmp_path),
        lambda: write_valset("rgb", {}, tmp_path, tmp_path / "v.h5"),
    ):
        with pytest.raises(
            ValueError,
            match=r"^unknown task kind 'rgb': expected one of rgb_denoise, mri_singlecoil, mri_multicoil, rgb_jpeg$",
        ):
            call()


JPEG_TASK = {
    "kind": "rgb_jpeg",
    "data_from": "denoise",
    "quality": 10,
    "crop": 32,
    "crops_per_image": 2,
    "training": {"epochs": 1, "batch_size": 4},
}


def test_a_task_of_its_own_kind_gets_its_own_table_without_a_thesis_comparison(tiny_config):
    from lossbench.pipeline.sections import dataset, task_tables

    tiny_config["tasks"]["jpeg"] = dict(JPEG_TASK)
    tiny_config["losses"]["l2"]["lr"]["jpeg"] = 1e-3
    config = validate(tiny_config, require_data=False)
    assert task_tables(config) == {
        "table_6_1": "denoise",
        "table_6_3": "knee",
        "table_6_4": "brain",
        "table_jpeg": "jpeg",
    }
    assert dataset(config, "jpeg") is config["tasks"]["denoise"]["data"]
    spec = run_settings(config, "jpeg", "l1", 0)
    assert spec.kind == "rgb_jpeg" and spec.dataset == config["tasks"]["denoise"]["data"] and spec.data["quality"] == 10
    # A thesis task's name with another kind is another task: its own table, not the thesis's.
    from lossbench.report.tables import subject

    assert (
        subject("denoise", "rgb_jpeg", JPEG_TASK).name == "table_denoise"
        and not subject("denoise", "rgb_jpeg", JPEG_TASK).thesis
    )
    jpeg = subject("jpeg", "rgb_jpeg", JPEG_TASK)
    assert (jpeg.name, jpeg.input_label, jpeg.thesis) == ("table_jpeg", "JPEG", False) and "quality 10" in jpeg.caption


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"data_from": "knee"},
            r"^config: tasks\.jpeg\.data_from: task 'knee' has fastmri data, a rgb_jpeg task needs photos$",
        ),
        (
            {"data_from": "lung"},
            (
                r"^config: tasks\.jpeg\.data_from: 'lung' is not a configured task with its own data \(one of denoise,"
                r" knee, brain\)$"
            ),
        ),
        (
            {"data": {"source": "embedded", "train": ["chelsea"], "val": ["astronaut"]}},
            r"^config: tasks\.jpeg: expected either data \(its own\) or data_from \(another task's\), got both$",
        ),
        ({"quality": 0}, r"^config: tasks\.jpeg\.quality: 0 is less than the minimum of 1$"),
        (
            {"sigma_val": 25},
            r"^config: tasks\.jpeg: Additional properties are not allowed \('sigma_val' was unexpected\)$",
        ),
    ],
)
def test_bad_jpeg_task_settings_are_one_config_line(tiny_config, change, message):
    tiny_config["tasks"]["jpeg"] = {**JPEG_TASK, **change}
    tiny_config["losses"]["l2"]["lr"]["jpeg"] = 1e-3
    with pytest.raises(ConfigError, match=message):
        validate(tiny_config, require_data=False)


def _psnr(a, b):
    return float(10 * torch.log10(1 / ((torch.as_tensor(a) - torch.as_tensor(b)) ** 2).mean()))


def test_jpeg_inputs_are_the_denoising_crops_compressed(tmp_path):
    from lossbench.data.kinds.rgb_jpeg import jpeg_compress
    from lossbench.data.tasks import prepare_embedded_photos, train_dataset, write_valset
    from lossbench.data.valset import ImageFile

    prepare_embedded_photos(["astronaut", "coffee"], tmp_path / "photos", 96)
    settings = {"crop": 32, "crops_per_image": 2, "augment": True}
    jpeg = train_dataset("rgb_jpeg", {**settings, "quality": 10}, tmp_path / "photos")
    clean = train_dataset("rgb_denoise", {**settings, "sigma_train": [0, 0]}, tmp_path / "photos")
    compressed, target = jpeg.pair(1, 7)
    assert torch.equal(target, clean.pair(1, 7)[1]) and compressed.shape == target.shape == (3, 32, 32)
    finer = torch.from_numpy(jpeg_compress(target.numpy(), 75))
    assert 15 < _psnr(compressed, target) < _psnr(finer, target)  # lower quality, more loss
    # The blocks are JPEG's 8 × 8 from the corner: on a smooth ramp, the steps are at their edges.
    ramp = torch.linspace(0, 1, 64).expand(3, 64, 64).numpy()
    steps = torch.from_numpy(jpeg_compress(ramp, 10)).diff(dim=2).abs().mean(dim=(0, 1))
    assert steps[7::8].mean() > 3 * steps[[i for i in range(63) if i % 8 != 7]].mean()
    assert write_valset("rgb_jpeg", {"quality": 10}, tmp_path / "photos", tmp_path / "val.h5") == 2
    with ImageFile(tmp_path / "val.h5") as valset:
        assert valset.attrs["kind"] == "rgb_jpeg" and valset.attrs["quality"] == 10
        image, reference = valset.read("input", "astronaut"), valset.read("target", "astronaut")
        assert image.shape == reference.shape == (3, 96, 96) and _psnr(image, reference) < 30
