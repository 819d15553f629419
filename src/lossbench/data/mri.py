"""fastMRI slices for reconstruction: zero-filled inputs from randomly undersampled k-space, targets in [0, 1].

Masks are fastMRI's ``RandomMaskFunc`` (default 8× acceleration, 4 % fully sampled centre), with the
unacquired edge columns the header's padding names zeroed as ``fastmri.data.transforms.apply_mask``
does. The masked k-space is inverse-Fourier transformed (zero-filled), centre-cropped and reduced to a
magnitude (one coil) or a root-sum-of-squares over coils; the target is the stored reconstruction,
cropped alike. Both are divided by the volume's ``max`` attribute, so targets lie in [0, 1], the
thesis's metric scale; inputs may slightly exceed 1 and are not clipped.

The work is split between the DataLoader workers and the training device:

* a worker only reads: it draws the slice's mask (a few hundred random numbers, so that masks stay
  drawn from the per-sample seed on the CPU), reads the k-space columns the mask keeps (about
  1/acceleration of them: a 16-coil 640×320 brain slice is 26 MB, its sampled columns about 3 MB)
  and the target's crop window (each file opened once per worker process; contiguous datasets,
  fastMRI's layout, are read through a memory map, so only the pages of those columns are touched
  and the slice is not copied whole, see :class:`lossbench.data.h5files.ProcessLocalFiles`), and
  hands them over, pickled, or in shared memory when large (:func:`lossbench.data.h5files.handed_over`:
  a new shared-memory segment per batch was the worker's largest cost);
* :meth:`MRISliceDataset.finish_batch` inverse-FFTs the sampled columns along the readout direction,
  keeps the crop's rows, scatters them into the zero-filled k-space, inverse-FFTs along the phase
  encoding direction, crops, takes the magnitude or RSS and scales the whole batch on the device
  with ``torch.fft`` (training, and the validation set written by
  :func:`lossbench.data.tasks.write_valset` that inference and evaluation read). The two 1-D
  transforms are the zero-filled 2-D inverse FFT, separated: the unsampled columns are zero.

:meth:`MRISliceDataset.reference_pair` keeps the per-sample path through fastMRI's own
``SliceDataset`` and transforms; the tests check that both give equal pairs to float tolerance.

Narrow volumes: brain scans whose k-space has fewer columns W than the crop (fastMRI's "FLAIR 203")
are cropped to W × W, input and target, as fastMRI's ``UnetDataTransform`` does. Volumes of other
layouts (coil count, k-space size, crop) are not padded to a common size: training batches are
*shape-grouped* (:func:`lossbench.core.seeding.group_batches`), each batch holding slices of one k-space
shape, so no padded pixel ever reaches a loss or a metric. With one shape in the data (the synthetic
demo) the batches are exactly consecutive runs of the seeded order.

Training masks are drawn from a per-sample seed given by the caller (see
:class:`lossbench.core.seeding.SeededSampler`), so every sample gets a new mask that does not depend on the
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

from lossbench.data.fastmri_format import RECON_KEYS, crop_side
from lossbench.data.fastmri_ids import slice_id
from lossbench.data.fastmri_volume import check_volume
from lossbench.data.h5files import ProcessLocalFiles, RawBatch, handed_over


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


def _centre_indices(size: int, side: int, device: torch.device) -> torch.Tensor:
    """Indices into an unshifted FFT output of the centre ``side`` entries of its fftshift."""
    # fftshift(y)[j] = y[(j - size // 2) mod size]; the crop starts at (size - side) // 2 as fastMRI's.
    return (torch.arange(side, device=device) + (size - side) // 2 - size // 2) % size


def zero_filled(columns: torch.Tensor, mask: torch.Tensor, side: int) -> torch.Tensor:
    """Zero-filled magnitude images of a batch of slices given by their sampled k-space columns.

    fastMRI's ``ifft2c`` of the masked k-space and its centre crop, in fewer operations: the inverse
    FFT along the rows (readout) runs on the sampled columns only and keeps only the crop's rows,
    which are then scattered into the zero-filled (N, W) columns for the inverse FFT along the
    columns. The ifftshift is a roll of the rows and a shift of the column indices; the fftshift and
    crop are gathers of the crop's indices.

    Args:
        columns: (K, C, H) complex64: the sampled columns of every slice of the batch, slice by
            slice, each slice's in increasing column order (K = mask.sum()), C coils (1 for
            single-coil data), H rows.
        mask: (N, W) bool columns kept of each slice.
        side: Side of the square centre crop, at most H and W.

    Returns:
        (N, 1, side, side) float32: the magnitude (C = 1) or the root-sum-of-squares over coils.
    """
    count, width = mask.shape
    height = columns.shape[-1]
    rows = torch.fft.ifft(torch.roll(columns, -(height // 2), dims=-1), norm="ortho")
    rows = rows.index_select(-1, _centre_indices(height, side, rows.device))
    # (N, W, C, side): the crop's rows of every column, zero where the mask drops the column.
    kspace = rows.new_zeros((count, width) + rows.shape[1:])
    slice_index, column = mask.nonzero(as_tuple=True)
    kspace[slice_index, (column - width // 2) % width] = rows
    image = torch.fft.ifft(kspace, dim=1, norm="ortho").index_select(1, _centre_indices(width, side, rows.device))
    magnitude = image.abs() if image.shape[2] == 1 else image.abs().square().sum(dim=2, keepdim=True).sqrt()
    # (N, W', 1, H') → (N, 1, H', W')
    return magnitude.permute(0, 2, 3, 1).contiguous()


class MRISliceDataset(Dataset):
    """Undersampled fastMRI slices; finished pairs are (input, target), each (1, side, side) float32.

    Items are keyed by ``(index, sample_seed)``; ``sample_seed`` (an integer in [0, 2**32)) fixes the
    training mask. An item is the raw read of a worker: a dict of ``columns`` (K, C, H) complex64,
    the K columns of the slice's (C, H, W) k-space that ``mask`` (W,) bool keeps, ``target``
    (side, side) float32, and the volume's ``max`` as ``scale`` float32, all NumPy values; a batch
    of them (one k-space shape, see :meth:`batch_key`), joined by :meth:`collate`, becomes pairs in
    :meth:`finish_batch`.
    :meth:`validation_item` uses the per-file mask instead. ``side`` is the crop, or W for a
    volume of W < crop k-space columns.

    Args:
        root: Folder of fastMRI ``.h5`` volumes (other entries are ignored). Slices are ordered by
            sorted file name, then slice number, as in ``SliceDataset``.
        challenge: "singlecoil" (target ``reconstruction_esc``) or "multicoil" (``reconstruction_rss``).
        center_fraction: Fraction of low-frequency k-space columns always sampled.
        acceleration: Undersampling factor; the expected fraction of sampled columns is 1/acceleration.
        crop: Side of the square centre crop of input and target.
    """

    def __init__(
        self, root: str | Path, challenge: str, center_fraction: float = 0.04, acceleration: int = 8, crop: int = 320
    ):
        if challenge not in RECON_KEYS:
            raise ValueError(f"unknown MRI challenge {challenge!r}, expected 'singlecoil' or 'multicoil'")
        if not 0 < center_fraction <= 1 / acceleration:
            raise ValueError(
                f"center_fraction {center_fraction} must lie in (0, 1/acceleration = {1 / acceleration:.4g}]"
            )
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(
                f"{root}: MRI data folder not found, expected a folder of fastMRI {challenge} .h5 files"
            )
        files = sorted(path for path in root.iterdir() if path.suffix == ".h5" and path.is_file())
        if not files:
            raise FileNotFoundError(f"{root}: no .h5 files, expected fastMRI {challenge} volumes")
        self.challenge = challenge
        self.recon_key = RECON_KEYS[challenge]
        self.crop = crop
        # The data itself was read by the workflow's check rule; here only the layout is checked.
        self._kspace_shapes = {path.name: check_volume(path, challenge, crop, read_data=False) for path in files}
        # use_dataset_cache stays False so that nothing is written next to the user's data.
        self._slices = _H5SliceDataset(
            root, challenge, transform=None, use_dataset_cache=False, raw_sample_filter=_keep_all
        )
        self.mask_func = RandomMaskFunc(center_fractions=[center_fraction], accelerations=[acceleration])
        self._files = ProcessLocalFiles()

    def __len__(self) -> int:
        return len(self._slices)

    def sample_id(self, index: int) -> str:
        """Identifier ``{file stem}_s{slice:03d}`` of slice ``index``."""
        fname, slice_num, _ = self._slices.raw_samples[index]
        return slice_id(fname.stem, slice_num)

    def batch_key(self, index: int) -> tuple[int, ...]:
        """The k-space shape of slice ``index``'s volume: only slices of one shape are batched together."""
        return self._kspace_shapes[self._slices.raw_samples[index][0].name]

    def side(self, index: int) -> int:
        """Side of slice ``index``'s square crop: the crop, or the k-space width when narrower."""
        return crop_side(self.batch_key(index), self.crop)

    def _seed(self, index: int, sample_seed: int | None) -> int | tuple[int, ...]:
        if sample_seed is None:
            # fastMRI's validation convention: the mask depends on the file name only.
            return tuple(map(ord, self._slices.raw_samples[index][0].name))
        if not 0 <= sample_seed < 2**32:
            raise ValueError(f"sample_seed {sample_seed} must lie in [0, 2**32) for fastMRI's RandomMaskFunc")
        return int(sample_seed)

    def mask_for(self, index: int, sample_seed: int | None = None) -> np.ndarray:
        """The column mask (W,) bool applied to slice ``index``: training mask for ``sample_seed``, or the
        file's validation mask when ``sample_seed`` is None."""
        width = self.batch_key(index)[-1]
        # RandomMaskFunc draws from the column count alone, whatever the other axes of the shape.
        mask, _ = self.mask_func((1, width, 1), None, self._seed(index, sample_seed))
        metadata = self._slices.raw_samples[index][2]
        mask = mask.reshape(-1).numpy().astype(bool)
        mask[: metadata["padding_left"]] = False  # the unacquired edge columns, as apply_mask zeroes them
        mask[metadata["padding_right"] :] = False
        return mask

    def _read(self, index: int, sample_seed: int | None) -> dict[str, np.ndarray]:
        path, slice_num, _ = self._slices.raw_samples[index]
        mask = self.mask_for(index, sample_seed)
        # A view into the file's memory map where it can be (fastMRI's contiguous layout): the
        # gather below then reads only the sampled columns' pages, without copying the whole slice.
        kspace = self._files.read(path, "kspace", slice_num)
        if kspace.ndim == 2:
            kspace = kspace[None]
        side = self.side(index)
        target = self._files.array(path, self.recon_key)
        top, left = (target.shape[-2] - side) // 2, (target.shape[-1] - side) // 2
        return {
            # (K, C, H): each sampled column's coils and rows in one block, as finish_batch scatters them.
            "columns": kspace.transpose(2, 0, 1)[np.flatnonzero(mask)],
            "target": np.array(target[slice_num, top : top + side, left : left + side]),
            "mask": mask,
            "scale": np.float32(self._files.get(path).attrs["max"]),
        }

    def __getitem__(self, key: tuple[int, int]) -> dict[str, np.ndarray]:
        """Raw training read for ``key = (index, sample_seed)`` (see the class docstring)."""
        if not (isinstance(key, tuple) and len(key) == 2):
            raise TypeError(f"MRISliceDataset items are keyed by (index, sample_seed), got {key!r}")
        index, sample_seed = key
        return self._read(index, sample_seed)

    @staticmethod
    def collate(items: list[dict[str, np.ndarray]]) -> RawBatch:
        """Join raw reads of one k-space shape: their ``columns`` end to end (each slice draws its
        own number of columns), the other entries stacked; large entries are written straight into
        shared memory in a DataLoader worker (:func:`lossbench.data.h5files.handed_over`)."""
        return RawBatch(
            {
                key: handed_over([item[key] for item in items], stack=key != "columns")
                for key in ("columns", "target", "mask", "scale")
            }
        )

    @staticmethod
    def finish_batch(
        batch: dict[str, np.ndarray | torch.Tensor], device: torch.device | str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Move a batch of raw reads joined by :meth:`collate` to ``device`` and make its pairs there.

        Returns:
            Zero-filled inputs and targets, each (N, 1, side, side) float32 on ``device``, divided by
            each volume's ``max``.
        """
        columns, mask, target, scale = (
            torch.as_tensor(batch[key]).to(device, non_blocking=True) for key in ("columns", "mask", "target", "scale")
        )
        scale = scale[:, None, None, None]
        return zero_filled(columns, mask, target.shape[-1]) / scale, target[:, None] / scale

    def pair(self, index: int, sample_seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, target) of slice ``index``, each (1, side, side) on the CPU: a batch of one through
        :meth:`finish_batch`; ``sample_seed`` None takes the file's validation mask."""
        masked, target = self.finish_batch(self.collate([self._read(index, sample_seed)]), "cpu")
        return masked[0], target[0]

    def validation_item(self, index: int) -> tuple[str, torch.Tensor, torch.Tensor]:
        """``(sample_id, input, target)`` of slice ``index`` with the file's fixed mask; tensors (1, side, side)."""
        return (self.sample_id(index), *self.pair(index, None))

    def reference_pair(self, index: int, sample_seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair of slice ``index`` made per sample with fastMRI's ``SliceDataset`` and transforms
        (the CPU path :meth:`finish_batch` replaces), each (1, side, side) float32."""
        kspace, _, target, attrs, _, _ = self._slices[index]
        padding = (attrs["padding_left"], attrs["padding_right"])
        masked, _, _ = apply_mask(
            to_tensor(kspace), self.mask_func, seed=self._seed(index, sample_seed), padding=padding
        )
        side = self.side(index)
        image = complex_abs(complex_center_crop(ifft2c(masked), (side, side)))
        if self.challenge == "multicoil":
            image = rss(image, dim=0)
        scale = float(attrs["max"])
        target = center_crop(torch.from_numpy(target), (side, side))
        return (image / scale).unsqueeze(0), (target / scale).unsqueeze(0)
