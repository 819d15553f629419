"""Inference on one's own data (python -m lossbench.infer) and the fastMRI submission files, checked with
fastmri.evaluate."""

from __future__ import annotations

import argparse

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from lossbench import infer
from lossbench.data import fastmri_synthetic as synthetic
from lossbench.data.images import write_png
from lossbench.data.tasks import prepare_embedded_photos, write_valset
from lossbench.data.valset import ImageFile
from lossbench.evaluate import fastmri_volume_metrics
from lossbench.pipeline.config import validate
from lossbench.pipeline.job_settings import run_settings
from lossbench.train import loop as training

from conftest import TINY_CONFIG

MATRIX = 64  # small synthetic knee volumes: 64×64 references from 128×74 k-space


def _train(spec, root):
    return training.run(
        spec,
        root / "train",
        root / "val.h5",
        root / "model",
        root / "checkpoints",
        device="cpu",
        threads=1,
        progress=False,
    )


@pytest.fixture(scope="module")
def tiny():
    with open(TINY_CONFIG) as handle:
        config = yaml.safe_load(handle)
    config["tasks"]["knee"]["data"]["matrix"] = MATRIX
    config["tasks"]["knee"]["crop"] = MATRIX
    config["metrics"] = ["l1", "l2", "psnr"]  # five-scale MS-SSIM needs more than 160 pixels
    return validate(config)


