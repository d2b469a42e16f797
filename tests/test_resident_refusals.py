"""The resident loader (data/resident.py) with an image that does not decode,
and what data/sources.py refuses or falls back from: an undecodable file is
warned about once and left out, the rest loads, and every label stays with
its image; the one-graph feed refuses such a split and the batches come the
ordinary way; "auto" keeps a split resident only within its share of the
free memory, else falls back (workers, or the stream on a GPU)."""

import os

import pytest
import torch

from ilsvrc import UserError, train
from ilsvrc.data.batched import BatchTransforms
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.images import SkippedImageWarning
from ilsvrc.data.loaders import Images, loader
from ilsvrc.data.resident import ResidentFeed, ResidentSplit, fits, nbytes
from ilsvrc.data.sources import _choice, choose, source
from ilsvrc.data.transforms import PaperTransforms

from conftest import make_images
from test_transforms import fake_stats

CPU = torch.device("cpu")
SIZE = 16  # the stored square


@pytest.fixture
def broken(tmp_path):
    """Two classes of three training images, and in the middle of class1 a
    file that no decoder reads (sorted between img0000 and img0001)."""
    make_images(tmp_path, 2, 3, size=(20, 24), split="train")
    make_images(tmp_path, 2, 2, size=(20, 24), split="val")
    bad = tmp_path / "train" / "class1" / "img0000a.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ds = open_dataset(tmp_path)
    assert [p for p, _ in ds.train.items].index(str(bad)) == 4  # the fifth of seven images
    return ds, str(bad)


def test_an_undecodable_image_is_warned_about_and_left_out_with_labels_aligned(broken):
    ds, bad = broken
    with pytest.warns(SkippedImageWarning, match="img0000a.jpg"):
        split = ResidentSplit(ds.train, SIZE, CPU, progress=False)
    assert split.skipped == [bad] and split.valid == [True] * 4 + [False] + [True] * 2
    for i in (0, 1, 2, 3, 5, 6):  # the others loaded, each in its own row
        assert torch.equal(split.images[i], ds.train.read(i, SIZE)), i
    batched = BatchTransforms(PaperTransforms(fake_stats(SIZE), 12, "image", True, 0.1), CPU)
    # test views in order: every image but the bad one, each with its own label
    got = list(split.batches(batched, 3, shuffle=False, crops=1))
    assert [len(b.labels) for b in got] == [3, 2, 1]  # the second batch lost the bad image
    keep = [i for i in range(7) if i != 4]
    assert torch.cat([b.labels for b in got]).tolist() == [ds.train.labels[i] for i in keep]
    expected = torch.stack([batched.reference.test(ds.train.read(i, SIZE), 1) for i in keep])
    torch.testing.assert_close(torch.cat([b.images for b in got]), expected, rtol=0, atol=0)
    # training views, shuffled: the same batches as the worker loader's, which skips the file too
    a = list(split.batches(batched, 3, shuffle=True, seed=5, epoch=2))
    b = list(loader(Images(ds.train, batched.reference), 3, shuffle=True, seed=5, epoch=2))
    assert sum(len(x.labels) for x in a) == 6 and len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x.labels, y.labels)
        torch.testing.assert_close(x.images, y.images, rtol=0, atol=1e-4)


def test_a_batch_of_only_undecodable_images_is_empty_but_shaped(broken):
    ds, _ = broken
    with pytest.warns(SkippedImageWarning):
        split = ResidentSplit(ds.train, SIZE, CPU, progress=False)
    batched = BatchTransforms(PaperTransforms(fake_stats(SIZE), 12, "image", True, 0.1), CPU)
    for crops, shape in ((0, (0, 3, 12, 12)), (10, (0, 10, 3, 12, 12))):
        got = list(split.batches(batched, 1, shuffle=False, crops=crops))
        assert [len(b.labels) for b in got] == [1, 1, 1, 1, 0, 1, 1]
        assert tuple(got[4].images.shape) == shape and got[4].labels.dtype == torch.long


