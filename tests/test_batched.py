"""The batched (GPU-side) transforms and the resident loader against the
per-image reference, on the CPU, with the same random draws."""

import pytest
import torch

from ilsvrc.data.batched import BatchTransforms
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.loaders import Images, loader
from ilsvrc.data.order import EpochOrder
from ilsvrc.data.resident import ResidentSplit
from ilsvrc.data.stats import compute
from ilsvrc.data.transforms import PaperTransforms

from test_transforms import fake_stats


@pytest.mark.parametrize("mean", ["image", "channel"])
@pytest.mark.parametrize("gather", [True, False], ids=["gpu-gather", "cpu-slices"])
def test_training_views_match_the_reference(mean, gather, monkeypatch):
    ref = PaperTransforms(fake_stats(size=12), 8, mean, flip=True, pca_lighting=0.1)
    batched = BatchTransforms(ref, torch.device("cpu"))
    crop = batched._crop
    monkeypatch.setattr(batched, "_crop", lambda *a: crop(*a[:5], gather=gather))  # the GPU's way, on the CPU
    imgs = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8)
    seeds = list(range(100, 116))
    draws = [ref.draw(s) for s in seeds]
    assert {d.flip for d in draws} == {True, False}
    expected = torch.stack([ref.apply(img, d) for img, d in zip(imgs, draws)])
    torch.testing.assert_close(batched.train(imgs, seeds), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("crops", [1, 10])
@pytest.mark.parametrize("gather", [True, False], ids=["gpu-gather", "cpu-slices"])
def test_test_views_match_the_reference(crops, gather, monkeypatch):
    ref = PaperTransforms(fake_stats(size=13), 8, "image", flip=True, pca_lighting=0.1)  # odd margin: rounding of the centre
    batched = BatchTransforms(ref, torch.device("cpu"))
    crop = batched._crop
    monkeypatch.setattr(batched, "_crop", lambda *a: crop(*a[:5], gather=gather))
    imgs = torch.randint(0, 256, (5, 3, 13, 13), dtype=torch.uint8)
    expected = torch.stack([ref.test(img, crops) for img in imgs])
    torch.testing.assert_close(batched.test(imgs, crops), expected, rtol=0, atol=0)


def test_resident_batches_equal_the_worker_loaders(tiny_data):
    ds = open_dataset(tiny_data)
    st = compute(ds.train, 20, progress=False)
    ref = PaperTransforms(st, 16, "image", True, 0.1)
    resident = ResidentSplit(ds.train, 20, torch.device("cpu"), progress=False)
    a = list(resident.batches(BatchTransforms(ref, torch.device("cpu")), 5, shuffle=True, seed=4, epoch=1, start_batch=1))
    b = list(loader(Images(ds.train, ref), 5, shuffle=True, seed=4, epoch=1, start_batch=1))
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert torch.equal(x.labels, y.labels)
        torch.testing.assert_close(x.images, y.images, rtol=0, atol=1e-4)
    heldout = ResidentSplit(ds.heldout, 20, torch.device("cpu"), progress=False)
    for x, y in zip(heldout.batches(BatchTransforms(ref, torch.device("cpu")), 4, shuffle=False, crops=10),
                    loader(Images(ds.heldout, ref, crops=10), 4, shuffle=False)):
        torch.testing.assert_close(x.images, y.images, rtol=0, atol=0)


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_streamed_batches_equal_the_resident_ones(tiny_data, tmp_path, encoding):
    from ilsvrc.data.store import pack
    from ilsvrc.data.streamed import StreamedSplit

    pack(tiny_data, tmp_path / "store", size=20, encoding=encoding, workers=0, progress=False)
    store = open_dataset(tmp_path / "store")
    st = compute(store.train, 20, progress=False)
    batched = BatchTransforms(PaperTransforms(st, 16, "image", True, 0.1), torch.device("cpu"))
    cpu = torch.device("cpu")
    resident = ResidentSplit(store.train, 20, cpu, progress=False)
    for crops in (0, 10):
        a = list(StreamedSplit(store.train, 20, cpu).batches(batched, 5, shuffle=True, seed=2, epoch=3, crops=crops, rank=1, world=2))
        b = list(resident.batches(batched, 5, shuffle=True, seed=2, epoch=3, crops=crops, rank=1, world=2))
        assert len(a) == len(b) == 5
        for x, y in zip(a, b):
            assert torch.equal(x.labels, y.labels)
            torch.testing.assert_close(x.images, y.images, rtol=0, atol=0)


def _stream(tiny_data, tmp_path, prefetch=1):
    from ilsvrc.data.store import pack
    from ilsvrc.data.streamed import StreamedSplit

    pack(tiny_data, tmp_path / "store", size=20, encoding="raw", workers=0, progress=False)
    store = open_dataset(tmp_path / "store")
    batched = BatchTransforms(PaperTransforms(compute(store.train, 20, progress=False), 16, "image", True, 0.1), torch.device("cpu"))
    return StreamedSplit(store.train, 20, torch.device("cpu"), prefetch=prefetch), batched


def _readers():
    import threading

    from ilsvrc.data.streamed import READER

    return [t for t in threading.enumerate() if t.name.startswith(READER)]


def test_stopping_a_stream_early_ends_its_reader(tiny_data, tmp_path):
    split, batched = _stream(tiny_data, tmp_path)
    batches = split.batches(batched, 2, shuffle=True)
    next(batches)
    assert _readers()
    batches.close()  # what a break out of the training loop does
    for reader in _readers():
        reader.join(timeout=5)
    assert _readers() == []


def test_an_error_in_the_stream_reader_ends_the_stream_with_it(tiny_data, tmp_path):
    import threading

    split, batched = _stream(tiny_data, tmp_path)
    calls = []

    def read(indices):  # the second batch's bytes cannot be read (a disk error, a truncated part)
        calls.append(indices)
        if len(calls) == 2:
            raise OSError("part-00001.bin: Input/output error")
        return type(split)._read(split, indices)

    split._read = read
    seen = []

    def consume():
        try:
            for batch in split.batches(batched, 2, shuffle=True):
                seen.append(batch)
        except OSError as error:
            seen.append(error)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(timeout=30)  # the reader's error used to leave the consumer waiting forever
    assert not consumer.is_alive(), "the stream waits forever after its reader raised"
    assert len(seen) == 2 and isinstance(seen[1], OSError) and "Input/output error" in str(seen[1])


def test_the_stream_reads_ahead_on_several_threads_at_most_prefetch_batches(tiny_data, tmp_path):
    """Reads overlap (a read waits for the others: with one reading thread it
    would wait forever), the batches come in order, and no more than
    ``prefetch`` reads start beyond what the consumer took and the queue holds."""
    import threading

    split, batched = _stream(tiny_data, tmp_path, prefetch=2)
    split.readers = 3
    together = threading.Barrier(3, timeout=20)
    started = []

    def read(indices):
        started.append(indices)
        if len(started) <= 3:
            together.wait()  # the first three reads are under way at once, or this raises BrokenBarrierError
        return type(split)._read(split, indices)

    split._read = read
    batches = split.batches(batched, 2, shuffle=True, seed=3)
    first = next(batches)
    ahead = len(started)
    rest = list(batches)
    order = EpochOrder(len(split), shuffle=True, seed=3, epoch=0)
    assert [i for i, _ in order] == [i for share in started for i in share]  # read in the epoch's order
    assert torch.equal(torch.cat([first.labels, *(b.labels for b in rest)]), split.labels[[i for i, _ in order]])
    assert ahead <= 1 + 2 + 2 + 1  # taken, queued (prefetch), pending (prefetch), and the one being offered


def test_test_batches_hold_a_training_batch_worth_of_pixels():
    from ilsvrc.data.sources import test_batch_size

    assert test_batch_size(128, 224, 1) == 128  # AlexNet: as in training
    assert test_batch_size(128, 224, 10) == 12  # ten crops of 12 images: 120 views
    assert test_batch_size(128, 32, 1) == 4096  # CIFAR-10's test set in three batches
    assert test_batch_size(128, 32, 1, torch.device("cuda")) == 4096  # (a device that need not exist to be named)
    assert test_batch_size(128, 32, 1, torch.device("cpu")) == 128  # a CPU: the training batch, its caches kept
    assert test_batch_size(128, 224, 10, torch.device("cpu")) == 12
    assert test_batch_size(1, 224, 10) == 1
