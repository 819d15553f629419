"""A trained model on one's own data: a folder of images (denoising) or of fastMRI files (MRI)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from lossbench.data import tasks
from lossbench.infer.common import InferenceInputError, _sha256
from lossbench.infer.images import DEFAULT_MAX_PIXELS, restore_images
from lossbench.infer.volumes import restore_volumes
from lossbench.train.device import select_device
from lossbench.train.loop import load_model
from lossbench.train.run_settings import RunSettings

# The package's one log, "lossbench.infer", whichever of its modules writes.
log = logging.getLogger(__package__)


@torch.no_grad()
def restore_folder(
    model_path: str | Path,
    input_dir: str | Path,
    out_dir: str | Path,
    sigma: float | None = None,
    seed: int = 0,
    overwrite: bool = False,
    device: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Path]:
    """Run a trained model on one's own data: a folder of images (denoising) or of fastMRI ``.h5`` files (MRI).

    Args:
        model_path: ``model.pt`` written by :mod:`lossbench.train.loop`; its run_settings names the task, the
            MRI mask and the crop.
        input_dir: Folder of images (PNG, JPEG, ...; below it, recursively) or of fastMRI volumes.
        out_dir: Where the restored PNGs or fastMRI submission files go: a folder apart from the
            inputs (neither inside the other), whatever ``overwrite`` says.
        sigma: Denoising: noise of ``sigma``/255 added to each image first (None: none).
        seed: Seed of that noise.
        overwrite: Replace existing outputs that are not this run's (otherwise any of them stops
            the run first). Outputs an earlier run of the same model, inputs and settings completed
            are kept either way: rerunning a stopped run resumes it.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        max_pixels: Denoising: largest width × height of an input image, read from its header
            before decoding. PIL's own limit (``PIL.Image.MAX_IMAGE_PIXELS``, beyond twice which it
            refuses) applies too; :func:`main` raises it to ``--max-pixels``.

    Returns:
        The files written (not those an earlier run completed).

    Raises:
        InferenceInputError, OutputExistsError, OutputWriteError, FileNotFoundError, ValueError:
            one line naming the file, folder or value.
    """
    model_path, input_dir, out_dir = Path(model_path), Path(input_dir), Path(out_dir)
    model, run_settings, target_device = _load(model_path, device)
    log.info(
        "%s: %s/%s seed %d on %s",
        model_path,
        run_settings.task,
        run_settings.loss.name,
        run_settings.seed,
        target_device,
    )
    settings: dict[str, Any] = {"model": _sha256(model_path)}
    challenge = tasks.spec(run_settings.kind).challenge
    if challenge is None:  # a task on photographs
        if sigma is not None:  # the seed matters only with noise
            settings.update(sigma=sigma, seed=seed)
        return restore_images(
            model, run_settings, input_dir, out_dir, target_device, settings, sigma, seed, overwrite, max_pixels
        )
    if sigma is not None:
        raise InferenceInputError(
            f"--sigma adds noise to images, but {model_path} is a {run_settings.task} (fastMRI {challenge}) model"
        )
    return restore_volumes(model, run_settings, input_dir, out_dir, target_device, settings, overwrite)


def _load(model_path: Path, device: str) -> tuple[torch.nn.Module, RunSettings, torch.device]:
    """The model of ``model_path`` on ``device``, its run settings and the device; a file that is no model is one line
    naming it."""
    if not model_path.is_file():
        raise FileNotFoundError(
            f"{model_path}: model file does not exist (results/<experiment>/models/<task>/<loss>/seed<N>/model.pt)"
        )
    target_device = select_device(device)
    try:
        model, run_settings = load_model(model_path, target_device)
    except ValueError as error:  # load_model's own one line: a refused file, no run settings, bad run settings
        message = str(error)
        raise InferenceInputError(
            message if message.startswith(str(model_path)) else f"{model_path}: {message}"
        ) from None
    except Exception as error:  # anything from zip to torch errors for a file that is no model.pt
        raise InferenceInputError(
            f"{model_path}: not a model written by lossbench.train ({type(error).__name__}:"
            f" {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    return model, run_settings, target_device