def test_the_one_graph_feed_refuses_such_a_split_and_batches_come_the_ordinary_way(broken, tiny_data):
    ds, _ = broken
    transforms = PaperTransforms(fake_stats(SIZE), 12, "image", True, 0.1)
    with pytest.warns(SkippedImageWarning):
        split = ResidentSplit(ds.train, SIZE, CPU, progress=False)
    with pytest.raises(ValueError, match="images all decoded"):
        ResidentFeed(split, BatchTransforms(transforms, CPU), 3, seed=0)
    made = source("resident", ds, transforms, CPU, 3, seed=0, test_crops=1, workers=0, progress=False)  # (warned once)
    assert made.kind == "resident" and made.feed is None
    assert sum(len(b.labels) for b in made.train(0, 0)) == 6
    clean = open_dataset(tiny_data)  # the same call on a split that decoded whole gets its feed
    st = fake_stats(SIZE)
    made = source("resident", clean, PaperTransforms(st, 12, "image", True, 0.1), CPU, 3, seed=0, test_crops=1,
                  workers=0, progress=False)
    assert isinstance(made.feed, ResidentFeed)


@pytest.fixture
def free_memory(monkeypatch):
    """``free_memory(n)``: the CPU reports ``n`` bytes free (``fits`` reads it from sysconf)."""
    real = os.sysconf

    def report(n: int):
        pages = {"SC_AVPHYS_PAGES": n, "SC_PAGE_SIZE": 1}
        monkeypatch.setattr(os, "sysconf", lambda name: pages[name] if name in pages else real(name))

    return report


def test_auto_keeps_data_resident_only_within_its_share_of_free_memory(broken, tmp_path, free_memory):
    """The training split within half of the free memory, the held-out split within a quarter."""
    unit = 3 * SIZE * SIZE  # bytes of one resident image
    ds = broken[0]  # 7 training images, 4 held-out: the held-out split's quarter binds first
    assert (nbytes(ds.train, SIZE), nbytes(ds.heldout, SIZE)) == (7 * unit, 4 * unit)
    free_memory(16 * unit)
    assert choose("auto", ds, SIZE, CPU) == "resident"
    free_memory(16 * unit - 1)
    assert fits(ds.train, SIZE, CPU) and choose("auto", ds, SIZE, CPU) == "workers"  # the CPU's loader workers instead
    make_images(tmp_path / "many", 2, 6, size=(8, 8), split="train")  # 12 training images, 2 held-out: the half binds
    make_images(tmp_path / "many", 2, 1, size=(8, 8), split="val")
    many = open_dataset(tmp_path / "many")
    free_memory(24 * unit)
    assert choose("auto", many, SIZE, CPU) == "resident"
    free_memory(24 * unit - 1)
    assert choose("auto", many, SIZE, CPU) == "workers" and fits(many.train, SIZE, CPU, fraction=1.0)
    for kind in ("resident", "workers"):  # a kind the user names is taken as named
        assert choose(kind, many, SIZE, CPU) == kind


def test_auto_streams_a_packed_store_on_a_gpu_when_it_does_not_fit(tiny_data, tmp_path):
    from ilsvrc.data.store import pack

    pack(tiny_data, tmp_path / "store", size=SIZE, workers=0, progress=False)
    store, folder = open_dataset(tmp_path / "store"), open_dataset(tiny_data)
    gpu = torch.device("cuda")  # only its type is read: no GPU needed
    assert _choice("auto", store.train, gpu, resident_fits=False) == "stream"
    assert _choice("auto", folder.train, gpu, resident_fits=False) == "workers"  # a folder has no JPEGs to stream
    assert _choice("auto", store.train, CPU, resident_fits=False) == "workers"
    assert _choice("auto", store.train, gpu, resident_fits=True) == "resident"


def test_an_unknown_loader_is_a_one_line_user_error_before_the_run_folder(tiny_data, tmp_path):
    with pytest.raises(UserError, match="--loader must be one of auto, resident, stream, workers, not 'disk'") as e:
        train("resnet-cifar", tiny_data, tmp_path / "run", data_loader="disk", max_steps=1, device="cpu", workers=0,
              progress=False)
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()

