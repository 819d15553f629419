"""RGB denoising data: random noisy crops for training, fixed-noise images for validation (thesis §4.1, §5.1.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lossbench.data.images import image_size, read_rgb
from lossbench.seeding import derive_seed


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random rot90, flip and colour-channel permutation of an (H, W, 3) image."""
    image = np.rot90(image, k=int(rng.integers(4)))
    if rng.integers(2):
        image = image[:, ::-1]
    return image[..., rng.permutation(3)]


class DenoiseTrainDataset(Dataset):
    """Random crops of clean photographs with Gaussian noise of random strength.

    Each item is keyed by ``(index, sample_seed)`` (see :class:`lossbench.seeding.SeededSampler`):
    the crop position, augmentation, σ ~ U[sigma_min, sigma_max]/255 and the noise all come from
    ``sample_seed``. Noise is not clipped, as in the thesis's Noisy column.

    Args:
        paths: Clean training images.
        crop: Side of the square crops; images smaller than that are rejected here, before any
            training, from their headers.
        sigma_range: (min, max) noise standard deviation on the 0–255 scale.
        crops_per_image: Crops drawn from every image per epoch.
        augment: Apply rot90, flips and channel permutations.
    """

    channels = 3

    def __init__(self, paths: list[Path], crop: int, sigma_range: tuple[float, float], crops_per_image: int = 1, augment: bool = True):
        if not paths:
            raise ValueError("denoising training set is empty")
        for path in paths:
            width, height = image_size(path)
            if min(width, height) < crop:
                raise ValueError(f"{path}: image {width}×{height} is smaller than the {crop}×{crop} crop (tasks.denoise.crop): every training image needs at least {crop} pixels per side")
        self.paths = list(paths)
        self.crop = crop
        self.sigma_range = sigma_range
        self.crops_per_image = crops_per_image
        self.augment = augment

    def __len__(self) -> int:
        return len(self.paths) * self.crops_per_image

    def _image(self, index: int) -> np.ndarray:
        # Read on demand rather than cache: the thesis's 9000 training images do not fit in memory.
        return read_rgb(self.paths[index])

    def batch_key(self, index: int) -> None:
        """Every crop has the same shape: any samples batch together."""
        return None

    @staticmethod
    def finish_batch(batch: tuple[torch.Tensor, torch.Tensor], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """The collated (noisy, clean) batch, each (N, 3, crop, crop), moved to ``device``."""
        return batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, sample_seed = key
        rng = np.random.default_rng(sample_seed)
        image = self._image(index // self.crops_per_image)
        top = int(rng.integers(image.shape[0] - self.crop + 1))
        left = int(rng.integers(image.shape[1] - self.crop + 1))
        clean = image[top : top + self.crop, left : left + self.crop]
        if self.augment:
            clean = augment(clean, rng)
        sigma = rng.uniform(*self.sigma_range) / 255.0
        noisy = clean + rng.normal(0.0, sigma, size=clean.shape).astype(np.float32)
        return _to_chw(noisy), _to_chw(clean)


def validation_noise(clean: np.ndarray, image_id: str, sigma: float, seed: int) -> np.ndarray:
    """Add Gaussian noise of ``sigma``/255 to (H, W, 3) ``clean``, fixed by ``seed`` and ``image_id``; unclipped."""
    rng = np.random.default_rng(derive_seed(seed, image_id))
    return (clean + rng.normal(0.0, sigma / 255.0, size=clean.shape)).astype(np.float32)


def _to_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
