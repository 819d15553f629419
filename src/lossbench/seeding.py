"""Deterministic seeds derived from (run seed, epoch, position), independent of workers and resumes."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


def derive_seed(*keys: int | str) -> int:
    """A 32-bit seed derived from ``keys``; strings are hashed with CRC32 so ids give stable seeds."""
    entropy = [zlib.crc32(key.encode()) if isinstance(key, str) else int(key) for key in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


class SeededSampler(Sampler):
    """Yields ``(index, sample_seed)`` for one epoch: a seeded permutation, each sample with its own seed.

    Every random choice a dataset makes for a sample (crop, augmentation, noise, MRI mask) is drawn
    from ``sample_seed``, so a sample is the same whichever worker loads it and after a resume.
    """

    def __init__(self, length: int, seed: int, epoch: int):
        self.length = length
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng(derive_seed(self.seed, self.epoch)).permutation(self.length)
        for position, index in enumerate(order):
            yield int(index), derive_seed(self.seed, self.epoch, position)
