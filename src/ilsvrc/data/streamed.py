"""Batches decoded on the device from a packed store, for data too large to
keep resident (ImageNet itself).

Background threads (``readers``, 4 by default: reads that miss the page
cache wait on the disk, and several waits overlap) read the stored bytes of
the next batches from the memory-mapped parts while the device works, at
most ``prefetch`` batches ahead, so memory stays bounded whatever the
store's size; each batch's JPEGs are decoded
together by ``torchvision.io.decode_jpeg(..., device=...)`` (nvJPEG on a GPU,
libjpeg-turbo on the CPU) and cropped by ``BatchTransforms``. Order and
random draws are those of the other loaders.
"""

import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as TF

from .batched import BatchTransforms
from .order import Batch, EpochOrder, empty_batch
from .store import PackedSplit

READER = "ilsvrc-stream-reader"  # the reading thread's name


class StreamedSplit:
    """A packed split whose batches are read from disk ahead of use and decoded on ``device`` (``size`` x ``size``)."""

    def __init__(self, split: PackedSplit, size: int, device: torch.device, prefetch: int = 4, readers: int = 4):
        if not isinstance(split, PackedSplit):
            raise ValueError("streaming needs a packed store (ilsvrc pack)")
        self.split, self.size, self.device, self.prefetch, self.readers = split, size, device, prefetch, readers
        self.labels = torch.tensor(split.labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.split)

    def _read(self, indices: list[int]) -> list[torch.Tensor]:
        return [torch.from_numpy(np.array(self.split.encoded(i))) for i in indices]

    def _decode(self, encoded: list[torch.Tensor]) -> torch.Tensor:
        """(B, 3, size, size) uint8 on the device."""
        stored = self.split.size
        if self.split.encoding == "raw":
            imgs = torch.stack(encoded).view(-1, 3, stored, stored).to(self.device, non_blocking=True)
        else:
            imgs = torch.stack(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device))
        if stored != self.size:
            imgs = TF.center_crop(TF.resize(imgs, [self.size], antialias=True), [self.size, self.size])
        return imgs

    def batches(self, transforms: BatchTransforms, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                start_batch: int = 0, crops: int = 0, rank: int = 0, world: int = 1):
        order = EpochOrder(len(self), shuffle=shuffle, seed=seed, epoch=epoch, start=start_batch * batch_size)
        shares = list(order.batches(batch_size, rank, world))
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        done = threading.Event()  # set when the consumer stops early

        def offer(item) -> bool:
            """Put ``item`` in the queue unless the consumer has stopped."""
            while not done.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    pass
            return False

        def reader():  # host side: bytes of the next batches, ahead of the device, in order
            try:
                with ThreadPoolExecutor(self.readers, thread_name_prefix=READER) as pool:
                    pending = deque()  # (share, its read under way): at most ``prefetch`` beyond the queue's
                    for share in [*shares, None]:
                        if share is not None:
                            pending.append((share, pool.submit(self._read, [i for i, _ in share])))
                        while pending and (share is None or len(pending) > self.prefetch):
                            first, read = pending.popleft()
                            if not offer((first, read.result())):
                                for _, rest in pending:
                                    rest.cancel()
                                return
            except BaseException as error:  # the consumer raises it: a reader that dies silently would leave it waiting
                offer(error)
                return
            offer(None)

        threading.Thread(target=reader, name=READER, daemon=True).start()
        try:
            yield from self._consume(ready, transforms, crops)
        finally:
            done.set()

    def _consume(self, ready: queue.Queue, transforms: BatchTransforms, crops: int):
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            share, encoded = item
            if not share:
                yield empty_batch(crops, transforms.size, self.device)
                continue
            imgs = self._decode(encoded)
            labels = self.labels[[i for i, _ in share]].to(self.device, non_blocking=True)
            if crops == 0:
                x = transforms.train(imgs, [seed for _, seed in share])
            else:
                x = transforms.test(imgs, crops)
            yield Batch(x, labels, [])
