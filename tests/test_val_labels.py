"""Flat validation folders with their labels beside them (issue 24): Kaggle's
ImageNet as it is downloaded, and --val-labels FILE for any flat val/.

The generated trees keep their truth apart from the files: each image's
class is drawn at random and painted as its colour, so that a label can be
checked against the generator's record and against the pixels."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

from ilsvrc import UserError
from ilsvrc.cli import main
from ilsvrc.data import labels as labels_module
from ilsvrc.data.classnames import display_name
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.store import MANIFEST

from conftest import user_error

# the synset mapping's order (the class index users expect), on purpose not sorted; n09999999 is no
# ILSVRC-2012 class (its name can only come from the mapping), n04000000 is in the mapping but not in train/
MAPPING = ["n02119789", "n01440764", "n09999999", "n04000000", "n02012849"]
NAMES = {"n02119789": "kit fox, Vulpes macrotis", "n01440764": "tench, Tinca tinca", "n09999999": "zorblax, made-up thing",
         "n04000000": "absent, not in train", "n02012849": "crane"}
TRAIN = ["n01440764", "n02012849", "n02119789", "n09999999"]  # the class folders of train/
COLOURS = {"n01440764": (220, 40, 40), "n02012849": (40, 220, 40), "n02119789": (40, 40, 220), "n09999999": (220, 220, 40)}
KAGGLE = ("ILSVRC", "Data", "CLS-LOC")


def _paint(path, wnid, rng):
    pixels = np.array(COLOURS[wnid], dtype=float) + rng.normal(0, 4, (8, 8, 3))
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=95)


def make_tree(images, seed=0) -> dict[str, str]:
    """train/<wnid>/ (two images each), a flat val/ of six images and a flat,
    unlabelled test/ under ``images``; the val images' true classes by file name."""
    rng = np.random.default_rng(seed)
    for wnid in TRAIN:
        (images / "train" / wnid).mkdir(parents=True)
        for i in range(2):
            _paint(images / "train" / wnid / f"{wnid}_{i}.JPEG", wnid, rng)
    (images / "val").mkdir()
    (images / "test").mkdir()
    numbers = sorted(rng.choice(50000, 6, replace=False) + 1)
    truth = dict(zip((f"ILSVRC2012_val_{n:08d}.JPEG" for n in numbers), rng.permutation(TRAIN + TRAIN[:2]).tolist()))
    for name, wnid in truth.items():
        _paint(images / "val" / name, wnid, rng)
    for i in range(2):
        _paint(images / "test" / f"ILSVRC2012_test_{i + 1:08d}.JPEG", TRAIN[i], rng)
    return truth


def kaggle_rows(truth, seed=0) -> list[str]:
    """LOC_val_solution.csv's lines: its header, then one row an image, in no order, some with
    several boxes (the class repeated before each box)."""
    rng = np.random.default_rng(seed + 1)
    rows = []
    for k, (name, wnid) in enumerate(truth.items()):
        boxes = " ".join(f"{wnid} {rng.integers(0, 4)} {rng.integers(0, 4)} {rng.integers(4, 8)} {rng.integers(4, 8)}"
                         for _ in range(1 + k % 3))
        rows.append(f"{name.removesuffix('.JPEG')},{boxes}")
    return ["ImageId,PredictionString"] + [rows[i] for i in rng.permutation(len(rows))]


@pytest.fixture
def kaggle(tmp_path):
    """Kaggle's ImageNet in miniature: (its root, the val images' truth)."""
    root = tmp_path / "imagenet-object-localization-challenge"
    truth = make_tree(root.joinpath(*KAGGLE))
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {NAMES[w]}\n" for w in MAPPING))
    (root / "LOC_val_solution.csv").write_text("\n".join(kaggle_rows(truth)) + "\n")
    (root / "LOC_train_solution.csv").write_text("ImageId,PredictionString\n")
    return root, truth


@pytest.fixture
def plain(tmp_path):
    """An ImageFolder root whose val/ is flat: (its root, the val images' truth)."""
    return tmp_path / "plain", make_tree(tmp_path / "plain", seed=5)


def _painted(split, i) -> str:
    """The class whose colour image ``i`` of ``split`` is painted in."""
    mean = split.read(i, 8).float().mean(dim=(1, 2)).numpy()
    return min(COLOURS, key=lambda w: np.abs(mean - np.array(COLOURS[w])).sum())


def check_labels(dataset, truth, classes):
    assert dataset.classes == classes
    held = dataset.heldout
    assert held.name == "val" and len(held) == len(truth)
    got = {name.rpartition("/")[2]: dataset.classes[label] for name, label in held.items}
    assert got == truth
    assert [_painted(held, i) for i in range(len(held))] == [dataset.classes[c] for c in held.labels]
    assert [_painted(dataset.train, i) for i in range(len(dataset.train))] == [dataset.classes[c] for c in dataset.train.labels]


IN_MAPPING_ORDER = [w for w in MAPPING if w in TRAIN]


