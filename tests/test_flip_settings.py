"""FLIP's configurable viewing conditions and grayscale modes: schema, loss parameters, the flip_gray_modes table."""

from __future__ import annotations

import numpy as np
import pytest

from lossbench.data.fastmri_synthetic import generate_dataset
from lossbench.data.tasks import write_valset
from lossbench.data.valset import ImageFile, write_images
from lossbench.evaluate import GRAY_MODES, evaluate, flip_gray_modes, flip_gray_modes_markdown
from lossbench.flip import MAX_PPD, VIEWING, flip_ppd
from lossbench.pipeline.config import SCHEMA_PATH, validate
from lossbench.pipeline.config_file import ConfigError, read_yaml
from lossbench.pipeline.job_settings import loss_params


def test_viewing_conditions_default_to_67_ppd_for_metric_and_loss(tiny_config):
    config = validate(tiny_config, "tiny.yaml")
    assert config["evaluation"]["flip"] == {
        "distance_m": 0.7,
        "monitor_width_m": 0.7,
        "monitor_pixels": 3840,
        "ppd": None,
    }
    assert flip_ppd(config["evaluation"]) == pytest.approx(67.02064514, abs=1e-6)
    assert loss_params(config, "denoise", "flip") == {"mode": "rgb", "ppd": pytest.approx(67.02064514, abs=1e-6)}
    assert loss_params(config, "knee", "flip")["mode"] == "gray_thesis"


def test_viewing_geometry_and_ppd_override(tiny_config):
    tiny_config["evaluation"] = {"flip": {"distance_m": 0.35}, "flip_gray_mode": "gray_lab"}
    config = validate(tiny_config, "tiny.yaml")
    assert flip_ppd(config["evaluation"]) == pytest.approx(67.02064514 / 2, abs=1e-5)
    assert loss_params(config, "brain", "flip") == {"mode": "gray_lab", "ppd": pytest.approx(33.51032, abs=1e-5)}
    config["evaluation"]["flip"]["ppd"] = 30.0
    assert loss_params(config, "denoise", "flip")["ppd"] == 30.0


@pytest.mark.parametrize(
    "flip, message",
    [
        ({"distance_m": 0}, r"tiny\.yaml: evaluation\.flip\.distance_m: 0 is less than or equal to the minimum of 0"),
        ({"monitor_pixels": 3840.5}, r"tiny\.yaml: evaluation\.flip\.monitor_pixels: 3840\.5 is not of type 'integer'"),
        ({"ppd": -67}, r"tiny\.yaml: evaluation\.flip\.ppd: "),
        ({"dpi": 96}, r"tiny\.yaml: evaluation\.flip: Additional properties are not allowed \('dpi'"),
    ],
)
def test_bad_viewing_conditions_are_rejected_in_one_line(tiny_config, flip, message):
    tiny_config["evaluation"] = {"flip": flip}
    with pytest.raises(ConfigError, match=message) as error:
        validate(tiny_config, "tiny.yaml")
    assert "\n" not in str(error.value)


def test_unknown_gray_mode_is_rejected(tiny_config):
    tiny_config["evaluation"] = {"flip_gray_mode": "gray_srgb"}
    with pytest.raises(ConfigError, match=r"evaluation\.flip_gray_mode: 'gray_srgb' is not one of"):
        validate(tiny_config, "tiny.yaml")


@pytest.fixture(scope="module")
def knee(tmp_path_factory):
    root = tmp_path_factory.mktemp("knee")
    generate_dataset(root / "files", "singlecoil", n_volumes=1, n_slices=2, seed=4, prefix="knee_val")
    write_valset(
        "mri_singlecoil",
        {"mask": {"center_fraction": 0.04, "acceleration": 8}, "crop": 320},
        root / "files",
        root / "val.h5",
    )
    rng = np.random.default_rng(0)
    with ImageFile(root / "val.h5") as val:
        targets = list(val.items("target"))
    for seed, noise in ((0, 0.02), (1, 0.04)):
        write_images(
            root / f"l1_seed{seed}.h5",
            {"output": [(i, t + noise * rng.standard_normal(t.shape).astype(np.float32)) for i, t in targets]},
        )
    write_images(root / "l2_seed0.h5", {"output": targets})
    return root


