"""The packed store: written once, read wherever a folder is read."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from ilsvrc import UserError, train
from ilsvrc.cli import main
from ilsvrc.data import store
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.folders import SkippedImageWarning
from ilsvrc.data.images import decode_rgb
from ilsvrc.data.stats import Accumulator, Contribution, compute, load_or_compute, rgb_products
from ilsvrc.data.store import MANIFEST, open_store, pack, write_store
from ilsvrc.device import default_workers

from conftest import make_images, user_error


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


def test_training_and_eval_read_a_store(tiny_data, tmp_path, capsys, narrow):
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


# -- resuming a pack (issue 24) ----------------------------------------------------------------

PART = 0.002  # MiB: a few 16x16 JPEGs a part, so that a pack has many parts to be stopped between
ARGS = ["--size", "16", "--part-size", str(PART), "--workers", "0", "--no-progress"]

# A pack that stops, until killed, before the training split's 14th image: the test decides when it dies.
STALLING = textwrap.dedent("""
    import sys, time
    from ilsvrc.cli import main
    from ilsvrc.data import store

    encoded = store.Encoded.__iter__

    def stalling(self):
        for i, item in enumerate(encoded(self), start=self.start):
            while self.name == "train" and i == 13:
                time.sleep(1)
            yield item

    store.Encoded.__iter__ = stalling
    sys.exit(main(sys.argv[1:]))
