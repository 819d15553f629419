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

from lossbench.core.seeding import SeededSampler
from lossbench.data import fastmri_synthetic as synthetic
from lossbench.data.denoise import DenoiseTrainDataset
from lossbench.data.fastmri_files import FastMRIFileError, check_volume, link_checked, select_volumes
from lossbench.data.imagenet import read_manifest, write_manifest
from lossbench.data.mri import MRISliceDataset
from lossbench.data.tasks import train_dataset

from conftest import REPO, snakemake_command


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
    dataset = train_dataset(
        "rgb_denoise", {"crop": 48, "sigma_train": [0, 40], "crops_per_image": 1, "augment": True}, tmp_path / "m.csv"
    )
    assert isinstance(dataset, DenoiseTrainDataset) and len(dataset) == 7
    assert all(dataset.pair(index, 5)[0].shape == (3, 48, 48) for index in range(7))


def test_manifest_is_a_seeded_sample(image_tree, tmp_path):
    def sample(seed: int, name: str) -> list[str]:
        write_manifest(image_tree, tmp_path / name, tmp_path / f"{name}.report", count=3, seed=seed, min_side=48)
        return [row["path"] for row in _rows(tmp_path / name)]

    assert sample(0, "a.csv") == sample(0, "b.csv")
    assert any(sample(seed, f"{seed}.csv") != sample(0, "a.csv") for seed in range(1, 6))


def test_too_few_usable_images_is_one_line_and_keeps_the_old_manifest(image_tree, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("earlier manifest\n")
    with pytest.raises(
        ValueError, match=r"train: only 7 usable images of the 9000 requested \(10 files, 3 skipped: see .*r\.csv\)"
    ):
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
    layout = {
        ("knee", "singlecoil_train", 1),
        ("knee", "singlecoil_val", 1),
        ("brain", "multicoil_val", 1),
        ("brain", "multicoil_train", 3),
    }
    for organ, folder, volumes in layout:
        challenge = "singlecoil" if organ == "knee" else "multicoil"
        synthetic.generate_dataset(
            root / organ / folder, challenge, n_volumes=volumes, n_slices=1, seed=1, prefix=f"file_{organ}", n_coils=2
        )
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
        (
            b"<ismrmrdHeader xmlns='http://www.ismrm.org/ISMRMRD'/>",
            "ismrmrd_header lacks encoding/encodedSpace/matrixSize/x",
        ),
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
    # A knee volume in a brain folder (fastMRI's single-coil files carry reconstruction_rss too).
    assert "kspace has shape (640, 368), expected 4 dimensions for multicoil" in _one_line_error(knee_file, "multicoil")
    with h5py.File(knee_file, "a") as file:
        del file["reconstruction_rss"]
    assert "missing dataset 'reconstruction_rss', expected a fastMRI multicoil volume" in _one_line_error(
        knee_file, "multicoil"
    )


def test_failing_check_leaves_the_earlier_output_alone(fastmri_root, knee_file, tmp_path):
    out = tmp_path / "train_files"
    link_checked(knee_file.parent, out, "singlecoil")
    assert [path.name for path in out.iterdir()] == ["file1000001.h5"] and (
        out / "file1000001.h5"
    ).resolve() == knee_file.resolve()
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
    assert set(
        re.findall(r"^\s+(?:train|val)_dir: (/data/\S+)", (REPO / "config" / "paper.yaml").read_text(), re.M)
    ) == {
        tasks["denoise"]["data"]["train_dir"],
        *(tasks[task]["data"][key] for task in ("knee", "brain") for key in ("train_dir", "val_dir")),
    }, "the data folders of config/paper.yaml are not all replaced by this test"
    tasks["denoise"]["data"]["train_dir"] = str(image_tree)
    tasks["knee"]["data"].update(
        train_dir=str(fastmri_root / "knee" / "singlecoil_train"), val_dir=str(fastmri_root / "knee" / "singlecoil_val")
    )
    tasks["brain"]["data"].update(
        train_dir=str(fastmri_root / "brain" / "multicoil_val"), val_dir=str(fastmri_root / "brain" / "multicoil_train")
    )
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_paper_configuration_plans_the_full_study(image_tree, fastmri_root, tmp_path):
    config = _paper_config(tmp_path, image_tree, fastmri_root)
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "LOSSBENCH_CACHE": str(tmp_path / "cache")}
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(config),
        "--directory",
        str(tmp_path / "work"),
        "--dry-run",
        "--cores",
        "8",
        "--resources",
        "gpu=2",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout.split("Job stats")[1].split("Reasons")[0], re.M))
    assert int(stats["train"]) == 18  # 3 tasks × 6 losses × 1 seed
    assert stats["kodak"] == stats["imagenet_manifest"] == stats["lpips_weights"] == "1"
    assert stats["fastmri_files"] == "4"  # knee and brain, train and val
    assert "embedded_photos" not in stats and "synthetic_mri" not in stats
    # The experiment's record of its trunk, not the shared cache file, is what rules depend on (the cache is no output).
    assert "results/paper/data/lpips_trunk.json" in result.stdout
    # Every thesis figure: the comparison figures 6.1-6.6 and 6.9-6.16, the user-study figures 6.7, 6.8, 6.17, 6.18.
    figures = set(re.findall(r"results/paper/figures/(fig_6_\d+)\.png", result.stdout))
    assert figures == {f"fig_6_{number}" for number in range(1, 19)}, sorted(figures)
    assert stats["userstudy_stimuli"] == "2"  # our denoising study and one MRI study of knee and brain images
    # Two training jobs fit at once on `--cores 8 --resources gpu=2`: each takes at most half of the cores.
    threads = {int(value) for value in re.findall(r"rule train:(?:\n    .*)*?\n    threads: (\d+)", result.stdout)}
    assert threads and max(threads) <= 4, threads


