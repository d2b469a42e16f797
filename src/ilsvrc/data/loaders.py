"""Batches for training and testing, reproducible to the image.

Each image's random draws come from its own generator, seeded by the run's
seed, the epoch and the image's index, and each epoch's order from a
generator seeded by the seed and the epoch. So the batches do not depend on
the number of workers, and a resumed run sees exactly the batches the
uninterrupted run would have seen (``start`` skips the batches already done).
"""

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Sampler

from .folders import decode_rgb
from .transforms import PaperTransforms, rescale

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


class Images(torch.utils.data.Dataset):
    """Decoded, rescaled and transformed images of one split.

    ``crops=0`` gives the random training view; 1 or 10 the test views.
    An undecodable file yields ``None`` and its path, for the caller to report.
    """

    def __init__(self, items: list[tuple[str, int]], transforms: PaperTransforms, crops: int = 0):
        self.items, self.transforms, self.crops = items, transforms, crops

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        path, label = self.items[index]
        img = decode_rgb(path)
        if img is None:
            return None, label, path
        img = rescale(img, self.transforms.stats.size)
        if self.crops == 0:
            x = self.transforms.train(img, torch.Generator().manual_seed(seed))
        else:
            x = self.transforms.test(img, self.crops)
        return x, label, path


@dataclass
class Batch:
    images: torch.Tensor  # (B, 3, S, S) for training, (B, crops, 3, S, S) for testing
    labels: torch.Tensor  # (B,)
    skipped: list[str]  # files in this batch that could not be decoded


def collate(samples) -> Batch:
    kept = [(x, y) for x, y, _ in samples if x is not None]
    skipped = [p for x, _, p in samples if x is None]
    if not kept:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), skipped)
    return Batch(torch.stack([x for x, _ in kept]), torch.tensor([y for _, y in kept]), skipped)


def loader(
    images: Images,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    start_batch: int = 0,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over ``images`` for one epoch, from batch ``start_batch``."""
    order = EpochOrder(len(images), shuffle=shuffle, seed=seed, epoch=epoch, start=start_batch * batch_size)
    return DataLoader(
        images,
        batch_size=batch_size,
        sampler=order,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        # its own generator, so that making a loader never draws from the
        # global RNG that dropout uses
        generator=torch.Generator(),
        persistent_workers=False,
    )
