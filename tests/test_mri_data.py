"""Synthetic fastMRI volumes and the undersampled MRI slice dataset."""

from __future__ import annotations

import copy
import filecmp
import os
import pickle
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import fastmri
import h5py
import numpy as np
import pytest
import torch
from fastmri.data import SliceDataset
from fastmri.data.transforms import center_crop, to_tensor

from lossbench.data import fastmri_synthetic as synthetic
from lossbench.data.mri import MRISliceDataset

torch.set_num_threads(1)

SRC = Path(__file__).resolve().parents[1] / "src"
NS = {"m": synthetic.ISMRMRD_NAMESPACE}
SLICES = 3


@pytest.fixture(scope="module")
def singlecoil_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("singlecoil")
    synthetic.generate_dataset(out, "singlecoil", n_volumes=2, n_slices=SLICES, seed=0)
    return out


@pytest.fixture(scope="module")
def multicoil_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("multicoil")
    synthetic.generate_dataset(out, "multicoil", n_volumes=2, n_slices=SLICES, seed=0, n_coils=4)
    return out


@pytest.fixture(scope="module")
def singlecoil(singlecoil_dir) -> MRISliceDataset:
    return MRISliceDataset(singlecoil_dir, "singlecoil")


def _header_int(root: ElementTree.Element, path: str) -> int:
    return int(root.find("/".join(f"m:{part}" for part in path.split("/")), NS).text)


@pytest.mark.parametrize(
    "challenge, kspace_shape, recon_key, acquisition",
    [
        ("singlecoil", (SLICES, 640, 368), "reconstruction_esc", "CORPD_FBK"),
        ("multicoil", (SLICES, 4, 640, 320), "reconstruction_rss", "AXT2"),
    ],
)
def test_file_layout(request, challenge, kspace_shape, recon_key, acquisition):
    path = request.getfixturevalue(f"{challenge}_dir") / "file_000.h5"
    with h5py.File(path, "r") as file:
        # fastMRI's single-coil files carry the multi-coil RSS reconstruction too.
        assert set(file.keys()) == {"kspace", recon_key, "ismrmrd_header"} | {"reconstruction_rss"}
        assert file["kspace"].shape == kspace_shape and file["kspace"].dtype == np.complex64
        assert file[recon_key].shape == (SLICES, 320, 320) and file[recon_key].dtype == np.float32
        recon = file[recon_key][()]
        header = ElementTree.fromstring(file["ismrmrd_header"][()])
        attrs = dict(file.attrs)
    assert set(attrs) == {"max", "norm", "acquisition", "patient_id"}
    assert attrs["max"] == recon.max()
    assert attrs["norm"] == pytest.approx(np.linalg.norm(recon.astype(np.float64)), rel=1e-9)
    assert attrs["acquisition"] == acquisition and isinstance(attrs["patient_id"], str) and attrs["patient_id"]
    width = kspace_shape[-1]
    encoded = [_header_int(header, f"encoding/encodedSpace/matrixSize/{axis}") for axis in "xyz"]
    recon_size = [_header_int(header, f"encoding/reconSpace/matrixSize/{axis}") for axis in "xyz"]
    assert encoded == [640, width, 1] and recon_size == [320, 320, 1]
    limits = {
        key: _header_int(header, f"encoding/encodingLimits/kspace_encoding_step_1/{key}")
        for key in ("minimum", "maximum", "center")
    }
    assert limits["minimum"] == 0 and 0 < limits["center"] < limits["maximum"] < width


@pytest.mark.parametrize("challenge", ["singlecoil", "multicoil"])
def test_fastmri_slicedataset_reads_files(request, tmp_path, monkeypatch, challenge):
    root = request.getfixturevalue(f"{challenge}_dir")
    monkeypatch.chdir(tmp_path)  # SliceDataset would write its cache file here
    before = sorted(root.iterdir())
    dataset = SliceDataset(root, challenge)
    assert len(dataset) == 2 * SLICES
    kspace, mask, target, attrs, fname, slice_num = dataset[SLICES + 1]
    assert (fname, slice_num, mask) == ("file_001.h5", 1, None)
    assert target.shape == (320, 320)
    width = kspace.shape[-1]
    left, right = synthetic.acquired_columns(challenge, width)
    assert (attrs["padding_left"], attrs["padding_right"]) == (left, right)
    assert attrs["encoding_size"] == (640, width, 1) and attrs["recon_size"] == (320, 320, 1)
    # Unacquired columns hold no data, as in real knee scans.
    assert not np.any(kspace[..., :left]) and not np.any(kspace[..., right:])
    assert np.all(np.any(kspace[..., left:right] != 0, axis=-2))
    assert sorted(root.iterdir()) == before and not any(tmp_path.iterdir())