def test_paper_configuration_plans_and_budgets_before_its_data_exist(tmp_path):
    """With none of its data folders in place, `-n` shows the plan and names every missing folder at once."""
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "LOSSBENCH_CACHE": str(tmp_path / "cache")}
    command = snakemake_command(str(REPO / "config" / "paper.yaml"), str(tmp_path))
    planned = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, env=env, timeout=300)
    assert planned.returncode == 0, planned.stderr[-3000:]
    note = [line for line in planned.stderr.splitlines() if line.startswith("Note: ")]
    assert len(note) == 1 and note[0].count("does not exist") == 5 and "the run needs them" in note[0]
    assert re.search(r"^train\s+18$", planned.stdout, re.M)
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode != 0
    assert (
        "tasks.denoise.data.train_dir: folder '/data/imagenet/train' does not exist; tasks.knee.data.train_dir"
        in refused.stderr
    )
    assert not (tmp_path / "results").exists()
    # The budget is counted without the data, but not when other targets come with it.
    with_budget = subprocess.run(
        [*command, "budget", "table_6_1"], capture_output=True, text=True, env=env, timeout=300
    )
    assert with_budget.returncode != 0 and "does not exist; tasks.knee.data.train_dir" in with_budget.stderr
    assert not (tmp_path / "results").exists()
    # The Snakefile does not read the command line: a dry run through snakemake's main(), sys.argv empty, plans too.
    driver = f"from snakemake.cli import main; main({[*command[3:], '--dry-run']!r})"
    driven = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, env=env, timeout=300)
    assert driven.returncode == 0, driven.stderr[-3000:]
    assert re.search(r"^train\s+18$", driven.stdout, re.M)


