"""The order of an epoch and the batch every loader yields.

Each image's random draws are a function of its seed, made of the run's
seed, the epoch and the image's index (the counter-based ``uniforms`` of
``transforms.py``), and each epoch's order comes from a generator seeded by
the seed and the epoch. So the batches do not depend on the loader or the
number of workers, and a resumed run sees exactly the batches the
uninterrupted run would have seen (``start`` skips the batches already done).
The three loaders (``loaders.py``, ``resident.py``, ``streamed.py``) draw
their order here and yield ``Batch``es.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Sampler

_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def seed_for(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one (run seed, epoch, image) triple."""
    return (seed * _MIX[0] + (epoch + 1) * _MIX[1] + (index + 1) * _MIX[2]) % (1 << 63)


class EpochOrder(Sampler):
    """Yields ``(index, sample_seed)`` for one epoch, from position ``start``."""

    def __init__(self, n: int, *, shuffle: bool, seed: int = 0, epoch: int = 0, start: int = 0):
        self.n, self.shuffle, self.seed, self.epoch, self.start = n, shuffle, seed, epoch, start

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(seed_for(self.seed, self.epoch, -1))
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self):
        for index in self.order()[self.start :]:
            yield index, seed_for(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return max(self.n - self.start, 0)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The same ``(index, sample_seed)`` pairs as two int64 tensors, the
        seeds computed for the whole epoch at once (``seed_for`` in uint64
        arithmetic, which wraps modulo 2**64 and so keeps the low 63 bits)."""
        index = np.asarray(self.order()[self.start :], dtype=np.uint64)
        base = np.uint64((self.seed * _MIX[0] + (self.epoch + 1) * _MIX[1]) % (1 << 63))
        with np.errstate(over="ignore"):
            seeds = (base + (index + np.uint64(1)) * np.uint64(_MIX[2])) & np.uint64((1 << 63) - 1)
        return torch.from_numpy(index.astype(np.int64)), torch.from_numpy(seeds.astype(np.int64))

    def batches(self, batch_size: int, rank: int = 0, world: int = 1):
        """Global batches of ``batch_size``; each rank gets every world-th item of each."""
        items = list(self)
        for b in range(0, len(items), batch_size):
            yield items[b : b + batch_size][rank::world]



@dataclass
class Batch:
    """Views, labels and the files left out, from any of the three sources (``sources.py``)."""

    images: torch.Tensor  # (B, 3, S, S) for training, (B, crops, 3, S, S) for testing
    labels: torch.Tensor  # (B,)
    skipped: list[str]  # files in this batch that could not be decoded


def empty_batch(crops: int, size: int, device: torch.device | None = None, skipped: list[str] | None = None) -> Batch:
    """A batch of no images (all of its images failed to decode, or a rank's
    share is empty) that still has its images' shape: (0, 3, size, size) for
    training views (``crops`` 0), (0, crops, 3, size, size) for test views."""
    shape = (0, 3, size, size) if crops == 0 else (0, crops, 3, size, size)
    return Batch(torch.empty(shape, device=device), torch.empty(0, dtype=torch.long, device=device), skipped or [])