@pytest.mark.parametrize("challenge", ["singlecoil", "multicoil"])
def test_reconstruction_matches_kspace(request, challenge):
    path = request.getfixturevalue(f"{challenge}_dir") / "file_001.h5"
    with h5py.File(path, "r") as file:
        kspace = to_tensor(file["kspace"][()])
        recon = torch.from_numpy(file[synthetic.RECON_KEYS[challenge]][()])
    image = fastmri.complex_abs(fastmri.ifft2c(kspace))
    if challenge == "multicoil":
        image = fastmri.rss(image, dim=1)
    image = center_crop(image, (320, 320))
    assert (image - recon).abs().max() <= 1e-5 * recon.max()


def test_same_seed_gives_identical_volumes(tmp_path):
    arrays = []
    for name, seed in (("a.h5", 7), ("b.h5", 7), ("c.h5", 8)):
        synthetic.write_volume(tmp_path / name, "singlecoil", 2, np.random.default_rng(seed), width=320)
        with h5py.File(tmp_path / name, "r") as file:
            arrays.append(
                {key: np.asarray(file[key][()]).tobytes() for key in file}
                | {key: str(value) for key, value in file.attrs.items()}
            )
    assert arrays[0] == arrays[1]
    assert arrays[0]["kspace"] != arrays[2]["kspace"]
    assert filecmp.cmp(tmp_path / "a.h5", tmp_path / "b.h5", shallow=False)


