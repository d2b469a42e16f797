"""ILSVRC-2012 packed from its archives as image-net.org serves them (issue 24).

A generator writes a miniature of the download in its real formats: a train
tar of per-class tars, a flat val tar, and a devkit .tar.gz whose meta.mat
(written by scipy) numbers the classes in an order that is not the sorted
WordNet ids' and lists non-leaf synsets first, so that a wrong mapping shows.
The same images are also written unpacked as torchvision's ImageNet lays
them out (train/<wnid>/, val/<wnid>/), the truth against which the store
packed from the archives is checked."""

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from ilsvrc import UserError, train
from ilsvrc.cli import main
from ilsvrc.data import archives
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.store import MANIFEST, pack

from conftest import snapshot, user_error

io_mat = pytest.importorskip("scipy.io")

# WordNet id -> (the devkit's ILSVRC2012_ID, words); the IDs on purpose not in the sorted ids' order
LEAVES = {"n01440764": (3, "tench, Tinca tinca"), "n01530575": (1, "brambling, Fringilla montifringilla"),
          "n02012849": (4, "crane"), "n02119789": (2, "kit fox, Vulpes macrotis")}
# synsets with children, put first in meta.mat (the real one lists them after the leaves): IDs read by position go wrong
NON_LEAVES = [(5, "n00001740", "entity", [6]), (6, "n01503061", "bird", [1, 4])]
WNIDS = sorted(LEAVES)
ODD = {"n01440764": "CMYK", "n01530575": "PNG", "n02012849": "L", "n02119789": "32x32"}  # each class's first image
BROKEN = "n02119789/n02119789_99999.JPEG"  # a member no decoder reads
SIZE = 32


