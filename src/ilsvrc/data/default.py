"""Where datasets are: named ones, and the default, Imagenette.

``--data NAME`` (``data="NAME"`` in Python), a name without a path
separator, is looked for under ``$ILSVRC_DATA`` and then the cache
(``$ILSVRC_CACHE/datasets``) before it is taken as a path, so that
``--data cifar10`` works from any folder; ``ilsvrc data`` lists what is
found there. Without ``--data``: ``$ILSVRC_DATA/imagenette`` when
``ILSVRC_DATA`` is set; else Imagenette (320 px) in the cache, downloaded
with torchvision's ``Imagenette`` dataset the first time. ``cifar10`` and
``cifar100``, when found nowhere (nor as a folder here), are downloaded
with torchvision the first time and packed raw, bit for bit, into the cache
(``cifar.py``).
"""

import json
import os
from pathlib import Path

from ..errors import UserError, first_line
from .cifar import NAMES as CIFAR
from .cifar import download_cifar, pack_downloaded
from .stats import cache_dir

HINT = "pass --data DIR (a folder with train/<class>/<image> and val/<class>/<image>) or set ILSVRC_DATA"


def download_imagenette(root: Path) -> Path:
    """Download and unpack Imagenette (320 px) under ``root``; its folder."""
    from torchvision.datasets import Imagenette

    Imagenette(str(root), split="train", size="320px", download=True)
    return root / "imagenette2-320"


def default_data(download=None) -> Path:
    """The folder ``ilsvrc train`` uses when no ``--data`` is given."""
    download = download or download_imagenette
    env = os.environ.get("ILSVRC_DATA")
    if env:
        folder = Path(env).expanduser() / "imagenette"
        if not folder.is_dir():
            raise UserError(f"ILSVRC_DATA is set but {folder} does not exist; {HINT}")
        return folder
    root = cache_dir() / "datasets"
    folder = root / "imagenette2-320"
    if (folder / "train").is_dir() and (folder / "val").is_dir():
        return folder
    try:
        return download(root)
    except Exception as e:
        raise UserError(f"no data: Imagenette is not in {root} and could not be downloaded ({first_line(e)}); {HINT}") from None


CACHED = {"imagenette": "imagenette2-320"}  # the cache's folder for a dataset torchvision downloads under a name


def homes() -> list[Path]:
    """Where a dataset given by name is looked for, in order."""
    env = os.environ.get("ILSVRC_DATA")
    return ([Path(env).expanduser()] if env else []) + [cache_dir() / "datasets"]


def _is_name(text: str) -> bool:
    return bool(text) and "/" not in text and os.sep not in text and not text.startswith((".", "~"))


def located(name: str, also=()) -> Path | None:
    """The folder of dataset ``name`` under ``homes()``, then the folders
    ``also`` (a benchmark's ``../shared/datasets``), or None: the one lookup
    of a dataset by name that ``find``, the experiments and the benchmarks
    share."""
    for home in [*homes(), *map(Path, also)]:
        for folder in (home / name, home / CACHED.get(name, name)):
            if folder.is_dir():
                return folder
    return None


def find(data, download=None) -> Path:
    """The folder ``data`` stands for: a dataset name under ``homes()``
    (``cifar10``, ``imagenette``), else a path; ``cifar10`` and ``cifar100``
    found nowhere are downloaded by ``download(name, folder)`` (torchvision's,
    unless a test stands in for the network) and packed into the cache."""
    text = str(data)
    if _is_name(text):
        if (folder := located(text)) is not None:
            return folder
        if text in CIFAR and not Path(text).exists():
            return pack_downloaded(text, cache_dir() / "datasets", download or download_cifar)
        if not Path(text).exists():
            raise UserError(f"no dataset {text!r}: not a folder here, nor in {' or '.join(map(str, homes()))}; "
                            f"`ilsvrc data` lists the datasets found there")
    return Path(text).expanduser()


def available() -> list[dict]:
    """The datasets under ``homes()``: name, path, kind (folder or packed
    store) and the number of classes, for ``ilsvrc data``."""
    from .labels import kaggle_layout
    from .store import MANIFEST

    found = []
    for home in homes():
        for folder in sorted(home.iterdir()) if home.is_dir() else []:
            if (folder / MANIFEST).is_file():
                manifest = json.loads((folder / MANIFEST).read_text())
                found.append({"name": folder.name, "path": str(folder), "kind": f"packed store, {manifest['size']} px",
                              "classes": len(manifest["classes"])})
            elif (train := kaggle_layout(folder)[0] / "train").is_dir():  # (Kaggle's: ILSVRC/Data/CLS-LOC/train)
                classes = [c for c in train.iterdir() if c.is_dir()]
                found.append({"name": folder.name, "path": str(folder), "kind": "image folder", "classes": len(classes)})
    return found
