"""The challenge's test set and its submission file (issue 24): ``ilsvrc
predict CHECKPOINT DIR --submission OUT --devkit DEVKIT`` writes one line per
image of a flat folder, in file-name order, the five most probable classes as
the devkit's ILSVRC2012_IDs (the devkit's readme, "classification
submission"); a dataset's flat, unlabelled test/ is left alone beside val/.

The generated devkit numbers the classes in an order that is not the sorted
WordNet ids (ilsvrc's class order), and lists synsets with children among the
leaves, so that a mapping by position, by ilsvrc's index or without the
leaf filter writes other numbers."""

import io
import shutil
import tarfile

import numpy as np
import pytest

from ilsvrc import UserError, predict, train
from ilsvrc.cli import main
from ilsvrc.data.datasets import open_dataset
from ilsvrc.submission import devkit_ids

from conftest import make_images, user_error

sio = pytest.importorskip("scipy.io")

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331"]  # sorted: ilsvrc's order
DEVKIT = {"n01494475": 1, "n01440764": 2, "n01496331": 3, "n01484850": 4, "n01443537": 5, "n01491361": 6}
PARENTS = [(1001, "n00001740", "entity", 2), (1002, "n01440160", "fish", 4)]  # synsets with children: no classes
TEST_IMAGES = 9
CPU = ["--device", "cpu", "--workers", "0", "--no-progress"]