def _snakemake(config: dict, work: Path, *targets: str) -> subprocess.CompletedProcess:
    path = work / "config.yaml"
    work.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "TORCH_HOME": str(work / "torch"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    command = snakemake_command(str(path), str(work), *targets)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _state(paths: list[Path]) -> dict[str, tuple[int, bytes]]:
    """Modification time and content of every file below ``paths`` (links followed for content)."""
    files = [file for path in paths for file in ([path] if path.is_file() else sorted(path.rglob("*")))]
    return {str(file): (file.lstat().st_mtime_ns, file.read_bytes()) for file in files if file.is_file()}


def test_failing_checks_keep_every_earlier_output_and_their_reports(tiny_config, image_tree, fastmri_root, tmp_path):
    """Good run, bad files added, rerun fails: data outputs untouched, the reports the errors name are there."""
    val_dir = tmp_path / "photos"
    val_dir.mkdir()
    _rgb(val_dir / "a.png", (48, 40))
    knee_val = tmp_path / "knee_val"
    shutil.copytree(fastmri_root / "knee" / "singlecoil_val", knee_val)
    config = tiny_config
    del config["tasks"]["brain"], config["figures"]["fig_6_9"]
    config["tasks"]["denoise"]["data"] = {"source": "folder", "train_dir": str(val_dir), "val_dir": str(val_dir)}
    config["tasks"]["knee"]["data"] = {
        "source": "fastmri",
        "train_dir": str(fastmri_root / "knee" / "singlecoil_train"),
        "val_dir": str(knee_val),
    }
    work = tmp_path / "work"
    outputs = [
        work / "results/demo/data/denoise/val.h5",
        work / "results/demo/data/knee/val_files",
        work / "results/demo/data/knee/val.h5",
    ]
    targets = [str(path.relative_to(work)) for path in outputs]
    done = _snakemake(config, work, *targets)
    assert done.returncode == 0, done.stderr[-3000:]
    before = _state(outputs)
    assert {Path(name).name for name in before} >= {"val.h5", "file_knee_000.h5"}

    (val_dir / "b.png").write_bytes(b"\x89PNG not an image")
    shutil.copy(knee_val / "file_knee_000.h5", knee_val / "file_knee_001.h5")
    with h5py.File(knee_val / "file_knee_001.h5", "a") as file:
        file.attrs["max"] = "big"
    failed = _snakemake(config, work, "--keep-going", *targets)
    assert failed.returncode != 0
    assert _state(outputs) == before
    image_log = work / "results/demo/logs/data/denoise_check_val_images.log"
    assert (
        f"{val_dir / 'b.png'}: cannot read as an image" in failed.stderr
        and str(image_log.relative_to(work)) in failed.stderr
    )
    assert f"{val_dir / 'b.png'}: cannot read as an image" in image_log.read_text()
    knee_log = work / "results/demo/logs/data/knee_fastmri_val_check.log"
    assert (
        "file_knee_001.h5: attribute 'max' is 'big'" in knee_log.read_text()
        and str(knee_log.relative_to(work)) in failed.stderr
    )
    assert "Traceback" not in failed.stderr

    # The ImageNet subset: asking for more images than are usable fails; the report it names is there.
    config["tasks"]["denoise"]["data"] = {"source": "imagenet", "train_dir": str(image_tree), "train_images": 3}
    manifest, report = (
        work / "results/demo/data/denoise/train_manifest.csv",
        work / "results/demo/data/denoise/train_manifest_report.csv",
    )
    done = _snakemake(config, work, str(manifest.relative_to(work)))
    assert done.returncode == 0, done.stderr[-3000:]
    before = _state([manifest])
    config["tasks"]["denoise"]["data"]["train_images"] = 9000
    failed = _snakemake(config, work, str(manifest.relative_to(work)))
    assert failed.returncode != 0 and "only 7 usable images of the 9000 requested" in failed.stderr
    assert "results/demo/data/denoise/train_manifest_report.csv" in failed.stderr and "Traceback" not in failed.stderr
    assert _state([manifest]) == before
    assert {Path(row["path"]).name for row in _rows(report)} == {"gray.JPEG", "small.png", "broken.JPEG", "cmyk.JPEG"}


def _replace(path: Path, key: str, data=None, **options) -> None:
    with h5py.File(path, "a") as file:
        del file[key]
        if data is None:
            file.create_group(key)
        else:
            file.create_dataset(key, data=data, **options)


def test_datasets_stored_as_groups_are_one_line(knee_file):
    _replace(knee_file, "kspace")
    assert "kspace is an HDF5 group, expected a dataset" in _one_line_error(knee_file)


@pytest.mark.parametrize(
    "value, problem",
    [
        ("big", "attribute 'max' is 'big' of type <U3, expected one positive number"),
        (np.array([1.0, 2.0]), "attribute 'max' is a float64 array of shape (2,), expected one positive number"),
        (np.nan, "attribute 'max' is nan, expected the positive volume maximum"),
    ],
)
def test_max_must_be_one_positive_number(knee_file, value, problem):
    with h5py.File(knee_file, "a") as file:
        file.attrs["max"] = value
    assert problem in _one_line_error(knee_file)


@pytest.mark.parametrize("field, value", [("encodedSpace/matrixSize/y", 0), ("reconSpace/matrixSize/x", -320)])
def test_matrix_sizes_must_be_positive(knee_file, field, value):
    with h5py.File(knee_file, "r") as file:
        header = file["ismrmrd_header"][()].decode()
    tag = field.split("/")[-1]
    section = header.index(f"<{field.split('/')[0]}>")
    start = header.index(f"<{tag}>", section) + len(tag) + 2
    header = header[:start] + str(value) + header[header.index("<", start) :]
    _replace(knee_file, "ismrmrd_header", header.encode())
    assert f"ismrmrd_header field encoding/{field} is {value}, expected an integer of at least 1" in _one_line_error(
        knee_file
    )


@pytest.fixture
def three_slice_file(knee_file) -> Path:
    """``knee_file`` with 3 slices, k-space gzip-compressed in one chunk per slice."""
    with h5py.File(knee_file, "a") as file:
        kspace, target = np.repeat(file["kspace"][()], 3, axis=0), np.repeat(file["reconstruction_esc"][()], 3, axis=0)
    _replace(knee_file, "kspace", kspace, chunks=(1, *kspace.shape[1:]), compression="gzip")
    _replace(knee_file, "reconstruction_esc", target)
    return knee_file


def _full_check_error(path: Path) -> str:
    with pytest.raises(FastMRIFileError) as error:
        check_volume(path, "singlecoil", full=True)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


def test_full_check_finds_a_damaged_compressed_chunk(three_slice_file):
    with h5py.File(three_slice_file, "r") as file:
        chunk = file["kspace"].id.get_chunk_info(1)
    with open(three_slice_file, "r+b") as handle:
        handle.seek(chunk.byte_offset + chunk.size // 2)
        handle.write(b"\x00" * 64)
    assert check_volume(three_slice_file, "singlecoil") == (3, 640, 368)  # the quick check reads the last slice only
    assert "kspace slice 1 cannot be read, damaged data" in _full_check_error(three_slice_file)


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("kspace", np.nan, "kspace slice 2 holds 1 non-finite values (NaN)"),
        ("reconstruction_esc", np.inf, "reconstruction_esc slice 2 holds 1 non-finite values (inf)"),
    ],
)
def test_full_check_finds_nan_and_inf(three_slice_file, key, value, problem):
    with h5py.File(three_slice_file, "a") as file:
        file[key][2, 10, 10] = value
    assert problem in _full_check_error(three_slice_file)


