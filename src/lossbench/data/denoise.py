"""RGB denoising data: random noisy crops for training, fixed-noise images for validation (thesis §4.1, §5.1.1).

Training crops come from the training photographs decoded once (:func:`write_decoded`, the workflow's
rule ``decode_images``) into an HDF5 file of uint8 pixels, so that a DataLoader worker reads only
the crop's pixels instead of decoding a JPEG for every crop of every epoch. The decoded pixels are
those :func:`lossbench.data.images.read_rgb` gives, so the crops are the same float32 values as
crops of the image files (:class:`ImageFiles`, which decodes the file for every crop).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from lossbench.core.seeding import derive_seed
from lossbench.data.h5files import ProcessLocalFiles, RawBatch, handed_over
from lossbench.data.imagenet import read_manifest
from lossbench.data.images import image_size, list_images, read_rgb

#: Format tag of the decoded training file, checked when it is read.
DECODED_FORMAT = "lossbench-decoded-images-1"


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random rot90, flip and colour-channel permutation of an (H, W, 3) image."""
    image = np.rot90(image, k=int(rng.integers(4)))
    if rng.integers(2):
        image = image[:, ::-1]
    return image[..., rng.permutation(3)]


def training_images(source: str | Path) -> list[Path]:
    """The training photographs of ``source``: an image manifest (:mod:`lossbench.data.imagenet`) or a folder."""
    return read_manifest(source) if Path(source).is_file() else list(list_images(source).values())


def open_images(source: str | Path) -> DecodedImages | ImageFiles:
    """The training photographs of ``source``: a decoded file (``.h5``, :func:`write_decoded`), or
    an image manifest or folder (see :func:`training_images`), decoded for every crop."""
    return DecodedImages(source) if Path(source).suffix == ".h5" else ImageFiles(training_images(source))


class ImageFiles:
    """Training photographs read from their files, decoded for every crop.

    Args:
        paths: The image files; their sizes are read from the headers.
    """

    def __init__(self, paths: list[Path]):
        self.files = list(paths)
        self.names = [str(path) for path in self.files]
        self.shapes = [image_size(path)[::-1] for path in self.files]

    def stored_crop(self, index: int, top: int, left: int, side: int) -> np.ndarray:
        """The (side, side, 3) float32 crop in [0, 1] at (top, left) of image ``index``."""
        return read_rgb(self.files[index])[top : top + side, left : left + side]


