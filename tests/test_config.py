import re

import pytest
import yaml

from lossbench import losses, metrics, models
from lossbench.data import tasks
from lossbench.pipeline.config import load, validate
from lossbench.pipeline.config_file import ConfigError
from lossbench.pipeline.job_settings import evaluation_settings, learning_rate, run_settings, validation_metrics
from lossbench.registry import Registry
from lossbench.train.run_settings import Schedule


def test_tiny_config_is_valid_and_defaults_are_filled(tiny_config):
    config = validate(tiny_config, "tiny.yaml")
    assert config["tasks"]["knee"]["mask"] == {"center_fraction": 0.04, "acceleration": 8}
    assert config["tasks"]["knee"]["crop"] == 320
    assert config["tasks"]["denoise"]["sigma_train"] == [0, 40]
    assert config["evaluation"]["flip_gray_mode"] == "gray_thesis"
    assert config["tasks"]["denoise"]["training"]["workers"] == 0


def test_demo_config_is_valid(repo):
    config = load(repo / "config.yaml")
    assert set(config["tasks"]) == {"denoise", "knee", "brain"}


def _set(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[last] = value


@pytest.mark.parametrize(
    "dotted, value, message",
    [
        (
            "tasks.liver",
            {"data": {"source": "synthetic"}, "training": {"epochs": 1}},
            (
                r"^tiny\.yaml: tasks\.liver\.kind: missing \(only the thesis's tasks denoise, knee, brain have a"
                r" default\); expected one of rgb_denoise, mri_singlecoil, mri_multicoil, rgb_jpeg$"
            ),
        ),
        (
            "tasks.liver",
            {"kind": "mri_liver", "data": {"source": "synthetic"}, "training": {"epochs": 1}},
            (
                r"^tiny\.yaml: tasks\.liver\.kind: 'mri_liver' is not one of \['rgb_denoise', 'mri_singlecoil',"
                r" 'mri_multicoil', 'rgb_jpeg'\]$"
            ),
        ),
        (
            "tasks.liver",
            {"kind": "mri_singlecoil", "data": {"source": "synthetic"}, "sigma_val": 25, "training": {"epochs": 1}},
            r"^tiny\.yaml: tasks\.liver: Additional properties are not allowed \('sigma_val' was unexpected\)$",
        ),
        ("losses.huber", {"lr": 1e-3}, r"tiny\.yaml: losses: 'huber' is not one of"),
        ("metrics", ["l1", "vif"], r"tiny\.yaml: metrics\.1: 'vif' is not one of"),
        ("losses.l1.lr", 0, r"tiny\.yaml: losses\.l1\.lr: "),
        ("losses.l1.lr", -1e-3, r"tiny\.yaml: losses\.l1\.lr: "),
        (
            "tasks.knee.training.epochs",
            0,
            r"tiny\.yaml: tasks\.knee\.training\.epochs: 0 is less than the minimum of 1",
        ),
        ("tasks.denoise.training.epochs", -2, r"tasks\.denoise\.training\.epochs"),
        ("model.depth", 0, r"model\.depth"),
        (
            "tasks.denoise.data.train",
            ["astronaut", "unicorn"],
            r"tasks\.denoise\.data\.train: unknown embedded photo 'unicorn'",
        ),
        ("tasks.denoise.data.val", ["chelsea"], r"tasks\.denoise\.data: chelsea in both train and val"),
        ("tasks.denoise.sigma_train", [40, 10], r"tasks\.denoise\.sigma_train: expected \[min, max\]"),
        ("figures.fig_6_13", {"task": "lung", "image": "x"}, r"figures\.fig_6_13\.task"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(tiny_config, dotted, value, message):
    _set(tiny_config, dotted, value)
    with pytest.raises(ConfigError, match=message) as error:
        validate(tiny_config, "tiny.yaml")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "chosen, scored",
    [
        ("all", ["l1", "psnr", "lpips", "ssim", "dists"]),
        ("thesis", ["l1", "psnr", "lpips"]),
        (["dists", "l1"], ["l1", "dists"]),  # in the tables' order, not the list's
    ],
)
def test_validation_scores_the_chosen_metrics_and_evaluation_all(tiny_config, chosen, scored):
    tiny_config["metrics"] = ["l1", "psnr", "lpips", "ssim", "dists"]
    tiny_config.setdefault("trainer", {})["validation_metrics"] = chosen
    config = validate(tiny_config, "tiny.yaml")
    settings = evaluation_settings(config)
    assert list(validation_metrics(config, "knee", settings, Registry.from_config(config))) == scored
    # Not part of the run settings: choosing other validation metrics reruns no finished model.
    tiny_config["trainer"]["validation_metrics"] = "all" if chosen != "all" else "thesis"
    assert run_settings(config, "knee", "l2", 0) == run_settings(validate(tiny_config), "knee", "l2", 0)


def test_validation_metrics_outside_metrics_are_rejected_in_one_line(tiny_config):
    tiny_config["metrics"] = ["l1", "psnr"]
    tiny_config.setdefault("trainer", {})["validation_metrics"] = ["psnr", "dists"]
    with pytest.raises(ConfigError) as error:
        validate(tiny_config, "tiny.yaml")
    assert str(error.value) == (
        "tiny.yaml: trainer.validation_metrics: 'dists' is not in metrics"
        " (expected some of l1, psnr, or all, or thesis)"
    )


def test_missing_data_folders_are_rejected(tiny_config, tmp_path):
    (tmp_path / "file1000001.h5").touch()
    tiny_config["tasks"]["knee"]["data"] = {
        "source": "fastmri",
        "train_dir": str(tmp_path),
        "val_dir": str(tmp_path / "missing"),
    }
    with pytest.raises(ConfigError, match=r"tasks\.knee\.data\.val_dir: folder '.*missing' does not exist"):
        validate(tiny_config, "tiny.yaml")
    tiny_config["tasks"]["knee"]["data"] = {"source": "fastmri", "train_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"tasks\.knee\.data: 'val_dir' is a required property"):
        validate(tiny_config, "tiny.yaml")


def test_per_task_learning_rate_must_cover_every_task(tiny_config):
    tiny_config["losses"]["l2"]["lr"] = {"denoise": 1e-3}
    with pytest.raises(ConfigError, match=r"losses\.l2\.lr: no learning rate for task 'knee'"):
        validate(tiny_config, "tiny.yaml")


def test_learning_rates_and_spec(tiny_config):
    config = validate(tiny_config)
    assert learning_rate(config, "knee", "l2") == 2e-3 and learning_rate(config, "knee", "l1") == 1e-3
    spec = run_settings(config, "knee", "l2", 3)
    assert spec.kind == "mri_singlecoil" and spec.seed == 3 and spec.lr == 2e-3
    assert spec.data["mask"]["acceleration"] == 8 and "source" not in spec.data


def test_load_reports_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("seeds: [0\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        load(tmp_path / "list.yaml")


def test_paper_config_is_valid_except_for_its_data_folders(repo, tmp_path):
    with open(repo / "config" / "paper.yaml") as handle:
        config = yaml.safe_load(handle)
    with pytest.raises(
        ConfigError, match=r"paper\.yaml: tasks\.\w+\.data\.train_dir: folder '/data/.*' does not exist"
    ):
        validate(yaml.safe_load(yaml.safe_dump(config)), "paper.yaml")
    (tmp_path / "file1000001.h5").touch()
    (tmp_path / "image.png").touch()
    for task in config["tasks"].values():
        task["data"]["train_dir"] = task["data"]["val_dir"] = str(tmp_path)
    validated = validate(config, "paper.yaml")
    assert validated["tasks"]["denoise"]["training"]["epochs"] == 1000
    assert validated["tasks"]["brain"]["training"]["epochs"] == 500
    assert validated["tasks"]["knee"]["mask"] == {"center_fraction": 0.04, "acceleration": 8}
    assert set(validated["losses"]) == {"l1", "l2", "msssim", "lpips_l2", "flip", "adaptive"}


@pytest.mark.parametrize(
    "model, message",
    [
        ({"kernel_size": 4}, r"tiny\.yaml: model\.kernel_size: kernel sizes must be odd"),
        ({"kernel_sizes": [3, 5]}, r"tiny\.yaml: model\.kernel_sizes: expected depth \+ 1 = 3 sizes"),
        ({"kernel_sizes": [3, 4, 3]}, r"tiny\.yaml: model\.kernel_sizes: kernel sizes must be odd"),
    ],
)
def test_bad_kernel_sizes_are_rejected_naming_the_key(tiny_config, model, message):
    tiny_config["model"].update(model)
    with pytest.raises(ConfigError, match=message):
        validate(tiny_config, "tiny.yaml")
    tiny_config["model"].update(kernel_size=3, kernel_sizes=[5, 3, 3])
    assert validate(tiny_config, "tiny.yaml")["model"]["kernel_sizes"] == [5, 3, 3]


def test_command_line_overrides_get_yaml_types_and_are_blamed(tiny_config):
    from lossbench.pipeline.config import typed_overrides, validate_with_overrides

    # What Snakemake's parser gives for `--config 'seeds=[0, 1]' threads=2 'trainer={nonfinite: skip}'`.
    overrides = typed_overrides(
        {"seeds": ["0", "1"], "threads": 2, "trainer": {"nonfinite": "skip"}, "experiment": "001x"}
    )
    assert overrides == {"seeds": [0, 1], "threads": 2, "trainer": {"nonfinite": "skip"}, "experiment": "001x"}
    tiny_config["seeds"] = ["0", "x"]
    with pytest.raises(
        ConfigError, match=r"^--config seeds \(over tiny.yaml\): seeds.1: 'x' is not of type 'integer'$"
    ):
        validate_with_overrides(tiny_config, "tiny.yaml", {"seeds": ["0", "x"]})
    tiny_config["seeds"], tiny_config["bogus"] = [0], 1
    with pytest.raises(ConfigError, match=r"^--config bogus \(over tiny.yaml\): <top level>: .*'bogus' was unexpected"):
        validate_with_overrides(tiny_config, "tiny.yaml", {"bogus": 1})
    # A bad value of the file itself is still the file's, whatever else the command line set.
    del tiny_config["bogus"]
    tiny_config["threads"] = 0
    with pytest.raises(ConfigError, match=r"^tiny.yaml: threads: 0 is less than the minimum of 1$"):
        validate_with_overrides(tiny_config, "tiny.yaml", {"seeds": [0]})


def test_a_task_schedule_replaces_the_trainers_for_that_task_only(repo):
    raw = yaml.safe_load((repo / "config.yaml").read_text())
    raw["trainer"]["schedule"] = {"kind": "constant"}
    raw["tasks"]["knee"]["training"]["schedule"] = {"kind": "cosine", "final": 0.05}
    assert "schedule" not in raw["tasks"]["brain"]["training"]  # so brain takes the trainer's
    config = validate(raw, require_data=False)
    assert run_settings(config, "knee", "l2", 0).trainer.schedule == Schedule(kind="cosine", warmup=0, final=0.05)
    assert run_settings(config, "brain", "l2", 0).trainer.schedule == Schedule(kind="constant", warmup=0, final=0)
    assert "schedule" not in run_settings(config, "knee", "l2", 0).to_dict()["training"]
    raw["tasks"]["knee"]["training"]["schedule"] = {"kind": "linear"}
    with pytest.raises(ConfigError, match=r"tasks\.knee\.training\.schedule\.kind"):
        validate(raw, require_data=False)


_UNET = {"width": 4, "depth": 2, "kernel_size": 41, "kernel_sizes": None, "residual": False}
_GEOMETRY = {"ppd": None, "distance_m": 100.0, "monitor_width_m": 0.7, "monitor_pixels": 3840}


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (
            lambda: losses.spec("mix").check_config({"weights": {"l3": 1}}),
            r"^losses\.mix\.params\.weights\.l3: not a loss to mix \(expected one of l1, ",
        ),
        (
            lambda: tasks.spec("mri_singlecoil").check_config(
                "knee", {"mask": {"center_fraction": 0.5, "acceleration": 4}, "data": {"source": "fastmri"}}
            ),
            r"^tasks\.knee\.mask\.center_fraction: 0\.5 exceeds 1/acceleration = 0\.25: ",
        ),
        (
            lambda: tasks.spec("rgb_denoise").check_config("noisy", {"sigma_train": [0.2, 0.1]}),
            r"^tasks\.noisy\.sigma_train: expected \[min, max\], got \[0\.2, 0\.1\]$",
        ),
        (
            lambda: models.spec("unet").check_config(_UNET, {"denoise": 64, "small": 32}),
            r"^model\.kernel_size: 41 is wider than the 31 pixels \(2·16 − 1\) a kernel can use on the 16×16 feature"
            r" maps of level 2 \(tasks\.denoise\.crop 64 pooled 2 times\)",
        ),
        (
            lambda: models.spec("fastmri_unet").check_config(
                {"chans": 4, "num_pool_layers": 6, "drop_prob": 0.0}, {"knee": 64, "brain": 32}
            ),
            r"^model\.num_pool_layers: 6 pooling levels need crops of at least 2\*\*6 = 64 pixels, but"
            r" tasks\.brain\.crop is 32 \(num_pool_layers at most 5\)$",
        ),
        (
            lambda: metrics.spec("flip").check_config({"flip": _GEOMETRY}),
            r"^evaluation\.flip: distance_m 100\.0, monitor_width_m 0\.7, monitor_pixels 3840 give 9574 pixels"
            r" per degree; expected at most 1000 \(FLIP's filters widen with it\)$",
        ),
        (
            lambda: metrics.spec("lpips").check_config({"lpips_weights": "/nonexistent/alexnet.pth"}),
            r"^evaluation\.lpips_weights: file '/nonexistent/alexnet\.pth' does not exist$",
        ),
    ],
    ids=["mix_loss", "mri_kind", "rgb_denoise_kind", "unet", "fastmri_unet", "flip_metric", "lpips_metric"],
)
def test_each_spec_checks_its_own_section_naming_the_key_from_the_top(check, message):
    # The pipeline adds only the file: the spec that owns a section names its keys (docs of the specs' check_config).
    assert re.search(message, check())


def test_a_spec_without_checks_of_its_own_accepts_its_section():
    assert losses.spec("l1").check_config({"reduction": "none"}) is None  # the pipeline refuses it: training's need
    assert metrics.spec("psnr").check_config({"flip": _GEOMETRY, "lpips_weights": "/nonexistent"}) is None
    assert models.spec("fastmri_unet").check_config({"chans": 4, "num_pool_layers": 2, "drop_prob": 0.0}, {}) is None
