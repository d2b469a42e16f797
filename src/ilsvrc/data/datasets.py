"""A dataset by its root, whichever kind it is: an ImageFolder tree
(folders.py) or a packed store (store.py), the one choice above both
(CIFAR's pickles are packed first: cifar.py; ILSVRC-2012's archives too: archives.py)."""

import os
from pathlib import Path

from ..device import default_workers
from ..errors import UserError
from .archives import check_not_archives
from .cifar import check_not_pickles
from .folders import Dataset, open_folder
from .stats import Stats, cache_path, load_or_compute
from .store import is_store, open_store


def open_dataset(root: str | os.PathLike, need_train: bool = True, val_labels=None) -> Dataset:
    """The dataset at ``root``: a packed store, or else an ImageFolder tree
    whose layout is checked and whose images are listed.

    With ``need_train=False`` (evaluation) a missing ``train/`` is allowed and
    the class list comes from the held-out split. ``val_labels``: the labels
    file of a flat ``val/`` (``labels.py``; a store holds its labels). CIFAR's
    pickles as torchvision downloads them, and ILSVRC-2012's archives as
    image-net.org serves them (archives.py), are a one-line error giving the
    command that packs them.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist or is not a folder")
    check_not_pickles(root)
    check_not_archives(root)
    if not is_store(root):
        return open_folder(root, need_train, val_labels)
    if val_labels is not None:
        raise UserError(f"--val-labels labels a flat val/ folder; {root} is a packed store, which holds its labels")
    return open_store(root, need_train)


def for_dataset(root, size: int, workers: int | None = None, progress: bool = True,
                val_labels=None) -> tuple[Stats, Path]:
    """The statistics of the training split of ``root`` rescaled to ``size``
    (a recipe's ``resize``), and where they are cached."""
    split = open_dataset(root, val_labels=val_labels).train
    return load_or_compute(split, size, default_workers(workers), progress), cache_path(split, size)
