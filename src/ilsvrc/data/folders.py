"""ImageFolder-layout datasets, read as ImageNet itself is laid out.

``<root>/train/<class>/<image>`` and ``<root>/val/<class>/<image>`` (or
``test/`` as the held-out split when there is no ``val/``; beside a ``val/``,
``test/`` is left alone: a flat, unlabelled one, as the challenge's test set
is, is for ``ilsvrc predict --submission``, submission.py). Also Tiny
ImageNet's layout: ``train/<wnid>/images/<image>`` (a class folder's images
may lie in subfolders) and ``val/images/<image>`` with ``val/val_annotations.txt``
giving each image's class (``file<TAB>wnid<TAB>x<TAB>y<TAB>w<TAB>h``). A flat ``val/`` takes
its labels from a file (``--val-labels``), and Kaggle's ImageNet, whose
``ILSVRC/Data/CLS-LOC/val/`` is flat, from its own (``labels.py``). Images are decoded
to RGB whatever they hold (greyscale, CMYK, a PNG behind a .JPEG name: all
occur in real ImageNet); a file nothing can decode is reported, not fatal.
"""

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from ..errors import UserError
from .classnames import read_synsets
from .images import SkippedImageWarning, decode_rgb, rescale, warn_skipped  # noqa: F401 (also imported from here)
from .labels import KAGGLE_LABELS, KAGGLE_SYNSETS, check_flat, kaggle_layout, loose_images, read_labels

HELD_OUT = ("val", "test")  # the held-out split: val/ if present, else test/
ANNOTATIONS = "val_annotations.txt"  # Tiny ImageNet's held-out labels, beside images/