def _image(rng, k: int, kind="RGB") -> bytes:
    """A small photo, as a file's bytes, of a colour of its own (the k-th: the
    image is recognised by it in the store): a JPEG (CMYK, greyscale or RGB,
    or 32x32 already), or a PNG (behind a .JPEG name)."""
    h, w = (SIZE, SIZE) if kind == "32x32" else rng.integers(34, 48, 2)
    colour = np.array([40 + 35 * (k % 6), 40 + 35 * (k // 6 % 6), 60 + 100 * (k // 36)], dtype=float)
    colour = np.full(3, 12.0) if kind == "L" else colour  # a grey far from every colour of the grid
    img = Image.fromarray((colour + rng.normal(0, 20, (h, w, 3))).clip(0, 255).astype(np.uint8))
    img = img.convert(kind) if kind in ("CMYK", "L") else img
    out = io.BytesIO()
    img.save(out, format="PNG" if kind == "PNG" else "JPEG", quality=90)
    return out.getvalue()


def _mean_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=float).reshape(-1, 3).mean(0)


def _tar(files: dict[str, bytes], mode="w") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _meta_mat() -> bytes:
    """meta.mat as the devkit has it: a (N, 1) struct array ``synsets``."""
    fields = [(f, "O") for f in ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
                                   "wordnet_height", "num_train_images")]
    rows = [(i, wnid, words, "", len(children), np.array(children, dtype=np.uint8), 1, 0)
            for i, wnid, words, children in NON_LEAVES]
    rows += [(i, wnid, words, "a gloss", 0, np.zeros(0, dtype=np.uint8), 0, 3) for wnid, (i, words) in LEAVES.items()]
    out = io.BytesIO()
    io_mat.savemat(out, {"synsets": np.array(rows, dtype=fields).reshape(-1, 1)})
    return out.getvalue()


def make_ilsvrc(archives_dir, folders_dir, wnids=WNIDS, seed=0) -> dict[str, dict]:
    """The three archives in ``archives_dir`` (train tar holding the classes
    ``wnids``) and the same images unpacked in ``folders_dir``; the truth:
    each split's images (``wnid/file`` for train, the file for val) -> WordNet
    id, and each readable image's mean RGB as PIL decodes it (``means``)."""
    rng, colours = np.random.default_rng(seed), iter(range(100))
    truth = {"train": {}, "val": {}}
    inner = {}
    for wnid in reversed(wnids):  # the tars in no sorted order, nor their members
        names = [f"{wnid}_{n}.JPEG" for n in rng.choice(20000, 3, replace=False)]
        files = {name: _image(rng, next(colours), ODD[wnid] if k == 0 else "RGB") for k, name in enumerate(names)}
        if wnid in BROKEN:
            files[BROKEN.split("/")[1]] = b"not an image at all"
        inner[f"{wnid}.tar"] = _tar(dict(reversed(files.items())))
        truth["train"] |= {f"{wnid}/{name}": (wnid, data) for name, data in files.items()}
    val_classes = rng.permutation(WNIDS + WNIDS)
    val = {f"ILSVRC2012_val_{n + 1:08d}.JPEG": (wnid, _image(rng, next(colours), "CMYK" if n == 2 else "RGB"))
           for n, wnid in enumerate(val_classes)}
    truth["val"] = val
    truth["means"] = {name: _mean_rgb(data) for split in ("train", "val") for name, (_, data) in truth[split].items()
                      if name != BROKEN}
    means = np.array(list(truth["means"].values()))
    assert min(np.abs(x - y).sum() for i, x in enumerate(means) for y in means[:i]) > 30  # each image known by its colour
    truth |= {split: {name: wnid for name, (wnid, _) in truth[split].items()} for split in ("train", "val")}
    archives_dir.mkdir(parents=True)
    (archives_dir / archives.TRAIN).write_bytes(_tar(inner))
    (archives_dir / archives.VAL).write_bytes(_tar({name: data for name, (_, data) in val.items()}))
    ground_truth = "".join(f"{LEAVES[wnid][0]}\n" for wnid, _ in val.values())  # in file-name order
    (archives_dir / archives.DEVKIT).write_bytes(_tar({
        "ILSVRC2012_devkit_t12/data/meta.mat": _meta_mat(),
        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": ground_truth.encode(),
        "ILSVRC2012_devkit_t12/COPYING": b"the devkit's other files"}, mode="w:gz"))
    for tar_name, data in inner.items():  # unpacked as torchvision's ImageNet does
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(folders_dir / "train" / tar_name[:-4], filter="data")
    for name, (wnid, data) in val.items():
        (folders_dir / "val" / wnid).mkdir(parents=True, exist_ok=True)
        (folders_dir / "val" / wnid / name).write_bytes(data)
    return truth


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("ilsvrc2012")
    truth = make_ilsvrc(root / "download", root / "unpacked")
    return root / "download", root / "unpacked", truth


@pytest.fixture(scope="module")
def packed(mini, tmp_path_factory):
    """The archives packed through the command (workers: 2, processes reading the tars)."""
    download, _, _ = mini
    out = tmp_path_factory.mktemp("packed") / "store"
    before = snapshot(download)
    with pytest.warns(UserWarning) as warned:
        assert main(["pack", str(download), str(out), "--size", str(SIZE), "--workers", "2", "--no-progress"]) == 0
    assert snapshot(download) == before and sorted(p.name for p in out.parent.iterdir()) == ["store"]  # nothing extracted
    return out, [str(w.message) for w in warned]


def _labels(store, split):
    return np.load(store / f"{split}.labels.npy").tolist()


def test_the_archives_pack_with_the_generators_labels(mini, packed):
    download, _, truth = mini
    store, warned = packed
    manifest = json.loads((store / MANIFEST).read_text())
    assert manifest["classes"] == WNIDS  # sorted, as ImageFolder's
    assert manifest["names"] == {w: words.split(",")[0] for w, (_, words) in LEAVES.items()}
    dataset = open_dataset(store)
    for split, images in (("train", dataset.train), ("val", dataset.heldout)):
        named = {n: m for n, m in truth["means"].items() if n in truth[split]}
        seen = []
        for i in range(len(images)):  # each stored image known by its colour: its label is the generator's class
            mean = images.read(i, SIZE).double().mean((1, 2)).numpy()
            seen.append(min(named, key=lambda n: np.abs(named[n] - mean).sum()))
            assert manifest["classes"][images.labels[i]] == truth[split][seen[-1]], (split, i, seen[-1])
        assert sorted(seen) == sorted(named)  # every readable image once
    assert manifest["splits"]["train"]["skipped"] == [f"{download / archives.TRAIN}:{BROKEN.replace('/', '.tar/')}"]
    assert manifest["splits"]["val"]["skipped"] == []
    assert not [w for w in warned if "partial" in w]  # 4 classes: not the full set, whose counts are not expected


def test_the_store_equals_the_unpacked_folders(mini, packed, tmp_path):
    _, unpacked, _ = mini
    store, _ = packed
    with pytest.warns(UserWarning):  # the broken image, left out there too
        pack(unpacked, tmp_path / "folders", size=SIZE, workers=0, progress=False)
    files = sorted(p.name for p in store.iterdir())
    assert files == sorted(p.name for p in (tmp_path / "folders").iterdir())
    for name in files:
        if name.endswith((".bin", ".npy")):  # pixels (stored bytes), offsets, labels
            assert (store / name).read_bytes() == (tmp_path / "folders" / name).read_bytes(), name
    ours, theirs = (torch.load(s / "stats.pt") for s in (store, tmp_path / "folders"))
    assert all(torch.equal(ours[k], theirs[k]) if torch.is_tensor(ours[k]) else ours[k] == theirs[k] for k in ours)
    manifests = [json.loads((s / MANIFEST).read_text()) for s in (store, tmp_path / "folders")]
    for m in manifests:
        del m["source"], m["splits"]["train"]["skipped"]  # where each came from
        m.pop("names", None)  # the devkit's, which the folders do not have
    assert manifests[0] == manifests[1]


def test_a_few_steps_train_on_the_store(packed, tmp_path):
    store, _ = packed
    row = train("resnet-cifar", str(store), tmp_path / "run", model="resnet-20", device="cpu", workers=0, progress=False,
                max_steps=2)
    assert row["step"] == 2 and np.isfinite(row["train_loss"])


@pytest.mark.parametrize("missing, what", [
    (archives.TRAIN, "the train tar is not in {}: the training images are in it (ILSVRC2012_img_train.tar)"),
    (archives.VAL, "the val tar is not in {}: the validation images are in it (ILSVRC2012_img_val.tar)"),
    (archives.DEVKIT, "the devkit is not in {}: the validation labels come from it (ILSVRC2012_devkit_t12.tar.gz)"),
])
def test_each_missing_archive_is_one_line(mini, tmp_path, capsys, missing, what):
    download, _, _ = mini
    folder = tmp_path / "download"
    folder.mkdir()
    for name in archives.ARCHIVES:
        if name != missing:
            (folder / name).symlink_to(download / name)
    line = user_error(capsys, ["pack", str(folder), str(tmp_path / "store"), "--no-progress"])
    assert line == f"ilsvrc pack: error: {what.format(folder)}"
    assert not (tmp_path / "store").exists()


def test_the_devkit_missing_says_what_it_is_for(tmp_path, capsys):
    (tmp_path / "download").mkdir()
    (tmp_path / "download" / archives.VAL).write_bytes(b"")
    line = user_error(capsys, ["pack", str(tmp_path / "download"), str(tmp_path / "store")])
    assert f"the devkit is not in {tmp_path / 'download'}: the validation labels come from it ({archives.DEVKIT})" in line
    assert f"the train tar is not in {tmp_path / 'download'}" in line and archives.TRAIN in line


def test_data_on_the_archives_gives_the_pack_command(mini, tmp_path, capsys):
    download, _, _ = mini
    with pytest.raises(UserError, match=f"ilsvrc pack {download} imagenet-256"):
        open_dataset(download)
    line = user_error(capsys, ["train", "--data", str(download), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert f"ilsvrc pack {download}" in line and not (tmp_path / "run").exists()


def test_val_labels_do_not_apply_to_the_archives(mini, tmp_path, capsys):
    download, _, _ = mini
    line = user_error(capsys, ["pack", str(download), str(tmp_path / "store"), "--val-labels", str(tmp_path / "labels.csv")])
    assert "--val-labels" in line and "whose devkit labels them" in line and not (tmp_path / "store").exists()


def test_the_full_sets_counts_are_checked(mini, tmp_path, monkeypatch):
    download, _, _ = mini
    monkeypatch.setattr(archives, "FULL", {"classes": 4, "train": 13, "val": 9})  # 13 train images indeed, 8 val
    with pytest.warns(UserWarning) as warned:
        archives.pack_archives(download, tmp_path / "store", size=8, workers=0, progress=False)
    counts = [str(w.message) for w in warned if "partial" in str(w.message)]
    assert len(counts) == 1 and "13 training and 8 validation images, not ILSVRC-2012's 13 and 9" in counts[0]
    assert "\n" not in counts[0] and (tmp_path / "store").is_dir()  # a warning: what is there is packed


def test_a_partial_train_tar_leaves_out_the_val_images_of_its_missing_classes(tmp_path):
    truth = make_ilsvrc(tmp_path / "download", tmp_path / "unpacked", wnids=WNIDS[:3])
    with pytest.warns(UserWarning, match="2 validation image.* of classes .* does not hold: left out"):
        archives.pack_archives(tmp_path / "download", tmp_path / "store", size=8, workers=0, progress=False)
    manifest = json.loads((tmp_path / "store" / MANIFEST).read_text())
    assert manifest["classes"] == WNIDS[:3]
    assert sorted(_labels(tmp_path / "store", "val")) == sorted(WNIDS.index(w) for w in truth["val"].values() if w != WNIDS[3])


@pytest.mark.parametrize("damage, says", [
    ("devkit", "is not a readable .tar.gz"),
    ("val name", "README.JPEG is not one of the 8 validation images the devkit labels"),
    ("train", "is not a readable tar"),
])
def test_damaged_archives_are_one_line(mini, tmp_path, capsys, damage, says):
    download, _, _ = mini
    folder = tmp_path / "download"
    folder.mkdir()
    for name in archives.ARCHIVES:
        (folder / name).symlink_to(download / name)
    target = {"devkit": archives.DEVKIT, "val name": archives.VAL, "train": archives.TRAIN}[damage]
    (folder / target).unlink()
    if damage == "val name":
        with tarfile.open(download / archives.VAL) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar}
        (folder / target).write_bytes(_tar(members | {"README.JPEG": b"x"}))
    else:  # not an archive at all
        (folder / target).write_bytes(b"garbage " * 1000)
    line = user_error(capsys, ["pack", str(folder), str(tmp_path / "store"), "--no-progress"])
    assert says in line and not (tmp_path / "store").exists()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_interrupted_pack_resumes_without_reading_the_packed_images_again(mini, tmp_path, monkeypatch):
    download, _, _ = mini
    read, real = [], archives._Members.__getitem__

    def reading(self, i):
        read.append(i)
        if len(read) == 8 and interrupt:
            raise KeyboardInterrupt
        return real(self, i)

    monkeypatch.setattr(archives._Members, "__getitem__", reading)
    settings = dict(size=8, workers=0, progress=False, part_mib=1 / 1024)  # parts of 1 KiB: a few images each
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        archives.pack_archives(download, tmp_path / "store", **settings)
    read.clear()
    interrupt = False
    archives.pack_archives(download, tmp_path / "store", **settings)
    resumed = len(read)
    read.clear()
    archives.pack_archives(download, tmp_path / "whole", **settings)
    assert resumed < len(read) == 13 + 8  # every image once, in the pack never stopped
    for path in (tmp_path / "whole").iterdir():
        if path.name != MANIFEST:
            assert (tmp_path / "store" / path.name).read_bytes() == path.read_bytes(), path.name
