"""Batches made by loader workers on the CPU, one image at a time (the
third source of ``sources.py``, and the views of whole images that only
the CPU path cuts): in ``order.py``'s order, with its seeds.
"""

from functools import partial

import torch
from torch.utils.data import DataLoader, Sampler

from .order import Batch, EpochOrder, empty_batch
from .transforms import PaperTransforms

WHOLE = (None, "square", "144")  # Images(whole=...): crops of the stored square, or items of a whole image
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
