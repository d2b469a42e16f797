"""Batches for training and testing, reproducible to the image.

Each image's random draws are a function of its seed, made of the run's
seed, the epoch and the image's index (the counter-based ``uniforms`` of
``transforms.py``), and each epoch's order comes from a generator seeded by
the seed and the epoch. So the batches do not depend on
the number of workers, and a resumed run sees exactly the batches the
uninterrupted run would have seen (``start`` skips the batches already done).
"""

from dataclasses import dataclass
from functools import partial

import torch
from torch.utils.data import DataLoader, Sampler

import numpy as np

from .transforms import PaperTransforms

WHOLE = (None, "square", "144")  # Images(whole=...): crops of the stored square, or items of a whole image
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


class _Batches(Sampler):
    def __init__(self, order: EpochOrder, batch_size: int, rank: int, world: int):
        self.order, self.batch_size, self.rank, self.world = order, batch_size, rank, world

    def __iter__(self):
        return self.order.batches(self.batch_size, self.rank, self.world)

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)


class Images(torch.utils.data.Dataset):
    """Decoded, rescaled and transformed images of one split.

    ``crops``: how many crops of the stored square each item is: 0 the
    random training view, 1 or 10 the test crops. ``whole``: items made from
    a whole image instead: ``"square"`` the stored uint8 square itself (for
    views made on the device: dense and multi-crop testing); ``"144"``
    GoogLeNet's 144 test crops of the whole original image (``scales``: its
    four scales). An undecodable image yields ``None`` and its name, for the
    caller to report.
    """

    def __init__(self, split, transforms: PaperTransforms, crops: int = 0, *, whole: str | None = None,
                 scales: list[int] | None = None):
        if whole not in WHOLE:
            raise ValueError(f"whole must be one of {', '.join(map(str, WHOLE))}, not {whole!r}")
        self.split, self.transforms, self.crops, self.whole, self.scales = split, transforms, crops, whole, scales
        if whole == "144" and not hasattr(split, "original"):
            raise ValueError("144-crop testing needs the whole images: give the image folder, not a packed store, as data")
        self.labels = split.labels

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        label = self.labels[index]
        if self.whole == "144":
            img = self.split.original(index)
            return (None, label, self.split.describe(index)) if img is None else (self.transforms.crops144(img, self.scales), label, None)
        img = self.split.read(index, self.transforms.stats.size)
        if img is None:
            return None, label, self.split.describe(index)
        if self.whole == "square":
            return img, label, None
        if self.crops == 0:
            x = self.transforms.train(img, seed)
        else:
            x = self.transforms.test(img, self.crops)
        return x, label, None


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


def collate(samples, crops: int, size: int) -> Batch:
    """One batch of ``Images`` items; an empty one is ``empty_batch(crops, size)``."""
    kept = [(x, y) for x, y, _ in samples if x is not None]
    skipped = [p for x, _, p in samples if x is None]
    if not kept:
        return empty_batch(crops, size, skipped=skipped)
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
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """A DataLoader over ``images`` for one epoch, from batch ``start_batch``;
    with ``world`` > 1, rank ``rank``'s share of each global batch."""
    order = EpochOrder(len(images), shuffle=shuffle, seed=seed, epoch=epoch, start=start_batch * batch_size)
    t = images.transforms  # an empty batch's shape (empty_batch): (crops, side) of its items
    crops, side = {"square": (0, t.stats.size), "144": (36 * len(images.scales or []), t.image_size)}.get(
        images.whole, (images.crops, t.image_size))
    return DataLoader(
        images,
        batch_sampler=_Batches(order, batch_size, rank, world),
        num_workers=workers,
        collate_fn=partial(collate, crops=crops, size=side),
        pin_memory=pin_memory,
        # its own generator, so that making a loader never draws from the
        # global RNG that dropout uses
        generator=torch.Generator(),
        persistent_workers=False,
    )
