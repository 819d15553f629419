"""fastMRI's real variety (narrow brain scans, coil counts, k-space widths, magnitudes, acquisitions)
through the check rule's functions and training; a broken file still fails alone, or is skipped."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest

from lossbench.data import fastmri_synthetic as synthetic
from lossbench.data.fastmri_files import FastMRIFileError, check_folder, link_checked
from lossbench.data.tasks import write_valset
from lossbench.pipeline.config import validate
from lossbench.pipeline.job_settings import run_settings
from lossbench.train import loop as training
from lossbench.train.run_settings import RunSettings

#: Brain volumes at matrix 48: coil counts 2, 3 and 5, one scan 37 columns wide (narrower than the
#: 48 crop), maxima from 1e-5 to 1e-2, several acquisitions.
BRAIN = [
    dict(width=48, n_coils=3, amplitude=1e-2, acquisition="AXT1POST"),
    dict(width=37, n_coils=5, amplitude=1e-5, acquisition="AXFLAIR"),
    dict(width=48, n_coils=2, amplitude=3e-4, acquisition="AXT1PRE"),
]


def _write(folder: Path, layouts: list[dict], challenge: str = "multicoil", slices: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, layout in enumerate(layouts):
        path = folder / f"brain_{index:03d}.h5"
        synthetic.write_volume(path, challenge, slices, np.random.default_rng(index + 10), matrix=48, **layout)
        paths.append(path)
    return paths


@pytest.fixture()
def brain_folder(tmp_path) -> tuple[Path, Path]:
    """Varied brain volumes and, in the same folder, a truncated copy of one (a cut-off download)."""
    paths = _write(tmp_path / "brain", BRAIN)
    truncated = tmp_path / "brain" / "brain_999.h5"
    truncated.write_bytes(paths[0].read_bytes()[: paths[0].stat().st_size // 2])
    return tmp_path / "brain", truncated


def test_varied_volumes_pass_and_a_truncated_one_fails_alone(brain_folder, tmp_path):
    folder, truncated = brain_folder
    selected, problems = check_folder(folder, "multicoil", crop=48, full=True)
    assert len(selected) == 4
    assert (
        len(problems) == 1
        and problems[0].startswith(f"{truncated}: not a readable HDF5 file, truncated or corrupt")
        and "\n" not in problems[0]
    )
    with pytest.raises(FastMRIFileError, match=f"^{truncated}: not a readable HDF5 file"):
        link_checked(folder, tmp_path / "linked", "multicoil", crop=48)
    assert not (tmp_path / "linked").exists()


def test_skip_bad_leaves_the_broken_file_out_and_lists_it(brain_folder, tmp_path, caplog):
    folder, truncated = brain_folder
    with caplog.at_level(logging.WARNING, logger="lossbench.data.fastmri_files"):
        selected, problems = check_folder(folder, "multicoil", crop=48, skip_bad=True)
        linked = link_checked(folder, tmp_path / "linked", "multicoil", crop=48, skip_bad=True)
    assert problems == [] and truncated not in selected and selected == linked and len(linked) == 3
    assert sorted(path.name for path in (tmp_path / "linked").iterdir()) == [path.name for path in linked]
    skipped = [record.getMessage() for record in caplog.records if record.getMessage().startswith("skipped (skip_bad)")]
    assert len(skipped) == 2 and all(str(truncated) in line for line in skipped)  # once per rule
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "x.h5").write_bytes(truncated.read_bytes())
    with pytest.raises(FastMRIFileError, match="none of the 1 selected volumes is usable"):
        link_checked(only_bad, tmp_path / "none", "multicoil", crop=48, skip_bad=True)


def test_single_coil_files_of_two_widths_with_reconstruction_rss_pass(tmp_path):
    paths = _write(
        tmp_path / "knee",
        [dict(width=56, acquisition="CORPDFS_FBK", amplitude=1e-5), dict(width=60, amplitude=1e-2)],
        "singlecoil",
    )
    selected, problems = check_folder(tmp_path / "knee", "singlecoil", crop=48, full=True)
    assert selected == paths and problems == []


def _brain_run(tmp_path: Path, tiny_config: dict, slices: int, epochs: int) -> RunSettings:
    """Varied brain training volumes of ``slices`` slices, a one-slice validation set in val.h5, and
    the tiny config's l1 spec on 48-pixel crops in batches of two."""
    _write(tmp_path / "train", BRAIN, slices=slices)
    _write(tmp_path / "val", BRAIN[1:2], slices=1)
    config = validate(tiny_config)
    config["tasks"]["brain"]["crop"] = 48
    config["tasks"]["brain"]["training"].update(epochs=epochs, batch_size=2)
    spec = run_settings(config, "brain", "l1", 0)
    assert write_valset("mri_multicoil", spec.data, tmp_path / "val", tmp_path / "val.h5") == 1
    return spec


