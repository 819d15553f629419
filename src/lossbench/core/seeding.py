"""Deterministic seeds derived from (run seed, epoch, position), independent of workers and resumes."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable, Iterator

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


def group_batches(
    samples: list[tuple[int, int]], key: Callable[[int], Hashable], batch_size: int
) -> list[list[tuple[int, int]]]:
    """Split an epoch's ``(index, sample_seed)`` order into batches whose samples share ``key(index)``.

    Each key collects its samples in order; a batch is emitted when it holds ``batch_size`` of them,
    and the unfilled rest of every key at the end, in the order the keys first appeared. So the
    batches depend on the order alone (a resumed epoch skips the same ones), and with a single key
    they are the consecutive runs of ``batch_size`` a plain DataLoader makes.

    Args:
        samples: The epoch's order, e.g. ``list(SeededSampler(...))``.
        key: Batch key of a dataset index, e.g. the k-space shape of its volume.
        batch_size: Largest batch.
    """
    batches: list[list[tuple[int, int]]] = []
    open_batches: dict[Hashable, list[tuple[int, int]]] = {}
    for sample in samples:
        batch = open_batches.setdefault(key(sample[0]), [])
        batch.append(sample)
        if len(batch) == batch_size:
            batches.append(batch)
            open_batches[key(sample[0])] = []
    return batches + [batch for batch in open_batches.values() if batch]
