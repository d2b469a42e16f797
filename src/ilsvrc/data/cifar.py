"""CIFAR-10 and CIFAR-100 as torchvision downloads them, packed bit for bit.

torchvision's ``CIFAR10`` and ``CIFAR100`` download Krizhevsky's Python
pickles: ``cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``,
``test_batch``, ``batches.meta`` with the ``label_names``) and
``cifar-100-python/`` (``train``, ``test``, ``meta`` with the
``fine_label_names``; the fine labels are the classes, the coarse ones are
not kept). Each holds a
``uint8`` array of rows of 3072 bytes: an image's red, green and blue 32x32
planes, one after another, exactly the raw store's (3, 32, 32) layout. So

    ilsvrc pack DIR OUT

where DIR is such a folder, or holds one, writes a raw store at 32x32 whose
pixels are the pickles' own, bit for bit, with the classes in the label
order (class index = the pickle's label) and the training statistics: the
training split is the data batches (``train`` for CIFAR-100), the held-out
split ``test`` is the test batch. ``--size`` and ``--format`` may be left
out or given as 32 and raw; anything else is a one-line error, for these
pixels are the dataset (rescaling or JPEG would lose the original pixels
this exists to keep).

``--data DIR`` on the pickles themselves is a one-line error giving the
``ilsvrc pack`` command: packing writes a new folder the size of the
dataset, and only ``pack`` writes one where the user says. ``--data
cifar10`` or ``--data cifar100``, when no dataset of that name is under
``$ILSVRC_DATA``, in the cache or here, downloads the pickles with
torchvision into ``$ILSVRC_CACHE/datasets/.NAME.download``, packs them into
``$ILSVRC_CACHE/datasets/NAME`` and removes the download (``default.find``);
an interrupted download or pack is taken up again by the next command.

The pickles are read as torchvision reads them (``encoding="latin1"``), by
an unpickler that makes nothing but numpy arrays: a pickle naming any other
class is refused rather than run.
"""

import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError, first_line
from .store import check_out, is_store, write_store

SIZE = 32  # CIFAR's images are 32x32; the store keeps them so


@dataclass(frozen=True)
class Layout:
    """One of torchvision's CIFAR folders: its files and the keys in them."""

    name: str  # the dataset's name for --data
    folder: str  # torchvision's base_folder
    train: tuple[str, ...]
    test: str
    meta: str
    names_key: str
    labels_key: str


LAYOUTS = (
    Layout("cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
           "batches.meta", "label_names", "labels"),
    Layout("cifar100", "cifar-100-python", ("train",), "test", "meta", "fine_label_names", "fine_labels"),
)
NAMES = {layout.name: layout for layout in LAYOUTS}

# What a CIFAR pickle may name: numpy's array reconstruction, and nothing else.
_SAFE = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")} | {
    (f"numpy.{core}.{module}", name) for core in ("core", "_core")
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _SAFE:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR pickle does not")
        return super().find_class(module, name)


def locate(root) -> tuple[Path, Layout] | None:
    """The folder of CIFAR pickles that ``root`` is, or holds (as torchvision's
    ``root`` does), and its layout; None when it is neither."""
    root = Path(root).expanduser()
    for layout in LAYOUTS:
        if (root / layout.meta).is_file() and (root / layout.train[0]).is_file():
            return root, layout
    held = [layout for layout in LAYOUTS if (root / layout.folder).is_dir()]
    if len(held) > 1:
        raise UserError(f"{root} holds both {' and '.join(layout.folder for layout in held)}; name one of them")
    return (root / held[0].folder, held[0]) if held else None


def _load(path: Path) -> dict:
    """The dict pickled in ``path``, its keys as text; a UserError naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            d = _Unpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise UserError(f"{path} is missing: not a whole CIFAR folder as torchvision downloads it") from None
    except Exception as e:
        raise UserError(f"{path} is not a CIFAR pickle ({e})") from None
    if not isinstance(d, dict):
        raise UserError(f"{path} is not a CIFAR pickle (it holds a {type(d).__name__}, not a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def classes(folder: Path, layout: Layout) -> list[str]:
    """The class names in label order, as the meta file names them."""
    path = folder / layout.meta
    names = _load(path).get(layout.names_key)
    if not isinstance(names, list) or not names:
        raise UserError(f"{path} has no list {layout.names_key!r} of class names")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def read_batch(path: Path, labels_key: str, n_classes: int) -> tuple[np.ndarray, list[int]]:
    """A batch's images, (N, 3072) uint8 rows (each (3, 32, 32) channel-major), and their labels."""
    d = _load(path)
    data, labels = d.get("data"), d.get(labels_key)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3 * SIZE * SIZE):
        raise UserError(f"{path}: its 'data' is not a uint8 array of rows of {3 * SIZE * SIZE} bytes")
    if not (isinstance(labels, list | tuple | np.ndarray) and len(labels) == len(data)
            and all(isinstance(y, int | np.integer) and 0 <= y < n_classes for y in labels)):
        raise UserError(f"{path}: its {labels_key!r} are not {len(data)} labels in [0, {n_classes})")
    return np.require(data, requirements=["C", "W"]), [int(y) for y in labels]