@pytest.fixture(scope="module")
def denoise_model(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("denoise")
    spec = run_settings(tiny, "denoise", "l1", 0)
    prepare_embedded_photos(["chelsea"], root / "train", max_side=64)
    prepare_embedded_photos(["astronaut", "coffee"], root / "val", max_side=48)
    write_valset(spec.kind, spec.data, root / "val", root / "val.h5")
    return _train(spec, root), root


@pytest.fixture(scope="module")
def knee_model(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("knee")
    spec = run_settings(tiny, "knee", "l2", 0)
    synthetic.generate_dataset(root / "train", "singlecoil", 1, 2, seed=1, prefix="train", matrix=MATRIX)
    synthetic.generate_dataset(root / "val", "singlecoil", 2, 3, seed=2, prefix="val", matrix=MATRIX)
    write_valset(spec.kind, spec.data, root / "val", root / "val.h5")
    model = _train(spec, root)
    infer.run(model, root / "val.h5", root / "outputs.h5", device="cpu")
    return model, root


def _fastmri_evaluate(targets, predictions, challenge="singlecoil"):
    """Means over volumes of ``fastmri.evaluate.evaluate``, what ``python -m fastmri.evaluate`` prints.

    Its own function rather than the command: the command fails printing under NumPy 2 (its SSIM
    mean is an array, which ``format`` rejects) after computing the same values.
    """
    from fastmri import evaluate as fastmri_evaluate

    args = argparse.Namespace(target_path=targets, predictions_path=predictions, acquisition=None, acceleration=None)
    means = fastmri_evaluate.evaluate(args, synthetic.RECON_KEYS[challenge]).means()
    return {name.lower(): float(np.asarray(value).item()) for name, value in means.items()}


def test_fastmri_evaluate_reads_the_reconstructions_and_agrees_with_our_evaluation(knee_model, tmp_path):
    _, root = knee_model
    count = infer.write_fastmri_reconstructions(root / "outputs.h5", root / "val", tmp_path / "recon")
    assert count == 2
    for source in sorted((root / "val").glob("*.h5")):
        with h5py.File(tmp_path / "recon" / source.name, "r") as recon, h5py.File(source, "r") as volume:
            assert list(recon) == ["reconstruction"]
            assert recon["reconstruction"].dtype == np.float32
            assert recon["reconstruction"].shape == volume["reconstruction_esc"].shape == (3, MATRIX, MATRIX)
            # At the volume's own scale, as the ground truth is, not the [0, 1] of our outputs.
            assert np.isclose(recon["reconstruction"][()].max(), volume.attrs["max"], rtol=0.5)
    official = _fastmri_evaluate(root / "val", tmp_path / "recon")
    ours = fastmri_volume_metrics(root / "val.h5", root / "outputs.h5")
    mean = {name: float(np.mean([row[name] for row in ours])) for name in ("nmse", "psnr", "ssim")}
    # Float32 files against our float64 arithmetic on [0, 1]-scaled images: NMSE to 1e-5 relative,
    # PSNR to 1e-4 dB, SSIM to 1e-6 (seen: 1.3e-7, 4e-9 dB, 3e-8).
    assert official["nmse"] == pytest.approx(mean["nmse"], rel=1e-5)
    assert official["psnr"] == pytest.approx(mean["psnr"], abs=1e-4)
    assert official["ssim"] == pytest.approx(mean["ssim"], abs=1e-6)
    # A real comparison: the model is better than nothing, worse than perfect.
    assert 0 < official["nmse"] < 0.5 and 0 < official["ssim"] < 1


def test_cli_on_fastmri_files_gives_the_workflows_reconstructions(knee_model, tmp_path):
    model, root = knee_model
    infer.write_fastmri_reconstructions(root / "outputs.h5", root / "val", tmp_path / "workflow")
    infer.main(["--model", str(model), "--input", str(root / "val"), "--out", str(tmp_path / "cli"), "--device", "cpu"])
    for name in ("val_000.h5", "val_001.h5"):
        with h5py.File(tmp_path / "cli" / name, "r") as cli, h5py.File(tmp_path / "workflow" / name, "r") as workflow:
            np.testing.assert_allclose(cli["reconstruction"][()], workflow["reconstruction"][()], rtol=1e-6)


def _as_test_file(source, path, mask):
    """A fastMRI test file from a validation volume: undersampled k-space and its mask, no reference, no max."""
    with h5py.File(source, "r") as full, h5py.File(path, "w") as test:
        test.create_dataset("kspace", data=full["kspace"][()] * mask)
        test.create_dataset("mask", data=mask)
        test.create_dataset("ismrmrd_header", data=full["ismrmrd_header"][()])
        test.attrs["acquisition"] = full.attrs["acquisition"]


def test_cli_on_test_files_uses_each_files_own_mask(knee_model, tmp_path):
    model, root = knee_model
    source = root / "val" / "val_000.h5"
    with h5py.File(source, "r") as full:
        width = full["kspace"].shape[-1]
    centre = np.zeros(width, dtype=bool)
    centre[width // 2 - 6 : width // 2 + 6] = True
    every_other = centre.copy()
    every_other[::2] = True
    for name, mask in (("centre", centre), ("every_other", every_other)):
        (tmp_path / name).mkdir()
        _as_test_file(source, tmp_path / name / "test_000.h5", mask)
        infer.main(
            [
                "--model",
                str(model),
                "--input",
                str(tmp_path / name),
                "--out",
                str(tmp_path / f"out_{name}"),
                "--device",
                "cpu",
            ]
        )
    with (
        h5py.File(tmp_path / "out_centre" / "test_000.h5", "r") as a,
        h5py.File(tmp_path / "out_every_other" / "test_000.h5", "r") as b,
        h5py.File(source, "r") as full,
    ):
        centre_recon, other_recon, reference = (
            a["reconstruction"][()],
            b["reconstruction"][()],
            full["reconstruction_esc"][()],
        )
    assert centre_recon.shape == other_recon.shape == reference.shape
    # More sampled columns, a closer reconstruction: each file's own mask was applied.
    error = lambda recon: np.linalg.norm(recon - reference) / np.linalg.norm(reference)  # noqa: E731
    assert error(other_recon) < error(centre_recon) < 1


def test_cli_on_a_folder_of_pngs_with_and_without_noise(denoise_model, tmp_path):
    model, root = denoise_model
    args = ["--model", str(model), "--input", str(root / "val"), "--device", "cpu"]
    infer.main(args + ["--out", str(tmp_path / "clean")])
    infer.main(args + ["--out", str(tmp_path / "noisy"), "--sigma", "25"])
    infer.main(args + ["--out", str(tmp_path / "noisy_again"), "--sigma", "25"])
    for name in ("astronaut", "coffee"):
        source = np.asarray(Image.open(root / "val" / f"{name}.png"), dtype=np.float64)
        clean, noisy, again = (
            np.asarray(Image.open(tmp_path / folder / f"{name}.png"), dtype=np.float64)
            for folder in ("clean", "noisy", "noisy_again")
        )
        assert clean.shape == noisy.shape == source.shape
        np.testing.assert_array_equal(noisy, again)  # the noise is seeded
        # The model restores noisy inputs towards the source; clean ones it leaves close to it.
        assert np.abs(clean - source).mean() < np.abs(noisy - source).mean() < 25


def test_existing_outputs_are_kept_without_overwrite(denoise_model, tmp_path):
    model, root = denoise_model
    args = ["--model", str(model), "--input", str(root / "val"), "--out", str(tmp_path), "--device", "cpu"]
    (tmp_path / "coffee.png").write_bytes(b"mine")
    with pytest.raises(SystemExit) as stop:
        infer.main(args)
    assert (
        str(stop.value)
        == f"error: {tmp_path / 'coffee.png'} exists already, not written from these inputs by this model and settings;"
        " pass --overwrite to replace them"
    )
    assert (tmp_path / "coffee.png").read_bytes() == b"mine" and not (tmp_path / "astronaut.png").exists()
    infer.main(args + ["--overwrite"])
    assert Image.open(tmp_path / "coffee.png").size == Image.open(root / "val" / "coffee.png").size


def _error(args):
    with pytest.raises(SystemExit) as stop:
        infer.main(args)
    message = str(stop.value)
    assert message.startswith("error: ") and "\n" not in message
    return message


@pytest.mark.parametrize(
    "model, minimum, described",
    [
        (
            {"name": "unet", "width": 8, "depth": 3, "kernel_size": 3, "residual": True},
            8,
            "a U-net of width 8 and depth 3",
        ),
        ({"name": "fastmri_unet", "chans": 4, "num_pool_layers": 2, "drop_prob": 0.0}, 4, "num_pool_layers 2"),
    ],
)
def test_a_photo_smaller_than_any_networks_minimum_is_one_line(model, minimum, described, tmp_path):
    # Read from the model's own spec: fastMRI's U-net has no "depth" key.
    with pytest.raises(
        infer.InferenceInputError,
        match=rf"dot\.png: 3×2 is smaller than the {minimum}×{minimum} minimum of .*{described}",
    ):
        infer.images._check_size(tmp_path / "dot.png", 2, 3, model)
    infer.images._check_size(tmp_path / "big.png", minimum, minimum, model)


def test_bad_inputs_get_one_line_naming_the_file(denoise_model, knee_model, tmp_path):
    denoiser, _ = denoise_model
    knee, knee_root = knee_model
    (tmp_path / "empty").mkdir()
    assert f"{tmp_path / 'empty'}: no image files" in _error(
        ["--model", str(denoiser), "--input", str(tmp_path / "empty"), "--out", str(tmp_path / "o1")]
    )
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    assert f"{tmp_path / 'broken' / 'a.png'}: cannot read as an image" in _error(
        ["--model", str(denoiser), "--input", str(tmp_path / "broken"), "--out", str(tmp_path / "o2")]
    )
    assert "holds .h5 files but no images; the denoise model restores RGB images" in _error(
        ["--model", str(denoiser), "--input", str(knee_root / "val"), "--out", str(tmp_path / "o3")]
    )
    (tmp_path / "tiny").mkdir()
    write_png(tmp_path / "tiny" / "dot.png", np.zeros((2, 2, 3)))
    assert f"{tmp_path / 'tiny' / 'dot.png'}: 2×2 is smaller than the 4×4 minimum" in _error(
        ["--model", str(denoiser), "--input", str(tmp_path / "tiny"), "--out", str(tmp_path / "o4")]
    )
    # An MRI model: images, a file that is no HDF5, one that is no fastMRI file, a multi-coil volume.
    assert "no .h5 files, expected fastMRI singlecoil volumes; it holds images" in _error(
        ["--model", str(knee), "--input", str(tmp_path / "tiny"), "--out", str(tmp_path / "o5")]
    )
    (tmp_path / "not_h5").mkdir()
    (tmp_path / "not_h5" / "x.h5").write_bytes(b"text")
    assert f"{tmp_path / 'not_h5' / 'x.h5'}: not a readable HDF5 file" in _error(
        ["--model", str(knee), "--input", str(tmp_path / "not_h5"), "--out", str(tmp_path / "o6")]
    )
    (tmp_path / "other_h5").mkdir()
    with h5py.File(tmp_path / "other_h5" / "y.h5", "w") as file:
        file.create_dataset("images", data=np.zeros(3))
    assert f"{tmp_path / 'other_h5' / 'y.h5'}: not a fastMRI file (no 'kspace' dataset; has images)" in _error(
        ["--model", str(knee), "--input", str(tmp_path / "other_h5"), "--out", str(tmp_path / "o7")]
    )
    synthetic.generate_dataset(tmp_path / "brain", "multicoil", 1, 1, seed=3, prefix="brain", matrix=MATRIX, n_coils=2)
    assert f"{tmp_path / 'brain' / 'brain_000.h5'}: missing dataset 'reconstruction_esc'" in _error(
        ["--model", str(knee), "--input", str(tmp_path / "brain"), "--out", str(tmp_path / "o8")]
    )
    assert "--sigma adds noise to images" in _error(
        ["--model", str(knee), "--input", str(knee_root / "val"), "--out", str(tmp_path / "o9"), "--sigma", "5"]
    )
    (tmp_path / "model.pt").write_bytes(b"junk")
    assert f"{tmp_path / 'model.pt'}: not a model written by lossbench.train" in _error(
        ["--model", str(tmp_path / "model.pt"), "--input", str(knee_root / "val"), "--out", str(tmp_path / "o10")]
    )


def test_valset_outputs_keep_their_ids(knee_model):
    # The workflow's per-slice outputs, which the submission files are made of, cover every validation slice.
    _, root = knee_model
    with ImageFile(root / "val.h5") as valset, ImageFile(root / "outputs.h5") as outputs:
        assert outputs.ids == valset.ids and len(valset.ids) == 6