def test_training_on_varied_brain_volumes_batches_by_shape(tmp_path, tiny_config):
    spec = _brain_run(tmp_path, tiny_config, slices=2, epochs=1)
    training.run(
        spec,
        tmp_path / "train",
        tmp_path / "val.h5",
        tmp_path / "out",
        tmp_path / "ckpt",
        device="cpu",
        threads=1,
        progress=False,
    )
    with open(tmp_path / "out" / "curve.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    # Three volumes of two slices, one shape each: three batches of two, none mixing shapes.
    assert int(row["step"]) == 3 and np.isfinite(float(row["train_loss"])) and np.isfinite(float(row["val_psnr"]))


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"preset": "realistic", "matrix": 160},
            r"tasks\.brain\.data\.matrix: 160, but the realistic preset has fastMRI's matrix of 320",
        ),
        ({"preset": "huge"}, r"tasks\.brain\.data\.preset: 'huge' is not one of \['default', 'realistic'\]"),
        ({"skip_bad": "yes"}, r"tasks\.brain\.data\.skip_bad: 'yes' is not of type 'boolean'"),
    ],
)
def test_bad_preset_and_skip_bad_values_are_config_errors(change, message, tiny_config):
    from lossbench.pipeline.config_file import ConfigError

    config = tiny_config
    config["tasks"]["brain"]["data"].update(change)
    with pytest.raises(ConfigError, match=message):
        validate(config, source="tiny.yaml")


def test_shape_grouped_mri_run_resumed_mid_epoch_ends_bit_for_bit_the_same(tmp_path, caplog, tiny_config):
    # Three volumes of three slices in batches of two: 6 shape-grouped batches per epoch; the
    # checkpoint at step 8 lies inside epoch 2, whose batches differ from epoch 1's.
    import torch

    spec = _brain_run(tmp_path, tiny_config, slices=3, epochs=2)
    options = dict(device="cpu", threads=1, progress=False, checkpoint_every=4)
    reference = torch.load(
        training.run(
            spec, tmp_path / "train", tmp_path / "val.h5", tmp_path / "reference", tmp_path / "ckpt", **options
        ),
        weights_only=False,
    )["model"]
    middle = next((tmp_path / "ckpt").rglob("step_000000008.pt"))
    assert torch.load(middle, weights_only=False)["progress"]["position"] == 2
    copy = tmp_path / "resumed" / middle.relative_to(tmp_path / "ckpt")
    copy.parent.mkdir(parents=True)
    copy.write_bytes(middle.read_bytes())
    with caplog.at_level(logging.INFO, logger="lossbench.train.loop"):
        resumed = torch.load(
            training.run(
                spec, tmp_path / "train", tmp_path / "val.h5", tmp_path / "out", tmp_path / "resumed", **options
            ),
            weights_only=False,
        )["model"]
    assert "epoch 2, batch 2 of the epoch, step 8" in caplog.text
    assert all(torch.equal(resumed[key], reference[key]) for key in reference)


def test_narrow_synthetic_target_is_the_rss_of_its_kspace(tmp_path):
    # The stored 48×48 reconstruction holds the 37 image columns between zero columns, where a
    # centre crop puts them: its 37×37 crop is the fully sampled RSS crop, to float32 precision.
    import fastmri
    import h5py
    import torch
    from fastmri.data.transforms import center_crop, to_tensor

    (path,) = _write(tmp_path / "narrow", BRAIN[1:2], slices=1)
    with h5py.File(path, "r") as file:
        kspace, target = to_tensor(file["kspace"][0]), torch.from_numpy(file["reconstruction_rss"][0])
    image = center_crop(fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(kspace)), dim=0), (37, 37))
    torch.testing.assert_close(center_crop(target, (37, 37)), image, rtol=1e-5, atol=1e-6 * float(target.max()))
    assert target[:, :5].abs().max() == 0 and target[:, -6:].abs().max() == 0
