"""HDF5 files opened once per process, for the datasets that DataLoader workers read from, and the
hand-over of what a worker read to the training process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import get_worker_info

#: Largest array a DataLoader worker hands over pickled through its pipe; larger ones go through shared
#: memory. A shared-memory tensor costs a new segment, its first-touch page faults (about 1 GB/s here)
#: and the passing of its file descriptor, a round trip to the worker's resource-sharer thread; a
#: pickled array costs memory copies and, past the pipe's 64 KiB, a wake-up of the worker per 64 KiB
#: while the training process reads it. Measured on this 2-core machine under load (bench/dataloader.py
#: ``handover``, two runs): 3 MB of brain k-space columns 2.3-3.5 ms pickled against 3.0-5.5 ms shared,
#: the per-worker brain rate 216 slices/s with this limit against 138/s with 1 MiB; the training
#: process's own wait for such a batch, timed apart, 3-3.8 ms pickled against 1.9-2.1 ms shared. Larger
#: batches (the thesis's 8 brain slices, 25-40 MB) go through shared memory.
PICKLED_HANDOVER_BYTES = 4 * 2**20


class ProcessLocalFiles:
    """Read-only HDF5 handles (files and datasets), opened on first use and kept for the life of the
    process, and one reusable read buffer per array shape.

    Forked DataLoader workers must not share their parent's HDF5 handles, and open handles cannot be
    pickled for "spawn" workers: a pickled copy, or a use from a new process, starts with no handles.

    A dataset stored contiguously and uncompressed (h5py's default layout, and fastMRI's) is read
    through a read-only memory map of its bytes in the file (:meth:`array`): a read then touches only
    the pages it needs and copies nothing, e.g. the sampled k-space columns are gathered straight
    from the page cache instead of after a copy of the whole slice. The map costs one more file
    descriptor per file and process. Other layouts (chunked, compressed) are read through HDF5.
    """

    def __init__(self) -> None:
        self._files: dict[str, h5py.File] = {}
        self._buffers: dict[tuple, np.ndarray] = {}
        self._datasets: dict[tuple[str, str], h5py.Dataset] = {}
        self._arrays: dict[tuple[str, str], np.ndarray | h5py.Dataset] = {}
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_files": {}, "_buffers": {}, "_datasets": {}, "_arrays": {}, "_pid": None}

    def dataset(self, path: str | Path, name: str) -> h5py.Dataset:
        """Dataset ``name`` of ``path``, looked up once per process (a lookup costs as much as a small read)."""
        file = self.get(path)  # first: in a new process it empties the caches
        key = (str(path), name)
        if key not in self._datasets:
            self._datasets[key] = file[name]
        return self._datasets[key]

    def array(self, path: str | Path, name: str) -> np.ndarray | h5py.Dataset:
        """Dataset ``name`` of ``path`` for basic (slice) indexing: a read-only memory map of its bytes
        when it is stored contiguously and uncompressed, else the h5py dataset. Slices of a map are
        views into the file: copy what must outlive it."""
        dataset = self.dataset(path, name)
        key = (str(path), name)
        if key not in self._arrays:
            mapped = _mapped(dataset)
            self._arrays[key] = dataset if mapped is None else mapped
        return self._arrays[key]

    def read(self, path: str | Path, name: str, index: int) -> np.ndarray:
        """Entry ``index`` along the first axis of dataset ``name`` of ``path``: a read-only view into
        the file's memory map (see :meth:`array`), or read through HDF5 into this process's buffer for
        its shape, valid only until the next read of that shape (reading into memory already mapped
        saves the page faults of a fresh array: a brain slice is tens of MB)."""
        array = self.array(path, name)
        if isinstance(array, np.ndarray):
            return array[index]
        dataset = array
        key = (dataset.shape[1:], dataset.dtype.str)
        if key not in self._buffers:
            self._buffers[key] = np.empty(dataset.shape[1:], dataset.dtype)
        dataset.read_direct(self._buffers[key], np.s_[index])
        return self._buffers[key]

    def get(self, path: str | Path) -> h5py.File:
        """``path`` opened read-only, once per process."""
        if self._pid != os.getpid():
            self._files, self._buffers, self._datasets, self._arrays, self._pid = {}, {}, {}, {}, os.getpid()
        key = str(path)
        if key not in self._files:
            self._files[key] = h5py.File(path, "r")
        return self._files[key]


def _mapped(dataset: h5py.Dataset) -> np.memmap | None:
    """A read-only memory map of ``dataset``'s bytes, or None unless it is stored contiguously,
    uncompressed and wholly inside the file (a file cut short would raise SIGBUS when its missing
    pages are read, instead of HDF5's error)."""
    offset = dataset.id.get_offset()  # None unless stored contiguously (chunked, compact or unwritten data)
    if offset is None or dataset.chunks is not None or dataset.external or dataset.dtype.hasobject or dataset.size == 0:
        return None
    filename = dataset.file.filename
    if os.path.getsize(filename) < offset + dataset.nbytes:
        return None
    return np.memmap(filename, dtype=dataset.dtype, mode="r", offset=offset, shape=dataset.shape)


def handed_over(parts: list[np.ndarray], stack: bool) -> np.ndarray | torch.Tensor:
    """``parts`` joined, stacked along a new first axis or (``stack`` False) concatenated along the
    first, as a worker hands the result to the training process: a NumPy array (pickled through the
    worker's pipe; also in the training process itself), or, in a DataLoader worker and over
    :data:`PICKLED_HANDOVER_BYTES`, a tensor written straight into shared memory, which the
    hand-over then does not copy."""
    rows = len(parts) if stack else sum(len(part) for part in parts)
    shape = (rows,) + parts[0].shape[1 - stack :]
    if get_worker_info() is None or rows * int(np.prod(shape[1:])) * parts[0].itemsize <= PICKLED_HANDOVER_BYTES:
        return np.stack(parts) if stack else np.concatenate(parts)
    joined = torch.empty(shape, dtype=torch.from_numpy(np.empty(0, parts[0].dtype)).dtype).share_memory_()
    (np.stack if stack else np.concatenate)(parts, out=joined.numpy())
    return joined


class RawBatch(dict):
    """A batch of raw reads as a dataset's ``collate`` joins them (NumPy arrays or shared-memory
    tensors). DataLoader's pin-memory thread calls :meth:`pin_memory`, which pins the NumPy entries
    too, so that their copy to a GPU can run asynchronously."""

    def pin_memory(self) -> RawBatch:
        return RawBatch({key: torch.as_tensor(value).pin_memory() for key, value in self.items()})