def test_generate_dataset_never_silently_overwrites(tmp_path):
    paths = synthetic.generate_dataset(tmp_path, "singlecoil", 2, 1, seed=1, prefix="vol", width=320)
    assert [path.name for path in paths] == ["vol_000.h5", "vol_001.h5"]
    stamp = paths[0].stat().st_mtime_ns
    synthetic.generate_dataset(tmp_path, "singlecoil", 2, 1, seed=1, prefix="vol", width=320)
    assert paths[0].stat().st_mtime_ns == stamp  # identical content is left untouched
    with pytest.raises(FileExistsError, match="vol_000.h5"):
        synthetic.generate_dataset(tmp_path, "singlecoil", 2, 1, seed=2, prefix="vol", width=320)
    synthetic.generate_dataset(tmp_path, "singlecoil", 2, 1, seed=2, prefix="vol", width=320, overwrite=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["vol_000.h5", "vol_001.h5"]


def test_training_masks_have_fastmri_statistics(singlecoil):
    width = 368
    low = round(width * 0.04)
    centre = slice((width - low + 1) // 2, (width - low + 1) // 2 + low)
    left, right = synthetic.acquired_columns("singlecoil", width)
    masks = np.stack([singlecoil.mask_for(0, seed) for seed in range(300)])
    assert masks.shape == (300, width) and masks.dtype == bool
    assert masks.mean() == pytest.approx(1 / 8, rel=0.1)
    assert masks[:, centre].all()
    assert not masks[:, :left].any() and not masks[:, right:].any()


def test_training_masks_are_new_per_sample_and_reproducible(singlecoil):
    assert np.array_equal(singlecoil.mask_for(1, 42), singlecoil.mask_for(1, 42))
    masks = [singlecoil.mask_for(1, seed) for seed in (1, 2, 3, 2**32 - 1)]
    assert all(not np.array_equal(a, b) for i, a in enumerate(masks) for b in masks[i + 1 :])
    first, target = singlecoil.pair(1, 42)
    again, _ = singlecoil.pair(1, 42)
    other, target_other = singlecoil.pair(1, 43)
    assert torch.equal(first, again) and not torch.equal(first, other) and torch.equal(target, target_other)
    with pytest.raises(ValueError, match="sample_seed"):
        singlecoil.mask_for(0, 2**32)
    with pytest.raises(TypeError, match="index, sample_seed"):
        singlecoil[0]


def test_validation_mask_fixed_per_file(singlecoil, singlecoil_dir):
    first_file = [singlecoil.mask_for(index) for index in range(SLICES)]
    assert all(np.array_equal(first_file[0], mask) for mask in first_file)
    assert not np.array_equal(first_file[0], singlecoil.mask_for(SLICES))
    assert np.array_equal(singlecoil.mask_for(SLICES), singlecoil.mask_for(SLICES + 2))
    reopened = MRISliceDataset(singlecoil_dir, "singlecoil")
    sample_id, image, target = singlecoil.validation_item(SLICES + 1)
    again = reopened.validation_item(SLICES + 1)
    assert sample_id == again[0] == "file_001_s001"
    assert torch.equal(image, again[1]) and torch.equal(target, again[2])


@pytest.mark.parametrize("challenge", ["singlecoil", "multicoil"])
def test_values_scaled_to_target_max(request, challenge):
    dataset = MRISliceDataset(request.getfixturevalue(f"{challenge}_dir"), challenge)
    assert len(dataset) == 2 * SLICES
    targets = []
    for index in range(SLICES):  # the first volume
        _, image, target = dataset.validation_item(index)
        assert image.shape == target.shape == (1, 320, 320)
        assert image.dtype == target.dtype == torch.float32
        assert torch.isfinite(image).all() and target.min() >= 0 and target.max() <= 1
        error = (image - target).square().mean()
        assert 0 < error < target.square().mean()  # undersampling hurts, but less than predicting zeros
        assert np.corrcoef(image.flatten(), target.flatten())[0, 1] > 0.8
        targets.append(target)
    assert torch.stack(targets).max() == 1.0


def test_crop(singlecoil_dir):
    image, target = MRISliceDataset(singlecoil_dir, "singlecoil", crop=256).pair(0, 5)
    assert image.shape == target.shape == (1, 256, 256)
    with pytest.raises(ValueError, match="crop 400 is larger than the image"):
        MRISliceDataset(singlecoil_dir, "singlecoil", crop=400)


def test_dataset_is_picklable_for_workers(singlecoil):
    copy = pickle.loads(pickle.dumps(singlecoil))
    assert torch.equal(copy.pair(2, 9)[0], singlecoil.pair(2, 9)[0])


def test_clear_errors(tmp_path, singlecoil_dir):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere: MRI data folder not found"):
        MRISliceDataset(missing, "singlecoil")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no .h5 files"):
        MRISliceDataset(empty, "singlecoil")
    with pytest.raises(ValueError, match="unknown MRI challenge 'knee'"):
        MRISliceDataset(singlecoil_dir, "knee")
    # Single-coil files carry reconstruction_rss as in fastMRI: the k-space layout tells them apart.
    with pytest.raises(ValueError, match=r"kspace has shape \(3, 640, 368\), expected 4 dimensions for multicoil"):
        MRISliceDataset(singlecoil_dir, "multicoil")
    broken = tmp_path / "broken"
    broken.mkdir()
    with h5py.File(broken / "vol.h5", "w") as file:
        file["reconstruction_esc"] = np.zeros((1, 320, 320), np.float32)
    with pytest.raises(ValueError, match=r"vol\.h5: missing dataset 'kspace'"):
        MRISliceDataset(broken, "singlecoil")


def test_stray_files_are_ignored(tmp_path):
    synthetic.generate_dataset(tmp_path, "singlecoil", 1, 2, seed=3, width=320)
    (tmp_path / ".snakemake_timestamp").touch()
    (tmp_path / "notes").mkdir()
    assert len(MRISliceDataset(tmp_path, "singlecoil")) == 2


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "lossbench.data.fastmri_synthetic", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli(tmp_path):
    shown = _cli("--help")
    assert shown.returncode == 0 and "--challenge" in shown.stdout
    run = [
        "--challenge",
        "singlecoil",
        "--out",
        str(tmp_path),
        "--volumes",
        "1",
        "--slices",
        "2",
        "--width",
        "320",
        "--prefix",
        "knee",
    ]
    done = _cli(*run, "--seed", "4")
    assert done.returncode == 0, done.stderr
    assert len(SliceDataset(tmp_path, "singlecoil")) == 2
    refused = _cli(*run, "--seed", "5")
    assert refused.returncode == 1 and "knee_000.h5" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("challenge, kspace_shape", [("singlecoil", (2, 96, 56)), ("multicoil", (2, 2, 96, 48))])
def test_smaller_matrix_keeps_fastmri_layout(tmp_path, monkeypatch, challenge, kspace_shape):
    synthetic.generate_dataset(tmp_path, challenge, n_volumes=1, n_slices=2, seed=5, n_coils=2, matrix=48)
    with h5py.File(tmp_path / "file_000.h5", "r") as file:
        assert file["kspace"].shape == kspace_shape and file[synthetic.RECON_KEYS[challenge]].shape == (2, 48, 48)
    monkeypatch.chdir(tmp_path)
    kspace, _, target, attrs, _, _ = SliceDataset(tmp_path, challenge)[1]
    assert attrs["encoding_size"] == (96, kspace_shape[-1], 1) and attrs["recon_size"] == (48, 48, 1)
    assert (attrs["padding_left"], attrs["padding_right"]) == synthetic.acquired_columns(challenge, kspace_shape[-1])
    _, image, target = MRISliceDataset(tmp_path, challenge, crop=48).validation_item(1)
    assert image.shape == target.shape == (1, 48, 48) and torch.isfinite(image).all()
    if kspace_shape[-1] == 48:
        # k-space narrower than the crop is cropped to its width, as fastMRI's UnetDataTransform does.
        _, image, target = MRISliceDataset(tmp_path, challenge, crop=64).validation_item(1)
        assert image.shape == target.shape == (1, 48, 48)
    else:
        with pytest.raises(ValueError, match="crop 64 is larger than the image"):
            MRISliceDataset(tmp_path, challenge, crop=64)


def test_knee_and_brain_have_textured_anatomy(singlecoil_dir, multicoil_dir):
    """Not piecewise-constant: many distinct grey levels inside the object, and knee and brain differ."""
    levels = {}
    for challenge, root in (("singlecoil", singlecoil_dir), ("multicoil", multicoil_dir)):
        with h5py.File(root / "file_000.h5", "r") as file:
            target = file[synthetic.RECON_KEYS[challenge]][1] / file.attrs["max"]
        tissue = target[target > 0.1]
        assert tissue.size > 0.2 * target.size
        # Edges: a large share of strong gradients, as at the borders of bones and tissues.
        gradient = np.hypot(*np.gradient(target))
        assert np.mean(gradient > 0.05) > 0.02
        levels[challenge] = np.histogram(tissue, bins=20, range=(0, 1))[0] / tissue.size
    assert np.abs(levels["singlecoil"] - levels["multicoil"]).sum() > 0.5


def test_crop_larger_than_the_synthetic_matrix_is_a_config_error(tiny_config):
    from lossbench.pipeline.config import validate
    from lossbench.pipeline.config_file import ConfigError

    tiny_config["tasks"]["knee"]["data"]["matrix"] = 176
    with pytest.raises(
        ConfigError,
        match=r"tasks\.knee\.crop: 320 is larger than the synthetic 176×176 images \(tasks\.knee\.data\.matrix\)",
    ):
        validate(tiny_config, source="tiny.yaml")
    tiny_config["tasks"]["knee"]["crop"] = 176
    assert validate(copy.deepcopy(tiny_config))["tasks"]["knee"]["data"]["matrix"] == 176
    tiny_config["tasks"]["knee"]["crop"] = 160  # evaluation would fail late in five-scale MS-SSIM
    with pytest.raises(ConfigError, match=r"tasks\.knee\.crop: 160 is too small for the msssim metric's 5 scales"):
        validate(copy.deepcopy(tiny_config))
    tiny_config["metrics"].remove("msssim")
    validate(copy.deepcopy(tiny_config))
    tiny_config["tasks"]["knee"]["data"]["matrix"] = 161
    with pytest.raises(ConfigError, match=r"tasks\.knee\.data\.matrix: 161 is not a multiple of 2"):
        validate(tiny_config)


def _variety(root: Path) -> dict[str, Path]:
    """Tiny volumes of fastMRI's variety at matrix 48, crop 48: knee widths 56 and 60, brain coil
    counts 3 and 5, a brain volume narrower than the crop, magnitudes 1e-5 and 1e-2."""
    layouts = {
        "singlecoil": [dict(width=56, amplitude=1e-5, acquisition="CORPDFS_FBK"), dict(width=60, amplitude=1e-2)],
        "multicoil": [
            dict(width=48, n_coils=3, amplitude=1e-2, acquisition="AXT1POST"),
            dict(width=37, n_coils=5, amplitude=1e-5, acquisition="AXFLAIR"),
            dict(width=48, n_coils=5),
        ],
    }
    folders = {}
    for challenge, volumes in layouts.items():
        folders[challenge] = root / challenge
        folders[challenge].mkdir()
        for index, layout in enumerate(volumes):
            synthetic.write_volume(
                folders[challenge] / f"v{index}.h5", challenge, 2, np.random.default_rng(index), matrix=48, **layout
            )
    return folders


@pytest.mark.parametrize("challenge", ["singlecoil", "multicoil"])
def test_device_side_batches_equal_the_per_sample_fastmri_path(tmp_path, challenge):
    # Batches of every layout, made by the device-side transform, against fastMRI's per-sample
    # SliceDataset + apply_mask + ifft2c + crop + abs/rss, to float32 tolerance (values are in [0, 1]).
    from lossbench.core.seeding import SeededSampler, group_batches
    from lossbench.data.fastmri_files import check_volume

    root = _variety(tmp_path)[challenge]
    for path in sorted(root.iterdir()):
        check_volume(path, challenge, crop=48, full=True)
    dataset = MRISliceDataset(root, challenge, crop=48)
    batches = group_batches(list(SeededSampler(len(dataset), seed=3, epoch=0)), dataset.batch_key, batch_size=3)
    assert sorted(key for batch in batches for key in batch) == sorted(SeededSampler(len(dataset), seed=3, epoch=0))
    assert all(len({dataset.batch_key(index) for index, _ in batch}) == 1 for batch in batches)
    sides = set()
    for batch in batches:
        raw = dataset.collate([dataset[key] for key in batch])
        inputs, targets = dataset.finish_batch(raw, "cpu")
        for (index, seed), image, target in zip(batch, inputs, targets):
            reference_image, reference_target = dataset.reference_pair(index, seed)
            torch.testing.assert_close(image, reference_image, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(target, reference_target, rtol=0, atol=0)
            sides.add(image.shape[-1])
    for index in range(len(dataset)):
        torch.testing.assert_close(
            dataset.validation_item(index)[1], dataset.reference_pair(index, None)[0], rtol=1e-5, atol=1e-6
        )
    # The narrow brain volume is cropped to its 37 columns, as fastMRI's UnetDataTransform crops it.
    assert sides == ({48, 37} if challenge == "multicoil" else {48})


def test_shape_groups_of_one_shape_are_consecutive_runs():
    from lossbench.core.seeding import SeededSampler, group_batches

    order = list(SeededSampler(10, seed=0, epoch=1))
    assert group_batches(order, lambda index: None, 4) == [order[0:4], order[4:8], order[8:10]]
    grouped = group_batches(order, lambda index: index % 2, 2)
    assert sorted(map(len, grouped)) == [1, 1, 2, 2, 2, 2] and all(
        len({i % 2 for i, _ in batch}) == 1 for batch in grouped
    )


def test_realistic_preset_draws_fastmri_variety():
    knee = [synthetic.realistic_settings("singlecoil", 0, index) for index in range(200)]
    brain = [synthetic.realistic_settings("multicoil", 0, index) for index in range(200)]
    for volumes in (knee, brain):
        assert min(v["n_slices"] for v in volumes) >= 16 and max(v["n_slices"] for v in volumes) <= 40
        assert (
            1e-5 <= min(v["amplitude"] for v in volumes) < 1e-4 and 1e-3 < max(v["amplitude"] for v in volumes) <= 1e-2
        )
    assert {v["width"] for v in knee} == {368, 372} and {v["acquisition"] for v in knee} == set(
        synthetic.ACQUISITIONS["singlecoil"]
    )
    assert {v["acquisition"] for v in brain} == set(synthetic.ACQUISITIONS["multicoil"])
    assert {v["n_coils"] for v in brain} == set(range(2, 25))
    assert 20 < sum(v["width"] < 320 for v in brain) < 80  # about one in four narrower than the crop
    assert synthetic.realistic_settings("multicoil", 0, 7) == brain[7]
    with pytest.raises(ValueError, match="realistic preset draws width"):
        synthetic.generate_dataset(Path("unused"), "multicoil", 1, None, seed=0, n_coils=4, preset="realistic")