class DecodedImages:
    """Training photographs from a file written by :func:`write_decoded`; each DataLoader worker
    opens it once and reads only the pixels of each crop.

    Raises:
        ValueError: ``path`` is no decoded-images file (one line naming it).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.files = [self.path]
        try:
            with h5py.File(self.path, "r") as file:
                if file.attrs.get("format") != DECODED_FORMAT:
                    raise ValueError(
                        f"{self.path}: not a decoded training-images file (format {file.attrs.get('format')!r},"
                        f" expected {DECODED_FORMAT!r}); rerun rule decode_images"
                    )
                self.names = [name.decode() if isinstance(name, bytes) else str(name) for name in file["sources"][()]]
                self.shapes = [tuple(int(side) for side in shape) for shape in file["shapes"][()]]
        except OSError as error:
            raise ValueError(f"{self.path}: cannot read as HDF5 ({str(error).splitlines()[0]})") from None
        self._files = ProcessLocalFiles()

    def stored_crop(self, index: int, top: int, left: int, side: int) -> np.ndarray:
        """The (side, side, 3) crop at (top, left) of image ``index`` as stored: uint8 (an 8-bit
        image, 0–255) or float32 in [0, 1] (:func:`unit_float` makes both float32)."""
        return self._files.array(self.path, f"images/{index:06d}")[top : top + side, left : left + side]


def unit_float(pixels: np.ndarray) -> np.ndarray:
    """Stored pixels as float32 in [0, 1]: uint8 divided by 255 in float32, as read_rgb scales 8-bit
    pixels (and :meth:`DenoiseTrainDataset.finish_batch` on the device); float32 unchanged."""
    if pixels.dtype != np.uint8:
        return pixels
    scaled = pixels.astype(np.float32)
    scaled /= 255.0
    return scaled


def write_decoded(paths: list[Path], out_path: str | Path) -> int:
    """Decode the training photographs ``paths`` once into the HDF5 file ``out_path``.

    One dataset per image, ``images/{index:06d}`` (H, W, 3), in the order of ``paths``: uint8 when
    that keeps :func:`lossbench.data.images.read_rgb`'s values exactly (every 8-bit image), else
    float32 (16-bit and float images). ``sources`` lists the files, ``shapes`` their (H, W). The file
    is written under a temporary name and renamed, so ``out_path`` is old or complete.

    Returns:
        The number of images written.

    Raises:
        ValueError: an image that cannot be decoded (one line naming the file), or no images.
    """
    if not paths:
        raise ValueError(f"{out_path}: no training images to decode")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = out_path.with_name(out_path.name + ".tmp")
    with h5py.File(temporary, "w") as file:
        file.attrs["format"] = DECODED_FORMAT
        images = file.create_group("images")
        shapes = []
        for index, path in enumerate(paths):
            pixels = read_rgb(path)
            quantised = np.round(pixels * 255).astype(np.uint8)
            exact = quantised.astype(np.float32)
            exact /= 255.0
            images.create_dataset(f"{index:06d}", data=quantised if np.array_equal(exact, pixels) else pixels)
            shapes.append(pixels.shape[:2])
        file.create_dataset("sources", data=[str(path) for path in paths], dtype=h5py.string_dtype())
        file.create_dataset("shapes", data=np.asarray(shapes, dtype=np.int64))
    os.replace(temporary, out_path)
    return len(paths)


class DenoiseTrainDataset(Dataset):
    """Random crops of clean photographs with Gaussian noise of random strength.

    Each item is keyed by ``(index, sample_seed)`` (see :class:`lossbench.core.seeding.SeededSampler`):
    the crop position, augmentation, σ ~ U[sigma_min, sigma_max]/255 and the noise all come from
    ``sample_seed``. An item is the raw read of a DataLoader worker: a dict of the clean crop
    ``clean`` (3, crop, crop) as the images store it (uint8 from a decoded file of 8-bit images, a
    quarter of float32's bytes to hand over and to copy to a GPU; else float32), its ``sigma`` (float32, on the [0, 1]
    scale) and a
    ``noise_seed`` (int64). :meth:`finish_batch` draws the noise on the training device, where a
    batch of it costs next to nothing, instead of in the worker, where drawing it took most of an
    item's time (2 ms of a 256-pixel crop's 3 ms on one CPU thread). Each sample's noise is a
    standard normal from torch's generator of the device type, seeded with ``noise_seed``, times
    ``sigma``: it does not depend on the batch the sample is in. Noise is not clipped, as in the
    thesis's Noisy column. :meth:`pair` gives one sample's (noisy, clean) pair.

    Args:
        images: The clean training photographs, decoded (:class:`DecodedImages`) or as files
            (:class:`ImageFiles`); images smaller than the crop are rejected here, before any training.
        crop: Side of the square crops.
        sigma_range: (min, max) noise standard deviation on the 0–255 scale.
        crops_per_image: Crops drawn from every image per epoch.
        augment: Apply rot90, flips and colour-channel permutations.
    """

    channels = 3

    def __init__(
        self,
        images: DecodedImages | ImageFiles,
        crop: int,
        sigma_range: tuple[float, float],
        crops_per_image: int = 1,
        augment: bool = True,
    ):
        if not images.shapes:
            raise ValueError("denoising training set is empty")
        for name, (height, width) in zip(images.names, images.shapes):
            if min(width, height) < crop:
                raise ValueError(
                    f"{name}: image {width}×{height} is smaller than the {crop}×{crop} crop (tasks.denoise.crop): every"
                    f" training image needs at least {crop} pixels per side"
                )
        self.images = images
        self.crop = crop
        self.sigma_range = sigma_range
        self.crops_per_image = crops_per_image
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images.shapes) * self.crops_per_image

    def batch_key(self, index: int) -> None:
        """Every crop has the same shape: any samples batch together."""
        return None

    def clean_crop(self, key: tuple[int, int]) -> tuple[np.ndarray, np.random.Generator]:
        """The seeded, augmented clean crop (3, crop, crop) of ``key = (index, sample_seed)`` as the
        images store it (see :meth:`DecodedImages.stored_crop`), and the sample's generator after
        the crop's draws, for the draws that follow."""
        index, sample_seed = key
        rng = np.random.default_rng(sample_seed)
        image = index // self.crops_per_image
        height, width = self.images.shapes[image]
        top = int(rng.integers(height - self.crop + 1))
        left = int(rng.integers(width - self.crop + 1))
        clean = self.images.stored_crop(image, top, left, self.crop)
        if self.augment:
            clean = augment(clean, rng)
        return np.ascontiguousarray(clean.transpose(2, 0, 1)), rng

    def __getitem__(self, key: tuple[int, int]) -> dict[str, np.ndarray]:
        clean, rng = self.clean_crop(key)
        sigma = np.float32(rng.uniform(*self.sigma_range) / 255.0)
        return {"clean": clean, "sigma": sigma, "noise_seed": rng.integers(2**63, dtype=np.int64)}

    @staticmethod
    def collate(items: list[dict[str, np.ndarray]]) -> RawBatch:
        """Stack each entry of the items along a new first axis; large ones go into shared memory
        (:func:`lossbench.data.h5files.handed_over`). Clean crops of both stored types (8-bit and
        deeper photographs in one file) are all made float32."""
        batch = {key: [np.asarray(item[key]) for item in items] for key in items[0]}
        if len({crop.dtype for crop in batch["clean"]}) > 1:
            batch["clean"] = [unit_float(crop) for crop in batch["clean"]]
        return RawBatch({key: handed_over(parts, stack=True) for key, parts in batch.items()})

    @staticmethod
    def finish_batch(batch: RawBatch, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of :meth:`collate` on ``device`` as (noisy, clean), each (N, 3, crop, crop) float32."""
        clean = torch.as_tensor(batch["clean"]).to(device, non_blocking=True)
        if clean.dtype == torch.uint8:
            clean = clean.to(torch.float32).div_(255.0)  # the float32 values of unit_float
        sigma = torch.as_tensor(batch["sigma"]).to(device, non_blocking=True)
        noise = torch.empty_like(clean)
        generator = _noise_generator(clean.device)
        for sample_noise, seed in zip(noise, torch.as_tensor(batch["noise_seed"]).tolist()):
            generator.manual_seed(seed)
            sample_noise.normal_(generator=generator)
        return clean + noise * sigma[:, None, None, None], clean

    def pair(self, index: int, sample_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, target) of item ``(index, sample_seed)``, each (3, crop, crop) on the CPU: a batch
        of one through :meth:`finish_batch`."""
        degraded, clean = self.finish_batch(self.collate([self[(index, sample_seed)]]), "cpu")
        return degraded[0], clean[0]


@functools.cache
def _noise_generator(device: torch.device) -> torch.Generator:
    # One generator per device, reseeded per sample: seeding costs nothing and needs no host sync.
    return torch.Generator(device=device)


def validation_noise(clean: np.ndarray, image_id: str, sigma: float, seed: int) -> np.ndarray:
    """Add Gaussian noise of ``sigma``/255 to (H, W, 3) ``clean``, fixed by ``seed`` and ``image_id``; unclipped."""
    rng = np.random.default_rng(derive_seed(seed, image_id))
    return (clean + rng.normal(0.0, sigma / 255.0, size=clean.shape)).astype(np.float32)
