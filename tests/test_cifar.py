"""CIFAR-10/100 as torchvision downloads them: packed raw, bit for bit; and
``--data cifar10`` downloading and packing into the cache (data/cifar.py)."""

import collections
import hashlib
import io
import json
import pickle
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar

from ilsvrc import UserError, train
from ilsvrc.cli import main
from ilsvrc.data import default
from ilsvrc.data.cifar import pack_cifar
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.default import available, find
from ilsvrc.data.store import MANIFEST


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # as the originals (Python 2's cPickle, protocol 2)


def write_cifar10(root, per_batch=3, test=4, seed=0):
    """``root/cifar-10-batches-py`` in torchvision's layout and pickle format;
    the rows and labels of the training and test images, in order."""
    rng, folder = np.random.default_rng(seed), root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(folder / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072})
    ref = {"train": ([], []), "test": ([], [])}
    for file, n, split in [(f"data_batch_{i}", per_batch, "train") for i in range(1, 6)] + [("test_batch", test, "test")]:
        data, labels = rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist()
        _dump(folder / file, {"batch_label": f"{file} of 5", "labels": labels, "data": data,
                              "filenames": [f"img_{i}.png" for i in range(n)]})
        ref[split][0].extend(data)
        ref[split][1].extend(labels)
    return names, ref