def test_flip_gray_modes_rows_match_the_per_image_evaluation(knee):
    valset = knee / "val.h5"
    outputs = {"knee": {"l1": [knee / "l1_seed0.h5", knee / "l1_seed1.h5"], "l2": [knee / "l2_seed0.h5"]}}
    rows = flip_gray_modes({"knee": valset}, outputs)
    assert [row["mode"] for row in rows] == list(GRAY_MODES)
    for row in rows:
        evaluation = {"flip_gray_mode": row["mode"]}
        masked = np.mean([r["flip"] for r in evaluate(valset, None, ["flip"], evaluation)])
        l1 = np.mean(
            [
                np.mean([r["flip"] for r in evaluate(valset, path, ["flip"], evaluation)])
                for path in outputs["knee"]["l1"]
            ]
        )
        assert row["input"] == pytest.approx(masked, abs=1e-6) and row["l1"] == pytest.approx(l1, abs=1e-6)
        assert row["l2"] == 0.0 and row["input"] > row["l1"] > 0
    # The readings differ: that is what the table shows.
    assert len({round(row["input"], 4) for row in rows}) == 3
    markdown = flip_gray_modes_markdown(rows, {"knee": "Masked"})
    assert "| gray_lab |" in markdown and "**0.0000**" in markdown


def test_flip_gray_modes_rejects_a_denoising_valset(tmp_path):
    write_images(
        tmp_path / "val.h5",
        {"input": [("a", np.zeros((3, 8, 8), np.float32))], "target": [("a", np.zeros((3, 8, 8), np.float32))]},
        {"kind": "rgb_denoise"},
    )
    with pytest.raises(ValueError, match="flip_gray_modes needs a grayscale validation set, got one of rgb_denoise"):
        flip_gray_modes({"knee": tmp_path / "val.h5"}, {})


def test_user_study_manifest_records_the_viewing_conditions(tmp_path):
    from lossbench.userstudy.stimuli import load_manifest, make_stimuli

    rng = np.random.default_rng(1)
    targets = [("img", rng.random((3, 16, 16)).astype(np.float32))]
    write_images(tmp_path / "val.h5", {"input": targets, "target": targets})
    for loss in ("l1", "flip"):
        write_images(tmp_path / f"{loss}.h5", {"output": targets})
    viewing = {"distance_m": 0.7, "monitor_width_m": 0.7, "monitor_pixels": 3840, "ppd": flip_ppd({})}
    path = make_stimuli(
        "denoise",
        tmp_path / "val.h5",
        {loss: tmp_path / f"{loss}.h5" for loss in ("l1", "flip")},
        ["img"],
        tmp_path / "study",
        viewing=viewing,
    )
    assert load_manifest(path)["viewing"] == viewing


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"out_of_range": "wrap"},
            (
                r"tiny\.yaml: losses\.flip\.params\.out_of_range: 'wrap' is not one of \['clamp', 'inward',"
                r" 'extrapolate'\]"
            ),
        ),
        (
            {"clip": True},
            (
                r"tiny\.yaml: losses\.flip\.params\.clip: not a parameter of the flip loss \(it takes ppd, mode,"
                r" out_of_range, reduction\)"
            ),
        ),
    ],
)
def test_bad_flip_loss_params_are_rejected_in_one_line(tiny_config, params, message):
    tiny_config["losses"]["flip"] = {"lr": 1e-3, "params": params}
    with pytest.raises(ConfigError, match=message) as error:
        validate(tiny_config, "tiny.yaml")
    assert "\n" not in str(error.value)


def test_flip_loss_option_reaches_the_loss(tiny_config):
    tiny_config["losses"]["flip"] = {"lr": 1e-3, "params": {"out_of_range": "inward"}}
    config = validate(tiny_config, "tiny.yaml")
    assert loss_params(config, "denoise", "flip")["out_of_range"] == "inward"


def test_the_schema_defaults_are_the_thesis_viewing_geometry():
    # The user study's start page and the FLIP metric read lossbench.flip.VIEWING; the workflow reads the schema.
    flip = read_yaml(SCHEMA_PATH)["properties"]["evaluation"]["properties"]["flip"]["properties"]
    assert {key: flip[key]["default"] for key in VIEWING} == dict(VIEWING)


def test_the_schema_bounds_a_given_ppd_as_the_metric_bounds_the_geometry():
    # The FLIP metric's spec refuses a geometry of more than MAX_PPD; the schema refuses such a ppd given directly.
    schema = read_yaml(SCHEMA_PATH)
    given = schema["properties"]["evaluation"]["properties"]["flip"]["properties"]["ppd"]["oneOf"][1]
    loss = schema["properties"]["losses"]["allOf"][0]["properties"]["flip"]["properties"]["params"]["properties"]["ppd"]
    assert given["maximum"] == loss["maximum"] == MAX_PPD