def write_meta(path, ids: dict[str, int]):
    """A devkit's meta.mat: the struct array ``synsets`` with the devkit's
    fields, the leaves in WordNet-id order (no leaf at the place its
    ILSVRC2012_ID names: the ID is a field, not a place), the parents among them."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"]
    leaves = [(ids[w], w, w, "", 0, np.zeros(0), 0, 2) for w in sorted(ids)]
    parents = [(i, w, words, "", n, np.arange(1, n + 1), 1, 0) for i, w, words, n in PARENTS]
    rows = leaves[:2] + parents[:1] + leaves[2:] + parents[1:]
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.savemat(path, {"synsets": np.array(rows, dtype=[(f, "O") for f in fields]).reshape(-1, 1)})
    return path


def wnid_tree(root, classes, seed=1):
    """train/<wnid>/ and val/<wnid>/ of generated images (make_images' class folders renamed)."""
    for split, n in (("train", 3), ("val", 1)):
        make_images(root, len(classes), n, size=(40, 40), seed=seed + n, split=split)
        for c, wnid in enumerate(classes):
            (root / split / f"class{c}").rename(root / split / wnid)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """An ImageFolder root with WordNet-id classes and, beside val/, a flat
    unlabelled test/ (the challenge's names, written in no order, and a file
    that is no image)."""
    root = wnid_tree(tmp_path_factory.mktemp("submission") / "data", WNIDS)
    pool = root.parent / "pool"
    make_images(pool, len(WNIDS), 2, size=(40, 40), seed=5, split="x")
    (root / "test").mkdir()
    drawn = sorted(pool.rglob("*.jpg"))[:TEST_IMAGES]
    for k in np.random.default_rng(0).permutation(TEST_IMAGES):
        drawn[k].rename(root / "test" / f"ILSVRC2012_test_{k + 1:08d}.JPEG")
    (root / "test" / "README.txt").write_text("not an image\n")
    return root


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """One SGD step of ResNet-20 on ``data`` (its flat test/ beside val/), test views cut from a 40x40 square."""
    out = tmp_path_factory.mktemp("run") / "run"
    train("resnet-cifar", data, out, model="resnet-20", iterations=1, lr=0.01, test_resize=40, device="cpu", workers=0,
          progress=False)
    return out / "last.pt"


@pytest.fixture(scope="module")
def meta(tmp_path_factory):
    return write_meta(tmp_path_factory.mktemp("devkit") / "ILSVRC2012_devkit_t12" / "data" / "meta.mat", DEVKIT)


def expected_lines(checkpoint, images, ten_crop: bool) -> list[str]:
    """Each image's five most probable classes, computed apart from
    submission.py, one image at a time (``ilsvrc.predict``), as the devkit's
    IDs. The order must be unambiguous: consecutive log-probabilities at
    least 1e-3 apart, where batched and single-image float32 arithmetic
    differ by about 1e-6."""
    lines = []
    for r in predict(checkpoint, images, top=len(WNIDS), ten_crop=ten_crop, device="cpu"):
        logp = np.log([t["probability"] for t in r["top"]])
        assert (logp[:-1] - logp[1:]).min() > 1e-3, "a near tie: the expected order is not well defined"
        lines.append(" ".join(str(DEVKIT[t["class"]]) for t in r["top"][:5]))
    return lines


@pytest.mark.parametrize("ten_crop", [False, True])
def test_a_line_per_image_in_file_name_order_five_devkit_ids_each(run, data, meta, tmp_path, capsys, ten_crop):
    out = tmp_path / "submission.txt"
    argv = ["predict", str(run), str(data / "test"), "--submission", str(out), "--devkit", str(meta), "--batch-size", "4", *CPU]
    assert main(argv + (["--ten-crop"] if ten_crop else [])) == 0
    assert f"{out}: {TEST_IMAGES} lines" in capsys.readouterr().out
    images = sorted((data / "test").glob("*.JPEG"))
    lines = out.read_text().splitlines()
    assert len(lines) == TEST_IMAGES and all(len(line.split(" ")) == 5 for line in lines)
    expected = expected_lines(run, images, ten_crop)
    assert len(set(expected)) > 1  # the images' lines differ, so a wrong order shows
    assert lines == expected
    assert sorted(tmp_path.iterdir()) == [out]  # no temporary file left beside it


def test_the_devkit_as_downloaded_unpacked_or_its_meta_mat(meta, tmp_path):
    devkit = meta.parents[1]  # ILSVRC2012_devkit_t12/
    archive = tmp_path / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(devkit, arcname=devkit.name)
    for given in (meta, meta.parent, devkit, devkit.parent, archive):
        assert devkit_ids(given) == DEVKIT, given  # the leaves alone, by their ILSVRC2012_ID
    for bad, words in ((tmp_path / "none.tar.gz", "does not exist"), (tmp_path, "holds no data/meta.mat")):
        with pytest.raises(UserError, match=words):
            devkit_ids(bad)
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    with pytest.raises(UserError, match="is not the devkit's meta.mat"):
        devkit_ids(tmp_path / "junk.mat")


def refused(capsys, argv, folder) -> str:
    """The command's one line on stderr (exit code 2), ``folder`` left as it was."""
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    line = user_error(capsys, argv)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    return line


def test_refusals_write_nothing(run, data, meta, tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "submission.txt"
    argv = ["predict", str(run), str(data / "test"), "--submission", str(out), *CPU]
    assert "--devkit" in refused(capsys, argv, folder)
    out.write_text("an earlier submission\n")
    assert str(out) in refused(capsys, argv + ["--devkit", str(meta)], folder)
    out.unlink()
    partial = write_meta(tmp_path / "partial" / "meta.mat", {w: i for w, i in DEVKIT.items() if w != "n01484850"})
    line = refused(capsys, argv + ["--devkit", str(partial)], folder)
    assert "class n01484850" in line and "not one of the 5 classes" in line
    assert "goes with --submission" in refused(capsys, ["predict", str(run), str(data / "test"), "--devkit", str(meta)], folder)


def test_fewer_than_five_classes_is_an_error_not_padding(meta, tmp_path, capsys):
    """Five guesses a line is the format; a network of four classes cannot make them, and ilsvrc does not invent one."""
    root = wnid_tree(tmp_path / "four", WNIDS[:4])
    train("resnet-cifar", root, tmp_path / "run4", model="resnet-20", iterations=1, device="cpu", workers=0, progress=False)
    out = tmp_path / "out"
    out.mkdir()
    line = refused(capsys, ["predict", str(tmp_path / "run4"), str(root / "val" / WNIDS[0]), "--submission",
                            str(out / "s.txt"), "--devkit", str(meta), *CPU], out)
    assert "names 5 classes" in line and "only 4" in line


def test_a_folder_without_images_is_one_line(run, meta, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "nested" / "test").mkdir(parents=True)
    (tmp_path / "nested" / "test" / "ILSVRC2012_test_00000001.JPEG").write_bytes(b"")
    with tarfile.open(tmp_path / "ILSVRC2012_img_test.tar", "w") as tar:
        tar.addfile(tarfile.TarInfo("README"), io.BytesIO(b""))
    for folder, words in (("empty", "holds no images"), ("nested", "only folders (test)"),
                          ("ILSVRC2012_img_test.tar", "unpack it"), ("nowhere", "does not exist")):
        argv = ["predict", str(run), str(tmp_path / folder), "--submission", str(out / "s.txt"), "--devkit", str(meta), *CPU]
        assert words in refused(capsys, argv, out)


def test_an_unreadable_image_or_an_interruption_leaves_no_file(run, data, meta, tmp_path, capsys, monkeypatch):
    from ilsvrc import submission

    folder = tmp_path / "test"
    shutil.copytree(data / "test", folder)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["predict", str(run), str(folder), "--submission", str(out / "s.txt"), "--devkit", str(meta), "--batch-size", "2", *CPU]
    calls = []

    def interrupted(model, views):  # Ctrl-C during the third batch
        calls.append(len(views))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(model, views)

    real = submission.predict_proba
    monkeypatch.setattr(submission, "predict_proba", interrupted)
    assert main(argv) == 130 and not any(out.iterdir())
    assert capsys.readouterr().err == "ilsvrc predict: interrupted\n" and len(calls) == 3
    monkeypatch.setattr(submission, "predict_proba", real)
    (folder / "ILSVRC2012_test_00000007.JPEG").write_bytes(b"truncated")
    line = refused(capsys, argv, out)
    assert "ILSVRC2012_test_00000007.JPEG is not a readable image" in line and not any(out.iterdir())


def test_a_flat_test_folder_is_left_alone_beside_val(run, data):
    """Training ran on ``data`` (the ``run`` fixture) with its flat test/ beside val/: val/ is the held-out split."""
    dataset = open_dataset(data)
    assert dataset.heldout.root == data / "val" and dataset.classes == WNIDS
    assert not any("/test/" in path for path, _ in dataset.train.items + dataset.heldout.items)


def test_a_flat_test_folder_alone_points_at_the_submission(run, data, tmp_path, capsys):
    root = tmp_path / "no-val"
    root.mkdir()
    for split in ("train", "test"):
        (root / split).symlink_to(data / split)
    line = user_error(capsys, ["train", "--data", str(root), "--out", str(tmp_path / "r"), *CPU])
    assert "--submission" in line and not (tmp_path / "r").exists()
    assert "--submission" in user_error(capsys, ["eval", str(run), "--data", str(root), *CPU])