def write_cifar100(root, train=7, test=5, seed=1):
    """``root/cifar-100-python``: fine labels (100 classes) and coarse ones (20) beside them."""
    rng, folder = np.random.default_rng(seed), root / "cifar-100-python"
    folder.mkdir(parents=True)
    fine, coarse = [f"fine{i:02d}" for i in range(100)][::-1], [f"coarse{i:02d}" for i in range(20)]
    _dump(folder / "meta", {"fine_label_names": fine, "coarse_label_names": coarse})
    ref = {}
    for file, n in (("train", train), ("test", test)):
        data, labels = rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(20, 100, n).tolist()
        _dump(folder / file, {"filenames": [f"img_{i}.png" for i in range(n)], "batch_label": file,
                              "fine_labels": labels, "coarse_labels": [y // 5 for y in labels], "data": data})
        ref[file] = (list(data), labels)
    return fine, ref


def assert_bit_for_bit(store, names, ref):
    assert store.classes == names
    assert store.heldout.name == "test"
    for split, name in ((store.train, "train"), (store.heldout, "test")):
        rows, labels = ref[name]
        assert len(split) == len(rows) and split.labels == labels
        for i, row in enumerate(rows):
            assert split.encoded(i).tobytes() == row.tobytes()
            assert torch.equal(split.read(i, 32), torch.from_numpy(row).view(3, 32, 32))


def test_cifar10_packs_raw_bit_for_bit(tmp_path, capsys, monkeypatch):
    names, ref = write_cifar10(tmp_path / "tv")
    assert main(["pack", str(tmp_path / "tv"), str(tmp_path / "store"), "--no-progress"]) == 0  # a folder holding it
    assert "train: 15 images" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "store" / MANIFEST).read_text())
    assert (manifest["size"], manifest["encoding"]) == (32, "raw")
    store = open_dataset(tmp_path / "store")
    assert_bit_for_bit(store, names, ref)
    # torchvision's own reading of the same files: the same images (HWC), labels and classes
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    for is_train, split in ((True, store.train), (False, store.heldout)):
        tv = tv_cifar.CIFAR10(str(tmp_path / "tv"), train=is_train)
        assert tv.classes == store.classes and tv.targets == split.labels
        assert torch.equal(torch.from_numpy(tv.data), torch.stack([split.read(i, 32) for i in range(len(split))]).permute(0, 2, 3, 1))
    mean = torch.from_numpy(np.stack(ref["train"][0])).double().view(-1, 3, 32, 32).mean(0)
    torch.testing.assert_close(store.train.stored_stats(32).mean_image, mean.float())


def test_cifar100_packs_its_fine_labels_bit_for_bit(tmp_path):
    fine, ref = write_cifar100(tmp_path)
    manifest = pack_cifar(tmp_path / "cifar-100-python", tmp_path / "store", progress=False)  # the folder itself
    assert len(manifest["classes"]) == 100
    assert_bit_for_bit(open_dataset(tmp_path / "store"), fine, ref)


def test_pack_takes_32_raw_and_refuses_anything_else(tmp_path, capsys):
    write_cifar100(tmp_path / "tv")
    for flags in (["--size", "64"], ["--format", "jpeg"], ["--size", "32", "--format", "jpeg"]):
        assert main(["pack", str(tmp_path / "tv"), str(tmp_path / "store"), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "raw at 32x32" in err and " ".join(flags[-2:]) in err
        assert not (tmp_path / "store").exists()
    assert main(["pack", str(tmp_path / "tv"), str(tmp_path / "store"), "--size", "32", "--format", "raw", "--no-progress"]) == 0


def test_data_on_the_pickles_says_how_to_pack_them(tmp_path, capsys):
    write_cifar10(tmp_path / "tv")
    for where in (tmp_path / "tv", tmp_path / "tv" / "cifar-10-batches-py"):
        with pytest.raises(UserError, match=f"ilsvrc pack {tmp_path / 'tv' / 'cifar-10-batches-py'} cifar10-32"):
            open_dataset(where)
    assert main(["train", "--data", str(tmp_path / "tv"), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "ilsvrc pack" in err and not (tmp_path / "run").exists()


class _Pickled:
    def __reduce__(self):
        return collections.OrderedDict, ()  # harmless, but not an array: a pickle naming it is refused unrun


def test_a_damaged_folder_is_one_line_and_writes_nothing(tmp_path):
    write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    batch = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3 is missing"):
        pack_cifar(tmp_path, tmp_path / "store", progress=False)
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": _Pickled()}))
    with pytest.raises(UserError, match="names collections.OrderedDict"):
        pack_cifar(tmp_path, tmp_path / "store", progress=False)
    (folder / "data_batch_3").write_bytes(batch)
    _dump(folder / "test_batch", {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]})
    with pytest.raises(UserError, match=r"test_batch: its 'labels' are not 2 labels in \[0, 10\)"):
        pack_cifar(tmp_path, tmp_path / "store", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py"]  # nothing written


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache, no $ILSVRC_DATA, and no folder named cifar10 here."""
    monkeypatch.delenv("ILSVRC_DATA", raising=False)
    monkeypatch.setenv("ILSVRC_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "cache" / "datasets"


def test_data_cifar10_is_downloaded_once_and_packed_into_the_cache(cache, tmp_path, monkeypatch):
    calls = []

    def download(name, folder):  # the network's stand-in: torchvision's files, generated
        calls.append((name, folder))
        calls.append(write_cifar10(folder))
        return folder / "cifar-10-batches-py"

    assert find("cifar10", download=download) == cache / "cifar10"
    assert calls[0] == ("cifar10", cache / ".cifar10.download")
    assert_bit_for_bit(open_dataset(cache / "cifar10"), *calls[1])
    assert sorted(p.name for p in cache.iterdir()) == ["cifar10"]  # the download removed, the store kept
    assert [(d["name"], d["kind"], d["classes"]) for d in available()] == [("cifar10", "packed store, 32 px", 10)]
    monkeypatch.setattr(default, "download_cifar", lambda *a: pytest.fail("downloaded twice"))
    row = train("resnet-cifar", "cifar10", tmp_path / "run", model="resnet-20", device="cpu", workers=0, progress=False,
                iterations=1)  # the one command, the second time: the store in the cache
    assert row["step"] == 1


def test_a_failed_download_is_one_line_and_leaves_nothing(cache, capsys, monkeypatch):
    def offline(name, folder):
        folder.mkdir(parents=True)
        (folder / "cifar-100-python.tar.gz").write_bytes(b"half")
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(default, "download_cifar", offline)
    assert main(["train", "--data", "cifar100", "--out", "run", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'cifar100'" in err and "could not be downloaded" in err and "name resolution" in err
    assert list(cache.iterdir()) == []


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_torchvisions_download_through_a_local_network(cache, tmp_path, monkeypatch):
    """``download_cifar`` itself: torchvision fetches the archive (served
    here, not from the network), checks its digest, unpacks it; then pack."""
    fine, ref = write_cifar100(tmp_path / "src")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-100-python", "cifar-100-python")
    served = archive.getvalue()
    C = tv_cifar.CIFAR100
    monkeypatch.setattr(C, "tgz_md5", md5(served))
    for attr, files in (("train_list", ["train"]), ("test_list", ["test"])):
        monkeypatch.setattr(C, attr, [[f, md5((tmp_path / "src" / C.base_folder / f).read_bytes())] for f in files])
    monkeypatch.setattr(C, "meta", C.meta | {"md5": md5((tmp_path / "src" / C.base_folder / "meta").read_bytes())})

    class Response(io.BytesIO):
        url, length = C.url, len(served)

    def urlopen(request, *args, **kwargs):
        assert request.full_url == C.url
        return Response(served)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    assert find("cifar100") == cache / "cifar100"
    assert_bit_for_bit(open_dataset(cache / "cifar100"), fine, ref)
    assert sorted(p.name for p in cache.iterdir()) == ["cifar100"]


def test_a_download_failing_without_a_message_names_the_failure(cache, capsys, monkeypatch):
    def reset(name, folder):
        raise ConnectionResetError()  # no message at all: the reason is its type's name

    monkeypatch.setattr(default, "download_cifar", reset)
    assert main(["train", "--data", "cifar10", "--out", "run", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "could not be downloaded (ConnectionResetError)" in err