""")


def files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def journal(out: Path) -> list[dict]:
    """The complete lines of the journal of the partial pack into ``out``."""
    path = out.with_name(f".{out.name}.partial") / "pack.journal"
    text = path.read_text() if path.is_file() else ""
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory) -> dict:
    """The files of a pack of tiny_data that nothing stopped."""
    out = tmp_path_factory.mktemp("reference") / "store"
    assert main(["pack", str(tiny_data), str(out), *ARGS]) == 0
    return files(out)


def interrupt_at(monkeypatch, split: str, index: int) -> None:
    """Ctrl-C in ``pack`` as it is about to write image ``index`` of ``split``."""
    encoded = store.Encoded.__iter__

    def interrupted(self):
        for i, item in enumerate(encoded(self), start=self.start):
            if self.name == split and i == index:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(store.Encoded, "__iter__", interrupted)


def test_a_killed_pack_resumes_to_the_bytes_of_one_never_stopped(tiny_data, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "store"
    (tmp_path / "stalling.py").write_text(STALLING)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "stalling.py"), "pack", str(tiny_data), str(out), *ARGS],
                            env=os.environ | {"OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 600  # a guard against a hang, not a measure: the machine may be loaded
        while not any("part" in line for line in journal(out)) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the pack ended before it was killed"
        line = user_error(capsys, ["pack", str(tiny_data), str(out), *ARGS])  # while the first lives
        assert f"process {proc.pid} is packing into {out}" in line
    finally:
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait()
    packed = max(r["items"] for r in journal(out) if "part" in r)  # training images in the parts it finished
    assert not out.exists() and 0 < packed < 13
    decoded = []
    monkeypatch.setattr(store, "decode_rgb", lambda path: decoded.append(path) or decode_rgb(path))
    assert main(["pack", str(tiny_data), str(out), *ARGS]) == 0
    assert len(decoded) == 36 - packed  # resumed after its last complete part, not begun again
    assert files(out) == reference  # every file, the manifest and stats.pt included, and no other
    assert not out.with_name(".store.partial").exists()


def test_an_interrupted_pack_resumes_without_decoding_what_it_packed(tiny_data, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "store"
    interrupt_at(monkeypatch, "val", 7)
    assert main(["pack", str(tiny_data), str(out), *ARGS]) == 130
    monkeypatch.undo()
    done = max(r["items"] for r in journal(out) if r.get("split") == "val")  # val images in its finished parts
    assert 0 < done < 7 and any(r.get("done") for r in journal(out) if r.get("split") == "train")
    with open(out.with_name(".store.partial") / "pack.journal", "a") as f:
        f.write('{"split": "val", "par')  # a line cut short, as a power loss leaves it
    decoded = []
    monkeypatch.setattr(store, "decode_rgb", lambda path: decoded.append(path) or decode_rgb(path))
    assert main(["pack", str(tiny_data), str(out), *ARGS]) == 0
    assert len(decoded) == 12 - done and all("/val/" in p for p in decoded)
    assert files(out) == reference


def test_a_pack_begun_otherwise_is_refused_and_its_finished_parts_kept(tiny_data, reference, tmp_path, monkeypatch, capsys):
    out, partial = tmp_path / "store", tmp_path / ".store.partial"
    interrupt_at(monkeypatch, "train", 10)
    assert main(["pack", str(tiny_data), str(out), *ARGS]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    before = files(partial)
    line = user_error(capsys, ["pack", str(tiny_data), str(out), *ARGS, "--quality", "80"])
    assert "--quality 90 there, 80 here" in line and str(partial) in line and "remove that folder" in line
    changed = tmp_path / "data"
    shutil.copytree(tiny_data, changed)
    (changed / "train" / "class0" / "img0000.jpg").unlink()
    assert "other data" in user_error(capsys, ["pack", str(changed), str(out), *ARGS])
    assert files(partial) == before and not out.exists()
    assert main(["pack", str(tiny_data), str(out), *ARGS]) == 0
    assert files(out) == reference


def test_a_partial_folder_with_nothing_finished_is_begun_again(tiny_data, reference, tmp_path):
    partial = tmp_path / ".store.partial"
    partial.mkdir()
    (partial / "train-00099.bin.partial").write_bytes(b"half a part")  # what a kill leaves
    (partial / ".train-00000.offsets.npy.x1y2z3.tmp").write_bytes(b"half an array")  # (atomic_write's)
    (partial / "pack.journal").write_text(json.dumps({"journal": 1, "settings": {"other": "settings"}}) + "\n")
    assert main(["pack", str(tiny_data), str(tmp_path / "store"), *ARGS]) == 0
    assert files(tmp_path / "store") == reference and sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def rows(n: int, seen: list, stop: int | None = None):
    """write_store's items as a generator gives them (cifar.py's): 8x8 raw images, four classes."""
    gen = torch.Generator().manual_seed(n)
    for i in range(n):
        if i == stop:
            raise KeyboardInterrupt
        seen.append(i)
        img = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=gen)
        yield img, img.numpy().reshape(-1), i % 4, f"row{i}"


def test_write_store_resumes_a_generator_by_reading_past_what_it_packed(tmp_path):
    def write(out, seen, stop=None):
        splits = {"train": (30, rows(30, seen, stop)), "test": (5, rows(5, []))}
        return write_store(out, ["a", "b", "c", "d"], splits, size=8, encoding="raw", quality=None,
                           part_mib=3 * 192 / 2**20, source=tmp_path / "src", progress=False)  # three images a part

    (tmp_path / "src").mkdir()
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "store", [], stop=12)
    assert [r["items"] for r in journal(tmp_path / "store") if "part" in r] == [3, 6, 9]
    seen = []
    write(tmp_path / "store", seen)
    assert seen == list(range(30))  # a generator cannot start at row 9: read from row 0, the rows packed dropped
    write(tmp_path / "whole", [])
    assert files(tmp_path / "store") == files(tmp_path / "whole")


def test_statistics_sums_are_exact_in_any_order_and_restored_exactly():
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=gen) for _ in range(50)]
    forward, backward, resumed = Accumulator(16), Accumulator(16), Accumulator(16)
    for img in images:
        forward.add(img)
    for img in reversed(images):
        backward.add(Contribution(img.numpy(), rgb_products(img).numpy()))  # as a loader worker hands it over
    for img in images[:20]:
        resumed.add(img)
    saved = io.BytesIO()
    torch.save(resumed.state_dict(), saved)
    resumed = Accumulator(16)
    resumed.load_state_dict(torch.load(io.BytesIO(saved.getvalue()), weights_only=True))
    for img in images[20:]:
        resumed.add(img)
    expected = forward.result().to_dict()
    for acc in (backward, resumed):
        assert torch.equal(acc.total, forward.total) and torch.equal(acc.outer, forward.outer)
        got = acc.result().to_dict()
        assert all(torch.equal(got[k], v) if torch.is_tensor(v) else got[k] == v for k, v in expected.items())


def test_loader_workers_pack_the_bytes_the_main_process_packs(tiny_data, reference, tmp_path):
    args = ARGS[: ARGS.index("--workers")] + ["--workers", "2", "--no-progress"]
    assert main(["pack", str(tiny_data), str(tmp_path / "store"), *args]) == 0
    assert files(tmp_path / "store") == reference  # the statistics' products computed in the workers, the same
    stored = open_dataset(tmp_path / "store").train.stored_stats(16)
    direct = compute(open_dataset(tiny_data).train, 16, progress=False)  # each image added in this process
    assert all(torch.equal(getattr(stored, k), getattr(direct, k)) for k in ("mean_image", "mean_rgb", "eigval", "eigvec"))


def test_pack_takes_every_core_and_a_training_loader_at_most_eight(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    assert default_workers() == 8 and default_workers(None, cap=None) == 12 and default_workers(3, cap=None) == 3
    asked, loader = [], store.DataLoader
    monkeypatch.setattr(store, "DataLoader", lambda *a, num_workers, prefetch_factor, **k: asked.append(num_workers) or loader(*a, **k))
    pack(tiny_data, tmp_path / "store", size=16, progress=False)
    assert asked == [12, 12]


def test_the_plan_line_and_the_bar_give_counts_size_rate_and_time_left(tiny_data, tmp_path, capsys):
    pack(tiny_data, tmp_path / "raw", size=16, encoding="raw", workers=0)
    err = capsys.readouterr().err
    assert f"pack: 36 images (train 24, val 12) into {tmp_path / 'raw'} as raw 16x16, 27.0 KiB (16x16x3 bytes an image)" in err
    assert re.search(r"pack train: 100%.*24/24 \[\d\d:\d\d<00:00, *[\d.]+img/s\]", err)  # the rate, and the time left
    m = pack(tiny_data, tmp_path / "jpeg", size=16, workers=0)
    train_bytes = sum((tmp_path / "jpeg" / p["file"]).stat().st_size for p in m["splits"]["train"]["parts"])
    estimate = store._in_bytes(36 * train_bytes / 24)  # all 24 training images read ahead: fewer than ESTIMATE_FROM
    assert f"as jpeg 16x16, about {estimate} (the mean of the first 24 JPEGs x 36)" in capsys.readouterr().err


def test_a_resumed_pack_says_so_and_its_bar_starts_where_it_stopped(tiny_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "store"
    interrupt_at(monkeypatch, "train", 10)
    assert main(["pack", str(tiny_data), str(out), *ARGS]) == 130
    monkeypatch.undo()
    packed = max(r["items"] for r in journal(out) if "part" in r)
    capsys.readouterr()
    assert main(["pack", str(tiny_data), str(out), *ARGS[:-1]]) == 0  # with the bar
    err = capsys.readouterr().err
    assert f"; resuming after the {packed:,} packed already" in err
    assert f"| {packed}/24 [" in err and "| 0/24 [" not in err


def test_a_pack_stopped_twice_before_and_after_its_first_part_still_resumes(tiny_data, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "store"
    interrupt_at(monkeypatch, "train", 10)
    assert main(["pack", str(tiny_data), str(out), *ARGS]) == 130
    path = tmp_path / ".store.partial" / "pack.journal"
    path.write_text(path.read_text().splitlines()[0] + "\n")  # as a kill before the first part was complete leaves it
    assert main(["pack", str(tiny_data), str(out), *ARGS]) == 130
    assert "journal" in journal(out)[0] and any("part" in r for r in journal(out))
    monkeypatch.undo()
    assert main(["pack", str(tiny_data), str(out), *ARGS]) == 0
    assert files(out) == reference


def test_a_pack_killed_between_a_line_and_the_unlink_it_orders_leaves_no_stray_file(tiny_data, reference, tmp_path, monkeypatch):
    """A kill after a part's line and before the statistics file it replaces
    is removed (seen once in CI, 2026-12-06: the store kept the stale one)."""
    out, partial = tmp_path / "store", tmp_path / ".store.partial"
    interrupt_at(monkeypatch, "train", 10)
    assert main(["pack", str(tiny_data), str(out), *ARGS]) == 130
    monkeypatch.undo()
    sums = [r["accumulator"] for r in journal(out) if "accumulator" in r]
    assert len(sums) >= 2 and sorted(p.name for p in partial.glob("pack.accumulator-*")) == [sums[-1]]
    shutil.copy(partial / sums[-1], partial / sums[-2])  # the unlink the kill prevented
    assert main(["pack", str(tiny_data), str(out), *ARGS]) == 0
    assert files(out) == reference


def test_a_raw_store_at_its_own_size_goes_resident_part_by_part(tmp_path, monkeypatch):
    """Its parts copied whole, not read image by image through a loader
    (CIFAR-10: about 50 s a run before): the pixels and labels of reading
    each image, across parts of three images."""
    from ilsvrc.data.resident import ResidentSplit
    from ilsvrc.data.store import PackedSplit

    (tmp_path / "src").mkdir()
    write_store(tmp_path / "store", ["a", "b", "c", "d"], {"train": (10, rows(10, [])), "test": (5, rows(5, []))}, size=8,
                encoding="raw", quality=None, part_mib=3 * 192 / 2**20, source=tmp_path / "src", progress=False)
    split = open_store(tmp_path / "store").train
    assert len(split.parts) == 4
    expected = torch.stack([split.read(i, 8) for i in range(len(split))])
    monkeypatch.setattr(PackedSplit, "read", lambda *a: pytest.fail("read image by image"))
    resident = ResidentSplit(split, 8, torch.device("cpu"), progress=False)
    assert torch.equal(resident.images, expected) and resident.valid == [True] * 10 and resident.skipped == []
    assert resident.labels.tolist() == split.labels == [i % 4 for i in range(10)]
