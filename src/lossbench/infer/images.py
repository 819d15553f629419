"""Denoising one's own images: every image below a folder, checked before any work, into PNGs."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from lossbench import models
from lossbench.data.denoise import validation_noise
from lossbench.data.images import IMAGE_SUFFIXES, DuplicateImageIdError, image_size, list_images, read_rgb, write_png
from lossbench.infer.common import (
    RECORD_KEY,
    InferenceInputError,
    _check_apart,
    _make_folder,
    _pending,
    _record,
    _restore,
    _write_atomically,
)
from lossbench.train.run_settings import RunSettings

# The package's one log, "lossbench.infer", whichever of its modules writes.
log = logging.getLogger(__package__)

#: Pixels an input image may have by default (``--max-pixels``), read from its header before decoding:
#: 50 megapixels are 600 MB as float32 RGB and several GB of network activations.
DEFAULT_MAX_PIXELS = 50_000_000


def _check_size(path: Path, height: int, width: int, model: Mapping[str, Any]) -> None:
    """One line naming ``path`` when the image is smaller than the network of ``model`` (a ``model`` section) takes."""
    network = models.of(model)
    minimum = network.min_side(models.params(model))
    if min(height, width) < minimum:
        raise InferenceInputError(
            f"{path}: {width}×{height} is smaller than the {minimum}×{minimum} minimum of"
            f" {network.describe(models.params(model))}"
        )


def _image_outputs(images: Mapping[str, Path], out_dir: Path) -> dict[str, Path]:
    """``out_dir/<id>.png`` for each image id; two that are one file on a case-insensitive file system are refused."""
    outputs: dict[str, Path] = {}
    taken: dict[str, str] = {}
    for image_id, source in images.items():
        outputs[image_id] = out_dir / f"{image_id}.png"
        other = taken.setdefault(image_id.casefold(), image_id)
        if other != image_id:
            raise InferenceInputError(
                f"{images[other]} and {source} would both be written as {outputs[other]} on a case-insensitive file"
                f" system ({outputs[image_id].name} is the same name there); rename one"
            )
    return outputs


def restore_images(
    model: torch.nn.Module,
    run_settings: RunSettings,
    input_dir: Path,
    out_dir: Path,
    device: torch.device,
    settings: Mapping[str, Any],
    sigma: float | None = None,
    seed: int = 0,
    overwrite: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Path]:
    """Denoise every image below ``input_dir`` into ``out_dir/<id>.png`` (ids of :func:`list_images`).

    Every input is checked before any work: ids that would share an output, the folders' overlap,
    each header (readable, a mode with a defined range, at most ``max_pixels``, at least the
    network's minimum side) and the existing outputs (:func:`_pending`).

    Args:
        settings: What each output's record holds besides its input's SHA-256 (the model's, the noise).
        sigma: Add Gaussian noise of ``sigma``/255 first, fixed per image by ``seed`` and its id (as
            the validation noise is); None restores the images as they are.
        max_pixels: Largest width × height of an input.

    Returns:
        The files written (not those an earlier run completed).
    """
    images = _list_inputs(input_dir, out_dir, run_settings.task)
    outputs = _image_outputs(images, out_dir)
    _check_apart(input_dir, out_dir, images.values())
    _check_headers(images.values(), max_pixels, run_settings.model)
    ids = {source: image_id for image_id, source in images.items()}
    pending = _pending(((images[image_id], target) for image_id, target in outputs.items()), settings, overwrite)
    if len(pending) < len(images):
        log.info("%s: keeping %d outputs an earlier run of this model completed", out_dir, len(images) - len(pending))
    _make_folder(out_dir)
    for source, target in pending:
        image = read_rgb(source)  # grayscale is repeated into RGB, alpha dropped; unreadable: one line naming the file
        if sigma is not None:
            image = validation_noise(image, ids[source], sigma, seed)
        restored = _restore(model, image.transpose(2, 0, 1), device, str(source))
        buffer = io.BytesIO()
        write_png(buffer, restored.transpose(1, 2, 0), {RECORD_KEY: _record(settings, source)})
        _write_atomically(target, buffer.getvalue())
    return [target for _, target in pending]


def _list_inputs(input_dir: Path, out_dir: Path, task: str) -> dict[str, Path]:
    """The images below ``input_dir`` by id (:func:`list_images`), a failure as one :class:`InferenceInputError`
    line."""
    try:
        return list_images(input_dir)
    except DuplicateImageIdError as error:
        raise InferenceInputError(
            f"{error.first} and {error.second} would both be written as {out_dir / f'{error.image_id}.png'}; rename one"
        ) from None
    except FileNotFoundError as error:
        if input_dir.is_dir() and any(input_dir.glob("*.h5")):
            raise InferenceInputError(
                f"{input_dir}: holds .h5 files but no images; the {task} model restores RGB images (PNG, JPEG, ...)"
            ) from None
        raise InferenceInputError(str(error)) from None


def _check_headers(sources: Iterable[Path], max_pixels: int, model: Mapping[str, Any]) -> None:
    """Each image's header, read before decoding: at most ``max_pixels``, at least the network's minimum side."""
    for source in sources:
        with warnings.catch_warnings():  # PIL warns of images above its bomb limit; the budget below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            width, height = image_size(source)
        if width * height > max_pixels:
            raise InferenceInputError(
                f"{source}: {width}×{height} is {width * height / 1e6:.1f} megapixels, more than --max-pixels"
                f" {max_pixels}; raise it to restore this image"
            )
        _check_size(source, height, width, model)


def _images_in(folder: Path) -> Iterator[Path]:
    return (path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
