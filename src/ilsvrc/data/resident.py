"""A whole split decoded once and kept on the device as uint8.

Where a split fits in memory (CIFAR-10: 184 MB; Imagenette at 256x256:
about 2.6 GB), decoding it once and cropping whole batches on the device
replaces the per-image decode and transform of every epoch. Batches come in
the same order and with the same random draws as the worker loader's
(``loaders.EpochOrder`` and the per-image seeds), so both paths train alike.
"""

import weakref

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .batched import BatchTransforms
from .folders import Rescaled
from .images import warn_skipped
from .order import Batch, EpochOrder, empty_batch
from .store import PackedSplit


def nbytes(split, size: int) -> int:
    """Bytes a split takes when resident as uint8 ``size x size`` images."""
    return len(split) * 3 * size * size


def fits(split, size: int, device: torch.device, fraction: float = 0.5) -> bool:
    """Whether the split takes at most ``fraction`` of the device's free memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        import os

        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return nbytes(split, size) <= fraction * free


class ResidentSplit:
    """The images of ``split`` as one uint8 tensor ``(N, 3, size, size)`` on ``device``."""

    def __init__(self, split, size: int, device: torch.device, workers: int = 0, progress: bool = True):
        self.split, self.device = split, device
        self.images = torch.empty(len(split), 3, size, size, dtype=torch.uint8, device=device)
        self.labels = torch.tensor(split.labels, dtype=torch.long, device=device)
        self.skipped, self.valid = [], []
        if isinstance(split, PackedSplit) and split.encoding == "raw" and split.size == size:
            # the pixels as stored: copied part by part, not read image by image (CIFAR-10's 50,000:
            # 45-55 s through the loader, measured 2026-12-06 on 2 cores)
            for start, pixels in split.raw_parts():
                self.images[start : start + len(pixels)].copy_(torch.from_numpy(np.array(pixels)))
            self.valid = [True] * len(split)
            return
        loader = DataLoader(Rescaled(split, size), batch_size=None, num_workers=workers, generator=torch.Generator())
        for i, (img, name) in enumerate(tqdm(loader, desc=f"load {split.name}", unit="img", disable=not progress, leave=False)):
            self.valid.append(img is not None)
            if img is None:
                self.skipped.append(name)
            else:
                self.images[i].copy_(img)
        warn_skipped(self.skipped)

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, transforms: BatchTransforms, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                start_batch: int = 0, crops: int = 0, rank: int = 0, world: int = 1):
        """Batches of one epoch from ``start_batch``: training views (crops=0)
        or test views; with ``world`` > 1, rank ``rank``'s share of each."""
        order = EpochOrder(len(self), shuffle=shuffle, seed=seed, epoch=epoch, start=start_batch * batch_size)
        # the epoch's order and seeds go to the device once: no host work per batch
        indices, seeds = (t.to(self.device) for t in order.tensors())
        valid = None if all(self.valid) else torch.tensor(self.valid, device=self.device)
        for b in range(0, len(indices), batch_size):
            idx, sd = indices[b : b + batch_size][rank::world], seeds[b : b + batch_size][rank::world]
            if valid is not None:  # leave out the images that did not decode
                keep = valid[idx]
                idx, sd = idx[keep], sd[keep]
            if not len(idx):
                yield empty_batch(crops, transforms.size, self.device)
                continue
            imgs = self.images[idx]
            x = transforms.train(imgs, sd) if crops == 0 else transforms.test(imgs, crops)
            yield Batch(x, self.labels[idx], [])


_SHARED = weakref.WeakValueDictionary()  # the resident splits in use, by what they hold


def shared(split, size: int, device: torch.device, workers: int = 0, progress: bool = True) -> ResidentSplit:
    """``split`` resident on ``device``, decoded once for all the runs of this
    process that use it at the same time (``together.py``: eight CIFAR-10
    runs hold one copy, decoded once); freed when the last of them ends."""
    key = (split.fingerprint(), size, str(device))
    found = _SHARED.get(key)
    if found is None:
        found = _SHARED[key] = ResidentSplit(split, size, device, workers, progress)
    return found


class ResidentFeed:
    """The training batches of a resident split, made inside the training step.

    At an epoch's start (``start``) the epoch's order and every image's
    draws (window, reflection, lighting offset) are computed in one go on
    the device and written into tables that keep their addresses from epoch
    to epoch; ``batch(n)``, traced into the compiled step
    (``step.WholeStep``), takes the next ``n`` rows of the tables at a step
    counter held on the device, gathers and crops those images and advances
    the counter. So a step needs nothing from the host: the same batches and
    draws as ``ResidentSplit.batches`` (the same order, seeds and formulas),
    with no kernel outside the step's graph. It serves splits whose images
    all decoded and transforms with fixed-size windows
    (``BatchTransforms.fixed_windows``); the others take their batches from
    ``ResidentSplit.batches``.
    """

    def __init__(self, split: ResidentSplit, transforms: BatchTransforms, batch_size: int, seed: int):
        if not all(split.valid) or not transforms.fixed_windows:
            raise ValueError("the feed needs a split whose images all decoded and fixed-size windows")
        self.split, self.transforms, self.batch_size, self.seed = split, transforms, batch_size, seed
        n, dev = len(split), split.device
        self.index = torch.zeros(n, dtype=torch.long, device=dev)
        self.tops = torch.zeros(n, dtype=torch.long, device=dev)
        self.lefts = torch.zeros(n, dtype=torch.long, device=dev)
        self.flips = torch.zeros(n, dtype=torch.bool, device=dev)
        self.offsets = torch.zeros(n, 3, dtype=torch.float32, device=dev)
        self.counter = torch.zeros((), dtype=torch.long, device=dev)  # the epoch's next batch
        self.ramp = torch.arange(batch_size, device=dev)

    def size(self, b: int) -> int:
        """Images in batch ``b`` of an epoch."""
        return min(self.batch_size, len(self.split) - b * self.batch_size)

    def start(self, epoch: int, start_batch: int = 0) -> None:
        """Make epoch ``epoch``'s tables; the next batch is ``start_batch``."""
        order = EpochOrder(len(self.split), shuffle=True, seed=self.seed, epoch=epoch)
        index, seeds = (t.to(self.split.device) for t in order.tensors())
        self.index.copy_(index)
        for table, value in zip((self.tops, self.lefts, self.flips, self.offsets), self.transforms.draws(seeds)):
            table.copy_(value)
        self.counter.fill_(start_batch)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(views, labels) of the next ``n`` images; advances the counter."""
        rows = self.counter * self.batch_size + self.ramp[:n]
        idx = self.index[rows]
        x = self.transforms.views(self.split.images[idx], self.tops[rows], self.lefts[rows], self.flips[rows],
                                  self.offsets[rows], gather=True)
        self.counter += 1
        return x, self.split.labels[idx]