@dataclass
class Split:
    """One split of an ImageFolder dataset: its folder and (path, label) items.

    Every kind of split (this one, and the packed store's) answers ``len``,
    ``labels``, ``read(i, size)`` (the image rescaled to ``size x size``, or
    None when it cannot be decoded), ``describe(i)`` (a name for messages)
    and ``fingerprint()`` (what changes when the data changes).
    """

    name: str
    root: Path
    items: list[tuple[str, int]]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.items]

    def read(self, index: int, size: int) -> torch.Tensor | None:
        img = decode_rgb(self.items[index][0])
        return None if img is None else rescale(img, size)

    def original(self, index: int) -> torch.Tensor | None:
        """The whole image as decoded, not rescaled (GoogLeNet's 144 test crops)."""
        return decode_rgb(self.items[index][0])

    def describe(self, index: int) -> str:
        return self.items[index][0]

    def fingerprint(self) -> str:
        h = hashlib.sha256(str(self.root.resolve()).encode())
        for path, label in self.items:
            st = os.stat(path)
            h.update(f"{path}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()


@dataclass
class Dataset:
    """A dataset root with its training split, held-out split and class list."""

    root: Path
    classes: list[str]
    train: Split
    heldout: Split
    names: dict[str, str] = field(default_factory=dict)  # a class's name where the dataset gives one (classnames.py)
    val_labels: Path | None = None  # the labels file given for a flat held-out folder (labels.py)


def _classes(folder: Path) -> list[str]:
    try:
        return find_classes(str(folder))[0]
    except FileNotFoundError:
        raise UserError(f"{folder} has no class folders (expected {folder}/<class>/<image>)") from None


def _items(name: str, folder: Path, classes: list[str]) -> Split:
    index = {c: i for i, c in enumerate(classes)}
    try:
        items = make_dataset(str(folder), index, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as e:
        raise UserError(f"{folder}: {str(e).splitlines()[0]}") from None
    return Split(name, folder, items)


def open_folder(root: str | os.PathLike, need_train: bool = True, val_labels=None) -> Dataset:
    """Check the ImageFolder layout of ``root`` and list its images.

    With ``need_train=False`` (evaluation) a missing ``train/`` is allowed and
    the class list comes from the held-out split. ``val_labels``: the labels
    file of a flat ``val/`` (or ``test/``), or None; Kaggle's layout brings
    its own (``labels.py``). ``datasets.open_dataset`` opens a packed store
    as well.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist or is not a folder")
    images, kaggle = kaggle_layout(root)
    heldout_dir = next((images / s for s in HELD_OUT if (images / s).is_dir()), None)
    train_dir = images / "train"
    if heldout_dir is None:
        raise UserError(f"{root} has no val/ or test/ folder (expected {root}/train/<class>/... and {root}/val/<class>/...)")
    if need_train and not train_dir.is_dir():
        raise UserError(f"{root} has no train/ folder (expected {root}/train/<class>/...)")
    labels = Path(val_labels).expanduser() if val_labels is not None else None
    if labels is None and kaggle is not None and (kaggle / KAGGLE_LABELS).is_file() and loose_images(heldout_dir):
        labels = kaggle / KAGGLE_LABELS  # Kaggle's flat val/, labelled beside it
    synsets = next((p for p in (kaggle, labels and labels.parent) if p and (p / KAGGLE_SYNSETS).is_file()), None)
    names = read_synsets(synsets / KAGGLE_SYNSETS) if synsets else {}
    train_classes = _in_order(_classes(train_dir), names, synsets) if train_dir.is_dir() else None
    if labels is not None:  # the labels name classes of train/, else of the synset mapping, else any
        known, where = (train_classes, train_dir) if train_classes else (list(names), synsets and synsets / KAGGLE_SYNSETS)
        annotated = read_labels(labels, heldout_dir, known or None, str(where))
        classes = known or sorted({c for _, c in annotated})
    else:
        annotated, classes = _heldout_classes(heldout_dir, train_dir, train_classes)
    train = _items("train", train_dir, classes) if train_dir.is_dir() else Split("train", train_dir, [])
    if annotated is not None:
        index = {c: i for i, c in enumerate(classes)}
        heldout = Split(heldout_dir.name, heldout_dir, [(path, index[c]) for path, c in annotated])
    else:
        heldout = _items(heldout_dir.name, heldout_dir, classes)
    given = None if val_labels is None else labels.resolve()
    return Dataset(root, classes, train, heldout, {c: names[c] for c in classes if c in names}, given)


def _in_order(classes: list[str], names: dict[str, str], synsets: Path | None) -> list[str]:
    """The classes of train/ in the order of the synset mapping ``names``
    (Kaggle's ``LOC_synset_mapping.txt``: the class index users expect), or
    as they are (sorted) without one."""
    if not names:
        return classes
    unknown = next((c for c in classes if c not in names), None)
    if unknown is not None:
        raise UserError(f"class {unknown} of train/ is not in {synsets / KAGGLE_SYNSETS}")
    present = set(classes)
    return [c for c in names if c in present]


def _heldout_classes(heldout_dir: Path, train_dir: Path, train_classes: list[str] | None):
    """``(Tiny ImageNet's (image, class) pairs or None, the classes)`` of a
    held-out split in class folders (or with ``val_annotations.txt``), its
    classes those of train/."""
    annotations = heldout_dir / ANNOTATIONS  # Tiny ImageNet's lines FILE<TAB>CLASS<TAB>box, its images in images/
    annotated = read_labels(annotations, heldout_dir / "images", None) if annotations.is_file() else None
    if annotated is None:
        try:
            check_flat(heldout_dir)
        except UserError:
            if heldout_dir.name != "test":
                raise
            raise UserError(f"{heldout_dir} holds images but no class folders, as the challenge's unlabelled test set does:"
                            f" `ilsvrc predict CHECKPOINT {heldout_dir} --submission OUT --devkit DEVKIT` classifies it;"
                            " to train or evaluate, give a val/ of class folders (or the labels with --val-labels FILE)") from None
    heldout_classes = sorted({c for _, c in annotated}) if annotated is not None else _classes(heldout_dir)
    classes = train_classes if train_classes is not None else heldout_classes
    if sorted(classes) != heldout_classes:
        only_train = sorted(set(classes) - set(heldout_classes))
        only_held = sorted(set(heldout_classes) - set(classes))
        raise UserError(
            f"{train_dir} and {heldout_dir} have different classes"
            f" (only in train: {', '.join(only_train[:3]) or '-'}; only in {heldout_dir.name}: {', '.join(only_held[:3]) or '-'})"
        )
    return annotated, classes


class Rescaled(torch.utils.data.Dataset):
    """``(image rescaled to size x size, or None; its name)`` for each image of
    a split: one pass over a split in loader workers."""

    def __init__(self, split, size: int):
        self.split, self.size = split, size

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        return self.split.read(i, self.size), self.split.describe(i)
