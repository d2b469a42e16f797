"""ImageFolder-layout datasets, read as ImageNet itself is laid out.

``<root>/train/<class>/<image>`` and ``<root>/val/<class>/<image>`` (or
``test/`` as the held-out split when there is no ``val/``). Also Tiny
ImageNet's layout: ``train/<wnid>/images/<image>`` (a class folder's images
may lie in subfolders) and ``val/images/<image>`` with ``val/val_annotations.txt``
giving each image's class (``file<TAB>wnid<TAB>x<TAB>y<TAB>w<TAB>h``). Images are decoded
to RGB whatever they hold (greyscale, CMYK, a PNG behind a .JPEG name: all
occur in real ImageNet); a file nothing can decode is reported, not fatal.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from ..errors import UserError
from .images import SkippedImageWarning, decode_rgb, rescale, warn_skipped  # noqa: F401 (also imported from here)

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


def open_folder(root: str | os.PathLike, need_train: bool = True) -> Dataset:
    """Check the ImageFolder layout of ``root`` and list its images.

    With ``need_train=False`` (evaluation) a missing ``train/`` is allowed and
    the class list comes from the held-out split. ``datasets.open_dataset``
    opens a packed store as well.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist or is not a folder")
    heldout_dir = next((root / s for s in HELD_OUT if (root / s).is_dir()), None)
    train_dir = root / "train"
    if heldout_dir is None:
        raise UserError(f"{root} has no val/ or test/ folder (expected {root}/train/<class>/... and {root}/val/<class>/...)")
    if need_train and not train_dir.is_dir():
        raise UserError(f"{root} has no train/ folder (expected {root}/train/<class>/...)")
    annotated = _annotations(heldout_dir) if (heldout_dir / ANNOTATIONS).is_file() else None
    heldout_classes = sorted({c for _, c in annotated}) if annotated is not None else _classes(heldout_dir)
    classes = _classes(train_dir) if train_dir.is_dir() else heldout_classes
    if classes != heldout_classes:
        only_train = sorted(set(classes) - set(heldout_classes))
        only_held = sorted(set(heldout_classes) - set(classes))
        raise UserError(
            f"{train_dir} and {heldout_dir} have different classes"
            f" (only in train: {', '.join(only_train[:3]) or '-'}; only in {heldout_dir.name}: {', '.join(only_held[:3]) or '-'})"
        )
    train = _items("train", train_dir, classes) if train_dir.is_dir() else Split("train", train_dir, [])
    if annotated is not None:
        index = {c: i for i, c in enumerate(classes)}
        heldout = Split(heldout_dir.name, heldout_dir, [(path, index[c]) for path, c in annotated])
    else:
        heldout = _items(heldout_dir.name, heldout_dir, classes)
    return Dataset(root, classes, train, heldout)


def _annotations(folder: Path) -> list[tuple[str, str]]:
    """(image path, class) for each line ``file<TAB>wnid<TAB>...`` of Tiny
    ImageNet's ``folder/val_annotations.txt``, its images in ``folder/images/``."""
    path = folder / ANNOTATIONS
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise UserError(f"{path}, line {n}: expected FILE<TAB>CLASS<TAB>..., not {line[:60]!r}")
        image = folder / "images" / fields[0]
        if not image.is_file():
            raise UserError(f"{path}, line {n}: {image} does not exist (expected {folder}/images/<image>)")
        items.append((str(image), fields[1]))
    return items


class Rescaled(torch.utils.data.Dataset):
    """``(image rescaled to size x size, or None; its name)`` for each image of
    a split: one pass over a split in loader workers."""

    def __init__(self, split, size: int):
        self.split, self.size = split, size

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        return self.split.read(i, self.size), self.split.describe(i)
