"""fastMRI slices for reconstruction: zero-filled inputs from randomly undersampled k-space, targets in [0, 1].

Files are read through ``fastmri.data.SliceDataset`` and masked with fastMRI's ``RandomMaskFunc``
(default 8× acceleration, 4 % fully sampled centre). Per slice the masked k-space is inverse-Fourier
transformed (zero-filled), centre-cropped and reduced to a magnitude (single-coil) or a
root-sum-of-squares over coils (multi-coil); the target is the stored reconstruction. Both are divided
by the volume's ``max`` attribute, so targets lie in [0, 1], the thesis's metric scale; inputs may
slightly exceed 1 and are not clipped.

Training masks are drawn from a per-sample seed given by the caller (see
:class:`lossbench.seeding.SeededSampler`), so every sample gets a new mask that does not depend on the
DataLoader worker or on resuming. Validation masks are fixed per file (seeded by the file name, as
fastMRI does), the same for every slice of a file and every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from fastmri import complex_abs, ifft2c, rss
from fastmri.data import SliceDataset
from fastmri.data.subsample import RandomMaskFunc
from fastmri.data.transforms import apply_mask, center_crop, complex_center_crop, to_tensor
from torch.utils.data import Dataset

from lossbench.data.fastmri_files import check_volume
from lossbench.data.fastmri_synthetic import RECON_KEYS


def _keep_all(raw_sample) -> bool:
    # A module-level filter instead of SliceDataset's default lambda keeps the dataset picklable
    # for DataLoader workers started with "spawn".
    return True


class _H5SliceDataset(SliceDataset):
    """``SliceDataset`` that lists only ``.h5`` files of the folder.

    SliceDataset opens every entry of the folder as HDF5, so a stray file (e.g. Snakemake's
    ``.snakemake_timestamp`` in a ``directory()`` output) would crash it; such entries get no slices.
    """

    def _retrieve_metadata(self, fname):
        if fname.suffix != ".h5" or not fname.is_file():
            return {}, 0
        return super()._retrieve_metadata(fname)


class MRISliceDataset(Dataset):
    """Undersampled fastMRI slices: (zero-filled input, target) pairs of shape (1, crop, crop) float32.

    Items are keyed by ``(index, sample_seed)``; ``sample_seed`` (an integer in [0, 2**32)) fixes the
    training mask. :meth:`validation_item` uses the per-file mask instead.

    Args:
        root: Folder of fastMRI ``.h5`` volumes (other entries are ignored). Slices are ordered by
            sorted file name, then slice number, as in ``SliceDataset``.
        challenge: "singlecoil" (target ``reconstruction_esc``) or "multicoil" (``reconstruction_rss``).
        center_fraction: Fraction of low-frequency k-space columns always sampled.
        acceleration: Undersampling factor; the expected fraction of sampled columns is 1/acceleration.
        crop: Side of the square centre crop of input and target.
    """

    def __init__(self, root: str | Path, challenge: str, center_fraction: float = 0.04, acceleration: int = 8, crop: int = 320):
        if challenge not in RECON_KEYS:
            raise ValueError(f"unknown MRI challenge {challenge!r}, expected 'singlecoil' or 'multicoil'")
        if not 0 < center_fraction <= 1 / acceleration:
            raise ValueError(f"center_fraction {center_fraction} must lie in (0, 1/acceleration = {1 / acceleration:.4g}]")
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: MRI data folder not found, expected a folder of fastMRI {challenge} .h5 files")
        files = sorted(path for path in root.iterdir() if path.suffix == ".h5" and path.is_file())
        if not files:
            raise FileNotFoundError(f"{root}: no .h5 files, expected fastMRI {challenge} volumes")
        self.challenge = challenge
        self.recon_key = RECON_KEYS[challenge]
        self.crop = crop
        self._kspace_shapes = {path.name: self._check_file(path) for path in files}
        # use_dataset_cache stays False so that nothing is written next to the user's data.
        self._slices = _H5SliceDataset(root, challenge, transform=None, use_dataset_cache=False, raw_sample_filter=_keep_all)
        self.mask_func = RandomMaskFunc(center_fractions=[center_fraction], accelerations=[acceleration])

    def _check_file(self, path: Path) -> tuple[int, ...]:
        """Validate one volume's layout and return its k-space shape."""
        # The data itself was read by the workflow's check rule; here only the layout is checked.
        return check_volume(path, self.challenge, self.crop, read_data=False)

    def __len__(self) -> int:
        return len(self._slices)

    def sample_id(self, index: int) -> str:
        """Identifier ``{file stem}_s{slice:03d}`` of slice ``index``."""
        fname, slice_num, _ = self._slices.raw_samples[index]
        return f"{fname.stem}_s{slice_num:03d}"

    def _seed(self, index: int, sample_seed: int | None) -> int | tuple[int, ...]:
        if sample_seed is None:
            # fastMRI's validation convention: the mask depends on the file name only.
            return tuple(map(ord, self._slices.raw_samples[index][0].name))
        if not 0 <= sample_seed < 2**32:
            raise ValueError(f"sample_seed {sample_seed} must lie in [0, 2**32) for fastMRI's RandomMaskFunc")
        return int(sample_seed)

    def _apply_mask(self, kspace: torch.Tensor, index: int, sample_seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask k-space (..., H, W, 2), zeroing the unacquired columns given by the header's padding."""
        metadata = self._slices.raw_samples[index][2]
        padding = (metadata["padding_left"], metadata["padding_right"])
        masked, mask, _ = apply_mask(kspace, self.mask_func, seed=self._seed(index, sample_seed), padding=padding)
        return masked, mask

    def mask_for(self, index: int, sample_seed: int | None = None) -> np.ndarray:
        """The column mask (W,) bool applied to slice ``index``: training mask for ``sample_seed``, or the
        file's validation mask when ``sample_seed`` is None."""
        shape = self._kspace_shapes[self._slices.raw_samples[index][0].name]
        # Only the shape of the data matters to the mask; an expanded zero tensor costs no memory.
        _, mask = self._apply_mask(torch.zeros(()).expand(*shape[-2:], 2), index, sample_seed)
        return mask.reshape(-1).numpy().astype(bool)

    def _pair(self, index: int, sample_seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        kspace, _, target, attrs, _, _ = self._slices[index]
        masked, _ = self._apply_mask(to_tensor(kspace), index, sample_seed)
        image = complex_abs(complex_center_crop(ifft2c(masked), (self.crop, self.crop)))
        if self.challenge == "multicoil":
            image = rss(image, dim=0)
        scale = float(attrs["max"])
        target = center_crop(torch.from_numpy(target), (self.crop, self.crop))
        return (image / scale).unsqueeze(0), (target / scale).unsqueeze(0)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pair for ``key = (index, sample_seed)``: input and target, each (1, crop, crop) float32."""
        if not (isinstance(key, tuple) and len(key) == 2):
            raise TypeError(f"MRISliceDataset items are keyed by (index, sample_seed), got {key!r}")
        index, sample_seed = key
        return self._pair(index, sample_seed)

    def validation_item(self, index: int) -> tuple[str, torch.Tensor, torch.Tensor]:
        """``(sample_id, input, target)`` of slice ``index`` with the file's fixed mask; tensors (1, crop, crop)."""
        return (self.sample_id(index), *self._pair(index, None))