@pytest.mark.parametrize("given", ["root", "CLS-LOC"])
def test_kaggle_layout_opens_as_it_is(kaggle, given):
    root, truth = kaggle
    dataset = open_dataset(root if given == "root" else root.joinpath(*KAGGLE))
    check_labels(dataset, truth, IN_MAPPING_ORDER)
    assert dataset.val_labels is None  # found, not given: nothing to remember
    assert dataset.names == {w: NAMES[w].split(",")[0] for w in IN_MAPPING_ORDER}
    assert display_name("n09999999", dataset.names) == "zorblax" and display_name("n02012849", dataset.names) == "crane"
    assert display_name("n02012849") == "crane bird"  # without the dataset's names: ILSVRC-2012's


def test_kaggle_layout_packs_with_its_labels_and_names(kaggle, tmp_path, capsys):
    root, truth = kaggle
    assert main(["pack", str(root), str(tmp_path / "store"), "--size", "8", "--workers", "0", "--no-progress"]) == 0
    assert "val: 6 images" in capsys.readouterr().out
    folder, store = open_dataset(root), open_dataset(tmp_path / "store")
    assert store.classes == IN_MAPPING_ORDER and store.names == folder.names
    assert store.heldout.labels == folder.heldout.labels and store.train.labels == folder.train.labels
    assert [_painted(store.heldout, i) for i in range(len(store.heldout))] == [store.classes[c] for c in store.heldout.labels]
    assert sorted(store.classes[c] for c in store.heldout.labels) == sorted(truth.values())
    assert main(["stats", str(root), "--image-size", "8", "--json", "--workers", "0", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 2 * len(TRAIN)


def _write_labels(path, truth, form):
    names = sorted(truth)
    lines = {
        "kaggle": kaggle_rows(truth, seed=3),
        "space": [f"{n} {truth[n]}" for n in reversed(names)],
        "csv": [f"{n},{truth[n]}" for n in names[::2] + names[1::2]],
        "tab": [f"{n}\t{truth[n]}\t0\t0\t8\t8" for n in names],  # as Tiny ImageNet's val_annotations.txt
        "wnids": [truth[n] for n in names],  # one class a line, in file name order
    }[form]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("form", ["kaggle", "space", "csv", "tab", "wnids"])
def test_a_flat_val_takes_its_labels_from_a_file(plain, tmp_path, form):
    root, truth = plain
    labels = _write_labels(tmp_path / f"labels-{form}.txt", truth, form)
    dataset = open_dataset(root, val_labels=labels)
    check_labels(dataset, truth, TRAIN)  # no synset mapping: the sorted class folders
    assert dataset.val_labels == labels.resolve()


def _devkit(folder, truth, ids: dict[str, int]):
    """The devkit's data/ folder: the ground truth (ILSVRC2012_IDs a line, in file name order) and meta.mat."""
    folder.mkdir()
    (folder / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{ids[truth[n]]}\n" for n in sorted(truth)))
    return folder / "ILSVRC2012_validation_ground_truth.txt"


DEVKIT_IDS = {"n02119789": 1, "n09999999": 2, "n02012849": 3, "n01440764": 4}  # the devkit's order is not the wnids'


def test_the_devkit_ground_truth_goes_through_meta_mat(plain, tmp_path, monkeypatch):
    root, truth = plain
    truth_file = _devkit(tmp_path / "data", truth, DEVKIT_IDS)
    line = user_error_of(lambda: open_dataset(root, val_labels=truth_file))
    assert "meta.mat" in line and "not beside it" in line
    (tmp_path / "data" / "meta.mat").write_bytes(b"")
    for name in ("scipy", "scipy.io"):  # no scipy (imported already or not): one line saying what to install
        monkeypatch.setitem(sys.modules, name, None)
    assert "pip install scipy" in user_error_of(lambda: open_dataset(root, val_labels=truth_file))
    monkeypatch.setattr(labels_module, "devkit_wnids", lambda meta, truth: {i: w for w, i in DEVKIT_IDS.items()})
    check_labels(open_dataset(root, val_labels=truth_file), truth, TRAIN)


def test_the_devkit_meta_mat_is_read_with_scipy(plain, tmp_path):
    io = pytest.importorskip("scipy.io")
    root, truth = plain
    truth_file = _devkit(tmp_path / "data", truth, DEVKIT_IDS)
    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O")]
    rows = [(i, w, w, "", 0) for w, i in DEVKIT_IDS.items()] + [(1001, "n00001740", "entity", "", 3)]
    io.savemat(tmp_path / "data" / "meta.mat", {"synsets": np.array(rows, dtype=fields).reshape(-1, 1)})
    check_labels(open_dataset(root, val_labels=truth_file), truth, TRAIN)


def user_error_of(call) -> str:
    with pytest.raises(UserError) as e:
        call()
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_flat_val_without_labels_names_the_option(plain, kaggle, tmp_path, capsys):
    for root in (plain[0], kaggle[0]):
        (kaggle[0] / "LOC_val_solution.csv").unlink(missing_ok=True)
        line = user_error(capsys, ["pack", str(root), str(tmp_path / "store"), "--workers", "0", "--no-progress"])
        assert "holds images but no class folders" in line and "--val-labels FILE" in line and "LOC_val_solution.csv" in line
    assert not (tmp_path / "store").exists()


def _broken(path, truth, change):
    rows = kaggle_rows(truth)
    path.write_text("\n".join(change(rows)) + "\n")
    return path


@pytest.mark.parametrize("case, change, says", [
    ("missing image", lambda rows: rows + ["ILSVRC2012_val_00050001,n01440764 1 1 5 5"],
     "ILSVRC2012_val_00050001 does not exist"),
    ("unknown wnid", lambda rows: [rows[0], rows[1].split(",")[0] + ",n04000000 1 1 5 5"] + rows[2:],
     "n04000000 is not a class of"),
    ("no row", lambda rows: rows[:-1], "has no label in"),
    ("twice", lambda rows: rows + rows[-1:], "is labelled twice"),
])
def test_bad_labels_are_one_line(plain, tmp_path, capsys, case, change, says):
    root, truth = plain
    labels = _broken(tmp_path / "labels.csv", truth, change)
    line = user_error(capsys, ["pack", str(root), str(tmp_path / "store"), "--val-labels", str(labels),
                               "--workers", "0", "--no-progress"])
    assert says in line and str(labels) in line, line
    assert not (tmp_path / "store").exists()


def test_bad_kaggle_labels_are_one_line(kaggle, capsys):
    root, truth = kaggle
    _broken(root / "LOC_val_solution.csv", truth, lambda rows: [rows[0], rows[1].split(",")[0] + ",n04000000 1 1 5 5"] + rows[2:])
    line = user_error(capsys, ["stats", str(root), "--workers", "0", "--no-progress"])
    assert "n04000000 is not a class of" in line and "train" in line
    _broken(root / "LOC_val_solution.csv", truth, lambda rows: rows[:-1])
    assert "has no label in" in user_error(capsys, ["stats", str(root), "--workers", "0", "--no-progress"])


def test_val_labels_for_folders_that_need_none_are_one_line(tiny_data, plain, tmp_path, capsys):
    labels = _write_labels(tmp_path / "labels.txt", plain[1], "space")
    line = user_error(capsys, ["stats", str(tiny_data), "--val-labels", str(labels), "--no-progress"])
    assert "class folders, not images" in line
    assert main(["pack", str(plain[0]), str(tmp_path / "store"), "--val-labels", str(labels), "--size", "8",
                 "--workers", "0", "--no-progress"]) == 0
    line = user_error(capsys, ["stats", str(tmp_path / "store"), "--val-labels", str(labels), "--no-progress"])
    assert "packed store" in line


def test_train_and_eval_remember_the_labels_file(plain, tmp_path, capsys):
    root, truth = plain
    labels = _write_labels(tmp_path / "labels.txt", truth, "wnids")
    out = tmp_path / "run"
    assert main(["train", "--recipe", "resnet-cifar", "--model", "resnet-20", "--data", str(root), "--val-labels", str(labels),
                 "--out", str(out), "--set", "iterations=1", "--device", "cpu", "--workers", "0", "--no-progress"]) == 0
    capsys.readouterr()
    assert json.loads((out / "config.json").read_text())["val_labels"] == str(labels.resolve())
    assert main(["train", "--recipe", "resnet-cifar", "--model", "resnet-20", "--data", str(root), "--out", str(out), "--resume",
                 "--set", "iterations=2", "--device", "cpu", "--workers", "0", "--no-progress"]) == 0  # the run's labels again
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["step"] == 2
    assert main(["eval", str(out), "--json", "--workers", "0", "--no-progress"]) == 0  # the checkpoint's data, labels and all
    assert json.loads(capsys.readouterr().out)["images"] == len(truth)
    assert main(["eval", str(out), "--data", str(root), "--json", "--workers", "0", "--no-progress"]) == 0  # the same data
    assert json.loads(capsys.readouterr().out)["images"] == len(truth)
    other = tmp_path / "other"
    make_tree(other, seed=7)
    line = user_error(capsys, ["eval", str(out), "--data", str(other), "--workers", "0", "--no-progress"])
    assert "--val-labels" in line  # other data: its own labels are given, or there are none


def test_the_store_manifest_keeps_the_names(kaggle, tmp_path):
    from ilsvrc.data.store import pack

    pack(kaggle[0], tmp_path / "store", size=8, workers=0, progress=False)
    manifest = json.loads((tmp_path / "store" / MANIFEST).read_text())
    assert manifest["names"]["n09999999"] == "zorblax" and manifest["classes"] == IN_MAPPING_ORDER


def test_a_network_trained_on_kaggle_predicts_with_the_mapping_names(kaggle, tmp_path):
    from ilsvrc import predict, train

    root, truth = kaggle
    train("resnet-cifar", root, tmp_path / "run", model="resnet-20", iterations=1, device="cpu", workers=0, progress=False)
    image = root.joinpath(*KAGGLE, "val", sorted(truth)[0])
    shown = {t["class"]: t["name"] for t in predict(tmp_path / "run", [image], top=len(TRAIN), device="cpu")[0]["top"]}
    assert shown == {w: NAMES[w].split(",")[0] for w in TRAIN}  # the mapping's names: "crane", not "crane bird"