def _check_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "lossbench.data.fastmri_files", "check", "--challenge", "singlecoil", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_check_cli_lists_every_bad_file_to_the_end(three_slice_file, tmp_path):
    folder = three_slice_file.parent
    for name, damage in (("a_group.h5", "group"), ("b_string_max.h5", "max")):
        shutil.copy(three_slice_file, folder / name)
        if damage == "group":
            _replace(folder / name, "kspace")
        else:
            with h5py.File(folder / name, "a") as file:
                file.attrs["max"] = "big"
    with h5py.File(three_slice_file, "a") as file:
        file["kspace"][1, 0, 0] = np.nan
    quick = _check_cli(str(folder))
    assert quick.returncode == 1 and quick.stdout.strip() == "1 of 3 volumes usable"
    lines = quick.stderr.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [
        str(folder / "a_group.h5"),
        str(folder / "b_string_max.h5"),
    ] and "Traceback" not in quick.stderr
    full = _check_cli("--full", str(folder))
    assert full.returncode == 1 and full.stdout.strip() == "0 of 3 volumes usable (every slice read)"
    assert full.stderr.strip().splitlines()[-1] == f"{three_slice_file}: kspace slice 1 holds 1 non-finite values (NaN)"


def test_check_cli_refuses_missing_and_empty_folders_and_crop_0(knee_file, tmp_path):
    (tmp_path / "empty").mkdir()
    missing = _check_cli(str(tmp_path / "nowhere"), str(tmp_path / "empty"), str(knee_file.parent))
    assert missing.returncode == 1 and missing.stdout.strip() == "1 of 1 volumes usable"
    assert missing.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nowhere'}: fastMRI folder does not exist",
        f"error: {tmp_path / 'empty'}: no .h5 files, expected fastMRI singlecoil volumes",
    ]
    crop = _check_cli("--crop", "0", str(knee_file.parent))
    assert crop.returncode == 2 and "argument --crop: 0 must be a positive integer" in crop.stderr
    with pytest.raises(ValueError, match="crop 0 must be a positive integer"):
        check_volume(knee_file, "singlecoil", crop=0)
