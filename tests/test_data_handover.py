"""Reads through memory maps of contiguous HDF5 datasets, and the hand-over of batches from DataLoader workers."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from lossbench.core.seeding import SeededSampler, group_batches
from lossbench.data import fastmri_synthetic as synthetic
from lossbench.data import h5files
from lossbench.data.h5files import ProcessLocalFiles, RawBatch, handed_over
from lossbench.data.mri import MRISliceDataset


@pytest.mark.parametrize("userblock", [0, 4096])  # a user block shifts every offset in the file
def test_contiguous_datasets_are_memory_mapped_and_other_layouts_read_through_hdf5(tmp_path, userblock):
    values = np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5)
    path = tmp_path / "a.h5"
    with h5py.File(path, "w", userblock_size=userblock) as file:
        file.create_dataset("plain", data=values)
        file.create_dataset("packed", data=values, chunks=(1, 6, 5), compression="gzip")
    files = ProcessLocalFiles()
    assert isinstance(files.array(path, "plain"), np.memmap)
    assert isinstance(files.array(path, "packed"), h5py.Dataset)
    for name in ("plain", "packed"):
        assert np.array_equal(files.read(path, name, 2), values[2])
        assert np.array_equal(files.array(path, name)[1, 2:4, 1:3], values[1, 2:4, 1:3])


def test_data_reaching_past_the_end_of_the_file_are_not_mapped(tmp_path, monkeypatch):
    # HDF5 refuses to open a file cut short; one cut after it was opened would raise SIGBUS through
    # a map, so the map is made only when the file holds all of the data (seen here as shorter).
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("plain", data=np.ones((16, 16), np.float32))
    size = path.stat().st_size
    monkeypatch.setattr(h5files.os.path, "getsize", lambda name: size - 4)
    assert isinstance(ProcessLocalFiles().array(path, "plain"), h5py.Dataset)


def test_mri_items_are_the_same_from_a_chunked_compressed_copy_of_the_volume(tmp_path):
    # Real fastMRI files are contiguous (memory-mapped); any other layout is read through HDF5 alike.
    source = tmp_path / "contiguous"
    synthetic.generate_dataset(source, "multicoil", n_volumes=1, n_slices=2, seed=0, n_coils=3)
    packed = tmp_path / "packed"
    shutil.copytree(source, packed)
    for path in packed.glob("*.h5"):
        with h5py.File(path, "r+") as file:
            for name in ("kspace", "reconstruction_rss"):
                data = file[name][()]
                del file[name]
                file.create_dataset(name, data=data, chunks=(1,) + data.shape[1:], compression="gzip")
    mapped, read = (MRISliceDataset(folder, "multicoil", crop=96) for folder in (source, packed))
    for key in ((0, 7), (1, 8)):
        a, b = mapped[key], read[key]
        assert a.keys() == b.keys() and all(np.array_equal(a[name], b[name]) for name in a)
    assert isinstance(mapped._files.array(sorted(source.glob("*.h5"))[0], "kspace"), np.memmap)


class _Arrays(Dataset):
    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> np.ndarray:
        return np.full((self.size,), index, np.float32)


def _join(items: list[np.ndarray]) -> RawBatch:
    return RawBatch(values=handed_over(items, stack=True), joined=handed_over(items, stack=False))


@pytest.mark.parametrize("size, shared", [(10, False), (4096, True)])
def test_a_worker_pickles_small_batches_and_writes_large_ones_into_shared_memory(monkeypatch, size, shared):
    monkeypatch.setattr(h5files, "PICKLED_HANDOVER_BYTES", 4 * 1000 * 4)  # forked workers inherit it
    batch = next(iter(DataLoader(_Arrays(size), batch_size=2, num_workers=1, collate_fn=_join)))
    expected = np.repeat(np.arange(2, dtype=np.float32)[:, None], size, axis=1)
    for value, want in ((batch["values"], expected), (batch["joined"], expected.reshape(-1))):
        assert isinstance(value, torch.Tensor if shared else np.ndarray)
        assert not shared or value.is_shared()
        assert np.array_equal(np.asarray(value), want)
    # In the training process itself nothing is shared: the batch stays NumPy.
    assert isinstance(_join([np.zeros(4096, np.float32)] * 2)["values"], np.ndarray)


def test_mri_batches_from_a_worker_equal_those_made_in_process(monkeypatch, tmp_path):
    synthetic.generate_dataset(tmp_path, "multicoil", n_volumes=2, n_slices=2, seed=0, n_coils=3)
    dataset = MRISliceDataset(tmp_path, "multicoil", crop=96)
    batches = group_batches(list(SeededSampler(len(dataset), seed=0, epoch=0)), dataset.batch_key, 2)
    for limit in (h5files.PICKLED_HANDOVER_BYTES, 0):  # pickled, and every entry through shared memory
        monkeypatch.setattr(h5files, "PICKLED_HANDOVER_BYTES", limit)
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=1, collate_fn=dataset.collate)
        for raw, keys in zip(loader, batches):
            expected = dataset.finish_batch(dataset.collate([dataset[key] for key in keys]), "cpu")
            assert all(torch.equal(a, b) for a, b in zip(dataset.finish_batch(raw, "cpu"), expected))
