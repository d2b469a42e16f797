"""Where a run's batches come from: one choice, three ways, the same batches.

- ``resident``: each split decoded once and kept on the device as uint8;
  crops, flips and lighting on whole batches there (``resident.py``).
- ``stream``: a packed store's JPEGs decoded batch by batch on the device
  (``streamed.py``), for data too large to keep resident.
- ``workers``: every image decoded and transformed on the CPU in loader
  worker processes, every epoch (``loaders.py``): the CPU path and fallback.

``auto`` takes resident when the data fits in the device's memory, else
stream for a packed store on a GPU, else workers.
"""

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from .batched import BatchTransforms
from .loaders import Images, loader
from .resident import ResidentFeed, fits, nbytes, shared
from .store import PackedSplit
from .streamed import StreamedSplit
from .transforms import PaperTransforms

KINDS = ("auto", "resident", "stream", "workers")
REFERENCE_SIDE = 224  # test batches hold as many pixels as a training batch of 224x224 images
MAX_TEST_BATCH = 4096  # images


def test_batch_size(batch_size: int, image_size: int, crops: int, device: torch.device | None = None) -> int:
    """Images per test batch: on a GPU the training batch's pixels at
    224x224, over the crops per image: 128 for AlexNet's centre crop, 12 for
    its ten crops, 4096 for CIFAR's 32x32 images (the test set in three
    batches). On a CPU, the training batch over the crops: there a larger
    batch only spills the caches (measured 2026-12-06, resnet-56 at 32 px,
    one core: 56 images/s in batches of 1024, 112 of 256, 148 of 64)."""
    cpu = device is not None and device.type == "cpu"
    scale = 1 if cpu else max(1, (REFERENCE_SIDE // image_size) ** 2)
    return max(1, min(MAX_TEST_BATCH, batch_size * scale // crops))


@dataclass
class Source:
    """Where a run's batches come from (``kind``), as makers of each epoch's training and test batches."""

    kind: str
    train: Callable[[int, int], Iterable]  # (epoch, start_batch) -> training batches
    test: Callable[[], Iterable]  # () -> test batches
    feed: ResidentFeed | None = None  # training batches made inside the step, where the data allows (resident.py)
    why: str = ""  # why this kind, for the plan line (``reason``)


def choose(kind: str, dataset, size: int, device: torch.device) -> str:
    resident = kind == "auto" and fits(dataset.train, size, device) and fits(dataset.heldout, size, device, 0.25)
    return _choice(kind, dataset.train, device, resident)


def _choice(kind: str, split, device: torch.device, resident_fits: bool) -> str:
    """``kind``, or for "auto": resident where it fits, else streamed from a
    packed store on a GPU, else loader workers."""
    if kind != "auto":
        return kind
    if resident_fits:
        return "resident"
    if isinstance(split, PackedSplit) and device.type == "cuda":
        return "stream"
    return "workers"


def reason(asked: str, kind: str, split, size: int, device: torch.device, workers: int) -> str:
    """Why "auto" chose a kind other than resident for ``split``, and where a
    faster way exists, what gives it: the plan line's words (train.py). ""
    for resident batches (the fast way) and for a kind the user asked for."""
    if asked != "auto" or kind == "resident":
        return ""
    gib = f"{nbytes(split, size) / 2**30:.1f} GiB at {size}x{size}"
    if kind == "stream":
        return f"too large to keep in GPU memory ({gib}): read from the packed store, decoded on the GPU"
    if device.type == "cuda":
        return (f"too large to keep in GPU memory ({gib}) and not a packed store: {workers} CPU workers decode"
                " every image every epoch; `ilsvrc pack` once lets it stream, decoded on the GPU")
    return f"too large to keep in memory ({gib}): {workers} CPU workers decode every image every epoch"


def expected_rate(images: Images, workers: int, n: int = 8) -> str:
    """The plan line's words for the rate ``workers`` loader processes can
    give: ``n`` training images, spread over the split, made here on one core
    as a worker makes them (read, decoded, rescaled, cropped), times the
    workers (one when 0: the main process makes them). An estimate: it counts
    neither the cores the step itself takes nor the page cache."""
    picks = sorted({round(i * (len(images) - 1) / max(n - 1, 1)) for i in range(min(n, len(images)))})
    start = time.perf_counter()
    for i in picks:
        images[i, i]  # (index, seed)
    each = (time.perf_counter() - start) / max(len(picks), 1)
    return (f", at most about {max(workers, 1) / max(each, 1e-9):,.0f} images/s"
            f" ({len(picks)} images made here at {1000 * each:.1f} ms each on one core)")


def source(kind: str, dataset, transforms: PaperTransforms, device: torch.device, batch_size: int, *, seed: int,
           test_crops: int, workers: int, progress: bool, rank: int = 0, world: int = 1) -> Source:
    """Batch makers for training (shuffled by epoch) and testing (in order)."""
    size = transforms.stats.size
    asked, kind = kind, choose(kind, dataset, size, device)
    why = reason(asked, kind, dataset.train, size, device, workers)
    test_batch = test_batch_size(batch_size, transforms.image_size, test_crops, device)
    shard = dict(rank=rank, world=world)
    test = _tests(kind, dataset.heldout, transforms, device, test_batch, test_crops, workers, progress, shard)
    if kind == "workers":
        train_images = Images(dataset.train, transforms)
        if why:
            why += expected_rate(train_images, workers)
        return Source(kind, lambda epoch, start: loader(train_images, batch_size, shuffle=True, seed=seed, epoch=epoch,
                                                        start_batch=start, workers=workers,
                                                        pin_memory=device.type == "cuda", **shard), test, why=why)
    train_split = _on_device(kind, dataset.train, size, device, workers, progress)
    batched = BatchTransforms(transforms, device)
    feed = None
    if kind == "resident" and world == 1 and all(train_split.valid) and batched.fixed_windows:
        feed = ResidentFeed(train_split, batched, batch_size, seed)
    return Source(
        kind,
        lambda epoch, start: train_split.batches(batched, batch_size, shuffle=True, seed=seed, epoch=epoch,
                                                 start_batch=start, **shard),
        test,
        feed,
        why,
    )


def test_source(kind: str, split, transforms: PaperTransforms, device: torch.device, batch_size: int, *, crops: int,
                workers: int, progress: bool) -> tuple[str, Callable[[], Iterable]]:
    """The kind chosen and the batch maker for testing ``split`` alone (``ilsvrc
    eval``): the same three ways, and the same batches, as training validates."""
    kind = _choice(kind, split, device, kind == "auto" and fits(split, transforms.stats.size, device))
    return kind, _tests(kind, split, transforms, device, batch_size, crops, workers, progress, {})


def _on_device(kind: str, split, size: int, device: torch.device, workers: int, progress: bool):
    """``split`` resident on the device, or streamed from its packed store."""
    if kind == "resident":
        return shared(split, size, device, workers, progress)
    if kind == "stream":
        if not isinstance(split, PackedSplit):
            raise ValueError("--loader stream needs a packed store as --data (ilsvrc pack)")
        return StreamedSplit(split, size, device)
    raise ValueError(f"--loader must be one of {', '.join(KINDS)}, not {kind!r}")


def _tests(kind: str, split, transforms: PaperTransforms, device: torch.device, batch_size: int, crops: int,
           workers: int, progress: bool, shard: dict) -> Callable[[], Iterable]:
    """A maker of ``split``'s test batches, in order, the ``kind`` way."""
    if kind == "workers":
        images = Images(split, transforms, crops=crops)
        return lambda: loader(images, batch_size, shuffle=False, workers=workers, pin_memory=device.type == "cuda", **shard)
    on_device, batched = _on_device(kind, split, transforms.stats.size, device, workers, progress), BatchTransforms(transforms, device)
    return lambda: on_device.batches(batched, batch_size, shuffle=False, crops=crops, **shard)