def _rows(batches: list[tuple[Path, np.ndarray, list[int]]]):
    """``write_store``'s items: (image, raw payload, label, name) for each row of ``batches``."""
    for path, data, labels in batches:
        for i, (row, label) in enumerate(zip(data, labels)):
            yield torch.from_numpy(row).view(3, SIZE, SIZE), row, label, f"{path}[{i}]"


def pack_cifar(data, out, *, size: int | None = None, encoding: str | None = None, part_mib: float = 1024,
               progress: bool = True) -> dict:
    """Pack the CIFAR pickles at ``data`` (the folder, or one holding it) into
    the raw store ``out``, bit for bit; its manifest."""
    out = Path(out)
    bad = ([f"--size {size}"] if size not in (None, SIZE) else []) + ([f"--format {encoding}"] if encoding not in (None, "raw") else [])
    if bad:
        raise UserError(f"CIFAR packs as its own pixels, raw at {SIZE}x{SIZE}, not {' '.join(bad)}:"
                        f" leave out --size and --format (or give --size {SIZE} --format raw)")
    if part_mib <= 0:
        raise UserError("--part-size must be positive")
    check_out(out)
    found = locate(data)
    if found is None:
        raise UserError(f"{data} is not a CIFAR folder (cifar-10-batches-py or cifar-100-python, or one holding it)")
    folder, layout = found
    names = classes(folder, layout)
    splits = {}
    for split, files in (("train", layout.train), ("test", (layout.test,))):  # every file read and checked first
        batches = [(folder / f, *read_batch(folder / f, layout.labels_key, len(names))) for f in files]
        splits[split] = (sum(len(labels) for _, _, labels in batches), _rows(batches))
    return write_store(out, names, splits, size=SIZE, encoding="raw", quality=None, part_mib=part_mib,
                       source=folder, progress=progress)


def download_cifar(name: str, root: Path) -> Path:
    """Download CIFAR ``name`` (cifar10, cifar100) with torchvision under ``root``; its pickles' folder."""
    from torchvision.datasets import CIFAR10, CIFAR100

    kind = {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]
    kind(str(root), train=True, download=True)  # one archive holds both splits
    return root / NAMES[name].folder


def pack_downloaded(name: str, root: Path, download) -> Path:
    """``root/name``: CIFAR ``name`` downloaded by ``download(name, folder)``
    into ``root/.name.download``, packed, and the download removed; a
    UserError in one line when the download fails (and nothing left). An
    interrupted pack leaves the download, which torchvision checks and keeps."""
    out, where = root / name, root / f".{name}.download"
    try:
        folder = download(name, where)
    except Exception as e:
        shutil.rmtree(where, ignore_errors=True)
        raise UserError(f"no dataset {name!r} here, in $ILSVRC_DATA or in {root}, and it could not be downloaded"
                        f" ({first_line(e)}); pass --data DIR or set ILSVRC_DATA") from None
    pack_cifar(folder, out)
    shutil.rmtree(where, ignore_errors=True)
    return out


def pickles_at(root) -> tuple[Path, Layout] | None:
    """``locate(root)``, unless ``root`` is a packed store or an ImageFolder
    tree (which are read as such whatever else they hold)."""
    root = Path(root).expanduser()
    if is_store(root) or (root / "train").is_dir() or not root.is_dir():
        return None
    return locate(root)


def check_not_pickles(root: Path) -> None:
    """``--data`` on CIFAR pickles: a one-line error giving the command that packs them."""
    found = pickles_at(root)
    if found is not None:
        folder, layout = found
        raise UserError(f"{folder} is {layout.name} as torchvision downloads it (pickles); pack it once into a store"
                        f" and pass that: ilsvrc pack {folder} {layout.name}-32")

