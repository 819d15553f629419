"""Inference: a trained model on the workflow's validation set, or on one's own images and fastMRI files.

The MRI outputs also exist in fastMRI's submission layout (:func:`save_reconstructions`): one HDF5
file per volume, named as the volume's file, holding ``reconstruction`` (slices, H, W) float32 at
the volume's own scale, which ``python -m fastmri.evaluate`` reads beside the ground-truth files.

CLI (one's own data):
    python -m lossbench.infer --model results/<experiment>/models/<task>/<loss>/seed0/model.pt \\
        --input FOLDER --out FOLDER [--sigma 25] [--overwrite]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any
from pathlib import Path

import h5py
import numpy as np
import torch

from lossbench import models
from lossbench.data import tasks
from lossbench.data.fastmri_ids import volume_of
from lossbench.data.fastmri_synthetic import RECON_KEYS
from lossbench.data.images import list_images, read_rgb, write_png
from lossbench.data.valset import ImageFile, write_images
from lossbench.device import DeviceError, configure_cuda_kernels, select_device
from lossbench.run_spec import RunSpec
from lossbench.training import load_model

log = logging.getLogger(__name__)


class InferenceInputError(ValueError):
    """An input folder or file the model cannot restore; the message is one line naming it."""


class OutputExistsError(FileExistsError):
    """An output file exists already and ``overwrite`` was not given."""


@torch.no_grad()
def run(model_path: str | Path, valset_path: str | Path, out_path: str | Path, device: str = "auto", threads: int | None = None) -> int:
    """Restore every validation input with the model and write the outputs (group ``output``).

    Outputs are written clamped to [0, 1], as an image file of them would be; the share of values
    the clamp changed is logged, since a model (a FLIP-trained one in particular) may leave the range.

    Returns:
        The number of images written.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    target_device = select_device(device)
    model, spec = load_model(model_path, target_device)
    configure_cuda_kernels(target_device, spec.trainer.tf32, spec.trainer.cudnn_benchmark)  # as trained
    log.info("inference of %s/%s seed %d on %s", spec.task, spec.loss.name, spec.seed, target_device)
    with ImageFile(valset_path) as valset:
        outside = total = 0

        def outputs():
            nonlocal outside, total
            for image_id, degraded in valset.items("input"):
                restored = model(torch.from_numpy(degraded)[None].to(target_device))[0].float()
                outside += int(((restored < 0) | (restored > 1)).sum())
                total += restored.numel()
                yield image_id, restored.clamp(0.0, 1.0).cpu().numpy()

        write_images(out_path, {"output": outputs()}, {"task": spec.task, "loss": spec.loss.name, "seed": spec.seed})
        log.info("%.2f%% of output values were outside [0, 1] and were clamped", 100.0 * outside / max(total, 1))
        return len(valset.ids)


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Nothing a user produced is replaced silently: stop before writing if any output exists."""
    existing = [path for path in paths if path.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise OutputExistsError(f"{existing[0]}{more} exist already; pass --overwrite to replace them")


def save_reconstructions(reconstructions: Mapping[str, np.ndarray], out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Write fastMRI submission files: ``out_dir/<file name>`` with dataset ``reconstruction``.

    The layout of ``fastmri.save_reconstructions`` (what the leaderboard and ``fastmri.evaluate``
    read), each file written atomically.

    Args:
        reconstructions: Volume file name (``file1000.h5``) → (slices, H, W) images at the volume's scale.
        out_dir: Folder of the files (created).
        overwrite: Replace existing files; without it an existing one raises :class:`OutputExistsError`.
    """
    out_dir = Path(out_dir)
    paths = [out_dir / name for name in reconstructions]
    _refuse_existing(paths, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, volume in zip(paths, reconstructions.values()):
        temporary = path.with_name(path.name + ".tmp")
        with h5py.File(temporary, "w") as file:
            file.create_dataset("reconstruction", data=np.asarray(volume, dtype=np.float32))
        os.replace(temporary, path)
    return paths


def _volume_scale(path: Path) -> float:
    with h5py.File(path, "r") as file:
        return float(file.attrs["max"])


def write_fastmri_reconstructions(outputs_path: str | Path, volumes_dir: str | Path, out_dir: str | Path) -> int:
    """The workflow's MRI outputs (per slice, scaled to [0, 1]) as fastMRI submission files.

    Each volume's slices are stacked in order and multiplied back by the volume's ``max``, the
    scale its ground truth has, so ``fastmri.evaluate`` compares them with the ground-truth files.

    Args:
        outputs_path: Model outputs written by :func:`run` (group ``output``, (1, H, W) per slice).
        volumes_dir: The validation volumes they restore (``<stem>.h5``, attribute ``max``).
        out_dir: Folder of the per-volume files (replaced files: the workflow owns it).

    Returns:
        The number of volumes written.
    """
    volumes: dict[str, list[np.ndarray]] = {}
    with ImageFile(outputs_path) as outputs:
        for image_id, output in outputs.items("output"):
            volumes.setdefault(volume_of(image_id), []).append(output[0])
    reconstructions = {}
    for stem, slices in volumes.items():
        source = Path(volumes_dir) / f"{stem}.h5"
        if not source.is_file():
            raise FileNotFoundError(f"{source}: the volume of outputs {outputs_path} is missing from {volumes_dir}")
        reconstructions[source.name] = np.stack(slices) * _volume_scale(source)
    save_reconstructions(reconstructions, out_dir, overwrite=True)
    return len(reconstructions)


def _restore(model: torch.nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray:
    """The (C, H, W) output of ``model`` for one (C, H, W) input, clamped to [0, 1] as :func:`run` writes it."""
    return model(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device))[0].float().clamp(0.0, 1.0).cpu().numpy()


def _check_size(path: Path, height: int, width: int, model: Mapping[str, Any]) -> None:
    """One line naming ``path`` when the image is smaller than the network of ``model`` (a ``model`` section) takes."""
    network = models.of(model)
    minimum = network.min_side(models.params(model))
    if min(height, width) < minimum:
        raise InferenceInputError(f"{path}: {width}×{height} is smaller than the {minimum}×{minimum} minimum of {network.describe(models.params(model))}")


def restore_images(model: torch.nn.Module, spec: RunSpec, input_dir: Path, out_dir: Path, device: torch.device, sigma: float | None = None, seed: int = 0, overwrite: bool = False) -> list[Path]:
    """Denoise every image below ``input_dir`` into ``out_dir/<id>.png`` (ids of :func:`list_images`).

    Args:
        sigma: Add Gaussian noise of ``sigma``/255 first, fixed per image by ``seed`` and its id (as
            the validation noise is); None restores the images as they are.
    """
    from lossbench.data.denoise import validation_noise

    try:
        images = list_images(input_dir)
    except FileNotFoundError as error:
        if input_dir.is_dir() and any(input_dir.glob("*.h5")):
            raise InferenceInputError(f"{input_dir}: holds .h5 files but no images; the {spec.task} model restores RGB images (PNG, JPEG, ...)") from None
        raise InferenceInputError(str(error)) from None
    paths = {image_id: out_dir / f"{image_id}.png" for image_id in images}
    _refuse_existing(list(paths.values()), overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    for image_id, source in images.items():
        image = read_rgb(source)  # grayscale is repeated into RGB, alpha dropped; unreadable: one line naming the file
        _check_size(source, image.shape[0], image.shape[1], spec.model)
        if sigma is not None:
            image = validation_noise(image, image_id, sigma, seed)
        restored = _restore(model, image.transpose(2, 0, 1), device)
        # Written beside its final name (a PNG suffix, for PIL) and renamed: a kill leaves no half image.
        temporary = paths[image_id].with_name(f".{paths[image_id].stem}.tmp.png")
        write_png(temporary, restored.transpose(1, 2, 0))
        os.replace(temporary, paths[image_id])
    return list(paths.values())


def _is_test_file(path: Path, recon_key: str) -> bool:
    """Whether ``path`` is a fastMRI test file (undersampled k-space and its ``mask``, no reference)."""
    try:
        with h5py.File(path, "r") as file:
            if "kspace" not in file:
                raise InferenceInputError(f"{path}: not a fastMRI file (no 'kspace' dataset; has {', '.join(file) or 'nothing'})")
            return "mask" in file and recon_key not in file
    except OSError as error:
        raise InferenceInputError(f"{path}: not a readable HDF5 file ({str(error).splitlines()[0]})") from None


def _test_volume_inputs(path: Path, challenge: str, crop: int) -> tuple[np.ndarray, float]:
    """Zero-filled inputs (S, 1, side, side) of a test file with its own mask, and the scale they were divided by.

    Test files carry no reference and so no ``max``: the inputs are divided by the largest value of
    the volume's zero-filled images instead, about the scale the model saw in training.
    """
    from lossbench.data.fastmri_files import KSPACE_NDIM, crop_side
    from lossbench.data.mri import zero_filled

    with h5py.File(path, "r") as file:
        kspace, mask = file["kspace"][()], np.asarray(file["mask"][()]).astype(bool).reshape(-1)
    if kspace.ndim != KSPACE_NDIM[challenge] or not np.issubdtype(kspace.dtype, np.complexfloating):
        raise InferenceInputError(f"{path}: kspace has shape {kspace.shape} and dtype {kspace.dtype}, expected {KSPACE_NDIM[challenge]}-dimensional complex {challenge} k-space for this model")
    if mask.shape[0] != kspace.shape[-1]:
        raise InferenceInputError(f"{path}: mask has {mask.shape[0]} entries for {kspace.shape[-1]} k-space columns")
    side = crop_side(kspace.shape, crop)
    if side > kspace.shape[-2]:
        raise InferenceInputError(f"{path}: kspace {kspace.shape[-2]}×{kspace.shape[-1]} is smaller than the model's {crop}×{crop} crop")
    kspace = torch.from_numpy(kspace.reshape((kspace.shape[0], -1) + kspace.shape[-2:]))
    slices, coils, height = kspace.shape[:3]
    # zero_filled takes the sampled columns of each slice, slice by slice: (S·K, C, H).
    columns = kspace[..., torch.from_numpy(mask)].permute(0, 3, 1, 2).reshape(-1, coils, height)
    images = zero_filled(columns, torch.from_numpy(mask).expand(slices, -1), side).numpy()
    scale = float(images.max())
    if not np.isfinite(scale) or scale <= 0:
        raise InferenceInputError(f"{path}: the zero-filled images have maximum {scale}, expected a positive number")
    log.warning("%s: a test file (own mask, no reference): scaled by its zero-filled maximum %.4g instead of the reference's", path, scale)
    return images / scale, scale


def restore_volumes(model: torch.nn.Module, spec: RunSpec, input_dir: Path, out_dir: Path, device: torch.device, overwrite: bool = False) -> list[Path]:
    """Reconstruct every fastMRI ``.h5`` volume of ``input_dir`` into fastMRI submission files in ``out_dir``.

    Train and validation files get the task's mask, fixed per file name as the workflow's
    validation set has it (so their outputs equal the workflow's); test files keep their own mask.
    """
    from lossbench.data.mri import MRISliceDataset

    challenge, data = tasks.spec(spec.kind).challenge, spec.data
    if not input_dir.is_dir():
        raise InferenceInputError(f"{input_dir}: not a folder, expected a folder of fastMRI {challenge} .h5 files")
    files = sorted(path for path in input_dir.iterdir() if path.suffix == ".h5" and path.is_file())
    if not files:
        hint = "; it holds images, but this MRI model restores fastMRI .h5 files" if any(True for _ in _images_in(input_dir)) else ""
        raise InferenceInputError(f"{input_dir}: no .h5 files, expected fastMRI {challenge} volumes{hint}")
    tests = [path for path in files if _is_test_file(path, RECON_KEYS[challenge])]
    full = [path for path in files if path not in tests]
    if tests and full:
        raise InferenceInputError(f"{input_dir}: mixes fastMRI test files ({tests[0].name}: own mask, no reference) with train/validation files ({full[0].name}); give each kind a folder of its own")
    _refuse_existing([out_dir / path.name for path in files], overwrite)
    reconstructions: dict[str, np.ndarray] = {}
    if tests:
        for path in tests:
            inputs, scale = _test_volume_inputs(path, challenge, data["crop"])
            reconstructions[path.name] = np.stack([_restore(model, image, device)[0] for image in inputs]) * scale
    else:
        # The workflow's own path: its checks (one line naming a bad file), masks and [0, 1] scaling.
        dataset = MRISliceDataset(input_dir, challenge, data["mask"]["center_fraction"], data["mask"]["acceleration"], data["crop"])
        slices: dict[str, list[np.ndarray]] = {}
        for index in range(len(dataset)):
            sample_id, masked, _ = dataset.validation_item(index)
            slices.setdefault(volume_of(sample_id), []).append(_restore(model, masked.numpy(), device)[0])
        for stem, restored in slices.items():
            reconstructions[f"{stem}.h5"] = np.stack(restored) * _volume_scale(input_dir / f"{stem}.h5")
    return save_reconstructions(reconstructions, out_dir, overwrite)


def _images_in(folder: Path) -> Iterator[Path]:
    from lossbench.data.images import IMAGE_SUFFIXES

    return (path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)


@torch.no_grad()
def restore_folder(model_path: str | Path, input_dir: str | Path, out_dir: str | Path, sigma: float | None = None, seed: int = 0, overwrite: bool = False, device: str = "auto") -> list[Path]:
    """Run a trained model on one's own data: a folder of images (denoising) or of fastMRI ``.h5`` files (MRI).

    Args:
        model_path: ``model.pt`` written by :mod:`lossbench.training`; its spec names the task, the
            MRI mask and the crop.
        input_dir: Folder of images (PNG, JPEG, ...; below it, recursively) or of fastMRI volumes.
        out_dir: Where the restored PNGs or fastMRI submission files go.
        sigma: Denoising: noise of ``sigma``/255 added to each image first (None: none).
        seed: Seed of that noise.
        overwrite: Replace existing outputs (otherwise any existing one stops the run first).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.

    Returns:
        The files written.

    Raises:
        InferenceInputError, OutputExistsError, FileNotFoundError, ValueError: one line naming the
            file, folder or value.
    """
    model_path, input_dir, out_dir = Path(model_path), Path(input_dir), Path(out_dir)
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: model file does not exist (results/<experiment>/models/<task>/<loss>/seed<N>/model.pt)")
    target_device = select_device(device)
    try:
        model, spec = load_model(model_path, target_device)
    except Exception as error:  # anything from pickle to zip errors for a file that is no model.pt
        raise InferenceInputError(f"{model_path}: not a model written by lossbench.train ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    log.info("%s: %s/%s seed %d on %s", model_path, spec.task, spec.loss.name, spec.seed, target_device)
    challenge = tasks.spec(spec.kind).challenge
    if challenge is None:  # a task on photographs
        return restore_images(model, spec, input_dir, out_dir, target_device, sigma, seed, overwrite)
    if sigma is not None:
        raise InferenceInputError(f"--sigma adds noise to images, but {model_path} is a {spec.task} (fastMRI {challenge}) model")
    return restore_volumes(model, spec, input_dir, out_dir, target_device, overwrite)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lossbench.infer", description="Run a trained model on a folder of images (denoising) or of fastMRI .h5 files (MRI).")
    parser.add_argument("--model", required=True, help="model.pt written by lossbench.train, e.g. results/demo/models/denoise/l1/seed0/model.pt")
    parser.add_argument("--input", required=True, help="folder of images (denoising) or of fastMRI .h5 files: train/val files get the task's mask, test files their own")
    parser.add_argument("--out", required=True, help="output folder: PNGs, or fastMRI submission files (dataset 'reconstruction')")
    parser.add_argument("--sigma", type=float, default=None, help="denoising: add Gaussian noise of SIGMA/255 (seeded) first; default: none")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --sigma noise (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    args = parser.parse_args(argv)
    if args.sigma is not None and not (np.isfinite(args.sigma) and args.sigma >= 0):
        parser.error(f"--sigma {args.sigma} must be a finite number >= 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        written = restore_folder(args.model, args.input, args.out, args.sigma, args.seed, args.overwrite, args.device)
    except (ValueError, FileNotFoundError, FileExistsError, DeviceError) as error:
        sys.exit(f"error: {error}")
    print(f"wrote {len(written)} files to {args.out}")


if __name__ == "__main__":
    main()
