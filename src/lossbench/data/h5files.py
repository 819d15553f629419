"""HDF5 files opened once per process, for the datasets that DataLoader workers read from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np


class ProcessLocalFiles:
    """Read-only HDF5 handles (files and datasets), opened on first use and kept for the life of the
    process, and one reusable read buffer per array shape.

    Forked DataLoader workers must not share their parent's HDF5 handles, and open handles cannot be
    pickled for "spawn" workers: a pickled copy, or a use from a new process, starts with no handles.
    """

    def __init__(self) -> None:
        self._files: dict[str, h5py.File] = {}
        self._buffers: dict[tuple, np.ndarray] = {}
        self._datasets: dict[tuple[str, str], h5py.Dataset] = {}
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_files": {}, "_buffers": {}, "_datasets": {}, "_pid": None}

    def dataset(self, path: str | Path, name: str) -> h5py.Dataset:
        """Dataset ``name`` of ``path``, looked up once per process (a lookup costs as much as a small read)."""
        file = self.get(path)  # first: in a new process it empties the caches
        key = (str(path), name)
        if key not in self._datasets:
            self._datasets[key] = file[name]
        return self._datasets[key]

    def read(self, path: str | Path, name: str, index: int) -> np.ndarray:
        """Entry ``index`` along the first axis of dataset ``name`` of ``path``, read into this
        process's buffer for its shape: valid only until the next read of that shape. Reading into
        memory already mapped saves the page faults of a fresh array (a brain slice is tens of MB)."""
        dataset = self.dataset(path, name)
        key = (dataset.shape[1:], dataset.dtype.str)
        if key not in self._buffers:
            self._buffers[key] = np.empty(dataset.shape[1:], dataset.dtype)
        dataset.read_direct(self._buffers[key], np.s_[index])
        return self._buffers[key]

    def get(self, path: str | Path) -> h5py.File:
        """``path`` opened read-only, once per process."""
        if self._pid != os.getpid():
            self._files, self._buffers, self._datasets, self._pid = {}, {}, {}, os.getpid()
        key = str(path)
        if key not in self._files:
            self._files[key] = h5py.File(path, "r")
        return self._files[key]
