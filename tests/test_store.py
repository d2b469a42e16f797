"""The packed store: written once, read wherever a folder is read."""

import json

import pytest
import torch

from ilsvrc import UserError, train
from ilsvrc.cli import main
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.folders import SkippedImageWarning
from ilsvrc.data.stats import compute, load_or_compute
from ilsvrc.data.store import MANIFEST, pack

from conftest import make_images


def test_raw_round_trip_keeps_pixels_labels_classes_and_statistics(tiny_data, tmp_path):
    pack(tiny_data, tmp_path / "store", size=20, encoding="raw", workers=0, progress=False)
    folder, store = open_dataset(tiny_data), open_dataset(tmp_path / "store")
    assert store.classes == folder.classes
    for a, b in ((folder.train, store.train), (folder.heldout, store.heldout)):
        assert len(a) == len(b) and a.labels == b.labels
        for i in range(len(a)):
            assert torch.equal(a.read(i, 20), b.read(i, 20))  # the same pixels, exactly
    ref = compute(folder.train, 20, progress=False)
    stored = load_or_compute(store.train, 20, progress=False)
    torch.testing.assert_close(stored.mean_image, ref.mean_image)
    torch.testing.assert_close(stored.eigval, ref.eigval)


def test_jpeg_store_is_close_and_splits_into_parts(tiny_data, tmp_path):
    m = pack(tiny_data, tmp_path / "store", size=24, encoding="jpeg", quality=95, part_mib=2 / 1024, workers=0, progress=False)
    assert len(m["splits"]["train"]["parts"]) > 1  # 2 KiB parts
    for part in m["splits"]["train"]["parts"]:
        assert (tmp_path / "store" / part["file"]).stat().st_size <= 2 * 2**10 or part["count"] == 1
    folder, store = open_dataset(tiny_data), open_dataset(tmp_path / "store")
    assert store.train.labels == folder.train.labels
    for i in range(len(folder.train)):
        diff = (store.train.read(i, 24).float() - folder.train.read(i, 24).float()).abs().mean()
        assert diff < 6  # JPEG at quality 95


def test_jpegs_already_at_size_are_stored_byte_for_byte(tmp_path):
    make_images(tmp_path / "data", 2, 3, size=(16, 16), split="train")
    make_images(tmp_path / "data", 2, 1, size=(16, 16), split="val")
    pack(tmp_path / "data", tmp_path / "store", size=16, workers=0, progress=False)
    folder, store = open_dataset(tmp_path / "data"), open_dataset(tmp_path / "store")
    for i in range(len(folder.train)):
        original = open(folder.train.items[i][0], "rb").read()
        assert store.train.encoded(i).tobytes() == original


def test_a_corrupt_image_is_skipped_warned_and_counted(tmp_path):
    make_images(tmp_path / "data", 2, 3, split="train")
    make_images(tmp_path / "data", 2, 1, split="val")
    (tmp_path / "data" / "train" / "class1" / "bad.JPEG").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.warns(SkippedImageWarning, match="bad.JPEG"):
        m = pack(tmp_path / "data", tmp_path / "store", size=16, workers=0, progress=False)
    assert m["splits"]["train"]["count"] == 6 and len(m["splits"]["train"]["skipped"]) == 1
    assert json.loads((tmp_path / "store" / MANIFEST).read_text())["splits"]["train"]["skipped"][0].endswith("bad.JPEG")


def test_training_and_eval_read_a_store(tiny_data, tmp_path, capsys):
    assert main(["pack", str(tiny_data), str(tmp_path / "store"), "--size", "73", "--workers", "0", "--no-progress"]) == 0
    assert "train: 24 images in 1 part(s)" in capsys.readouterr().out
    losses = {}
    for kind in ("resident", "stream", "workers"):
        row = train("alexnet", tmp_path / "store", tmp_path / kind, epochs=1, batch_size=8, image_size=64,
                    device="cpu", workers=2, progress=False, data_loader=kind)
        assert json.loads((tmp_path / kind / "config.json").read_text())["loader"] == kind
        losses[kind] = row["train_loss"]
    # the same batches every way (the batched lighting differs from the per-image one by rounding only)
    assert losses["stream"] == pytest.approx(losses["resident"], rel=1e-5)
    assert losses["workers"] == pytest.approx(losses["resident"], rel=1e-3)
    assert main(["eval", str(tmp_path / "stream"), "--data", str(tmp_path / "store"), "--workers", "0", "--no-progress"]) == 0


def test_streaming_needs_a_store(tiny_data, tmp_path, capsys):
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--loader", "stream",
                 "--image-size", "64", "--device", "cpu", "--no-progress"]) == 2
    assert "packed store" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_pack_refuses_to_overwrite_and_leaves_nothing_half_written(tiny_data, tmp_path):
    (tmp_path / "store").mkdir()
    with pytest.raises(UserError, match="already exists"):
        pack(tiny_data, tmp_path / "store", workers=0, progress=False)
    with pytest.raises(UserError, match="does not exist"):
        pack(tmp_path / "nowhere", tmp_path / "other", workers=0, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no partial folder left behind


def test_an_incomplete_store_is_a_user_error(tiny_data, tmp_path):
    m = pack(tiny_data, tmp_path / "store", size=16, workers=0, progress=False)
    (tmp_path / "store" / m["splits"]["val"]["parts"][0]["file"]).unlink()
    with pytest.raises(UserError, match="incomplete"):
        open_dataset(tmp_path / "store")
