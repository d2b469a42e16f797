"""ILSVRC-2012 packed from its archives as image-net.org serves them, read in place.

    ilsvrc pack DIR OUT

where DIR holds the three files of the 2012 download::

    ILSVRC2012_img_train.tar       1,000 tars n01440764.tar ..., each a class's JPEGs
    ILSVRC2012_img_val.tar         50,000 JPEGs ILSVRC2012_val_00000001.JPEG ...
    ILSVRC2012_devkit_t12.tar.gz   ILSVRC2012_devkit_t12/data/meta.mat and
                                   .../data/ILSVRC2012_validation_ground_truth.txt

writes the store that packing the same images unpacked as torchvision's
``ImageNet`` lays them out (``train/<wnid>/``, ``val/<wnid>/``) writes: the
classes are the sorted WordNet ids, the images come in the same order (class
by class, file name by file name) and are stored as the same bytes. The
classes' names are the devkit's (the first of meta.mat's ``words``), kept in
the manifest.

Nothing is extracted to disk. The tars' headers are read once (``tarfile``,
random access: the train tar's 1,000 inner tars and their 1.28 million
headers, the val tar's 50,000) to learn where each image's bytes lie; loader
workers then read those bytes there and decode, rescale and encode them as
the folder pack does. The devkit (a few MiB) is read in memory. (Streaming
the tars, mode ``"r|"``, would pass every image's bytes through one process
in order; random access lets each worker read its own images, and a resumed
pack, ``store.write_store``, start at any image without reading those before.)

Labels: a training image's class is its inner tar's name; the validation
image ILSVRC2012_val_<n> is labelled by line n of the ground truth, an
ILSVRC2012_ID that meta.mat's leaf synsets (``num_children == 0``) turn into a
WordNet id, as torchvision's ``parse_devkit_archive`` reads them (it pairs the
lines with the sorted file names: the same for the whole val tar, and still
right for a part of it).

When the train tar holds 1,000 classes, the counts are checked against the
full set's (1,281,167 train, 50,000 val images): other counts are a one-line
warning, not an error, and what is there is packed (a partial or damaged
download still makes a consistent store, and the user decides). Validation
images of a class the train tar does not hold are left out, with a warning.
A DIR holding one of the three files but not another is a one-line error
naming the missing one; ``--data`` on such a DIR is one giving this command.
"""

import io
import re
import tarfile
import warnings
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torchvision.datasets.folder import IMG_EXTENSIONS
from tqdm import tqdm

from ..device import default_workers
from ..errors import UserError
from .images import decode_rgb
from .labels import DEVKIT_META, devkit_synsets
from .store import Encoded, check_options, encoded, is_store, write_store

TRAIN, VAL, DEVKIT = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"
ARCHIVES = {  # each file: what it is, and why the pack needs it
    TRAIN: ("the train tar", "the training images are in it"),
    VAL: ("the val tar", "the validation images are in it"),
    DEVKIT: ("the devkit", "the validation labels come from it"),
}
DEVKIT_DATA = "ILSVRC2012_devkit_t12/data"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d+)\.JPEG")
FULL = {"classes": 1000, "train": 1_281_167, "val": 50_000}  # ILSVRC-2012's classification images, as served


def archives_at(root) -> bool:
    """Whether ``root`` is a folder holding any of ILSVRC-2012's three
    archives (and is not a packed store or an ImageFolder root, which are
    read as such whatever else they hold)."""
    root = Path(root).expanduser()
    if not root.is_dir() or is_store(root) or (root / "train").is_dir():
        return False
    return any((root / name).is_file() for name in ARCHIVES)


def check_not_archives(root: Path) -> None:
    """``--data`` on the archives: a one-line error giving the command that packs them."""
    if archives_at(root):
        raise UserError(f"{root} holds ILSVRC-2012's archives as image-net.org serves them; pack them once into a"
                        f" store and pass that: ilsvrc pack {root} imagenet-256")


def _paths(root: Path) -> dict[str, Path]:
    """The three archives in ``root``; a one-line error naming each one missing."""
    missing = [name for name in ARCHIVES if not (root / name).is_file()]
    if missing:
        raise UserError("; ".join(f"{ARCHIVES[name][0]} is not in {root}: {ARCHIVES[name][1]} ({name})" for name in missing))
    return {name: root / name for name in ARCHIVES}


def read_devkit(path: Path) -> tuple[dict[int, tuple[str, str]], list[int]]:
    """``(ILSVRC2012_ID -> (WordNet id, words) of the 1,000 classes, the
    ground truth: an ILSVRC2012_ID for each validation image, in file-name
    order)`` from the devkit's archive ``path``, read in memory."""
    files = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name in (DEVKIT_META, GROUND_TRUTH):
                member = tar.extractfile(f"{DEVKIT_DATA}/{name}")
                files[name] = member.read() if member else b""
    except KeyError:
        raise UserError(f"{path} holds no {DEVKIT_DATA}/{name}: not ILSVRC-2012's devkit") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:  # the system's refusal: the command's one line
            raise
        raise UserError(f"{path} is not a readable .tar.gz ({e})") from None
    synsets = devkit_synsets(io.BytesIO(files[DEVKIT_META]), f"{path}:{DEVKIT_DATA}/{DEVKIT_META}")
    where = f"{path}:{DEVKIT_DATA}/{GROUND_TRUTH}"
    truth = []
    for n, line in enumerate(files[GROUND_TRUTH].decode("latin1").rstrip().splitlines(), 1):
        if not line.strip().isdigit() or int(line) not in synsets:
            raise UserError(f"{where}, line {n}: {line.strip()[:40]!r} is not an ILSVRC2012_ID of a class of meta.mat")
        truth.append(int(line))
    if not truth:
        raise UserError(f"{where} holds no labels")
    return synsets, truth


class Index:
    """Where each image of a split lies in its tar: byte offset and size,
    class index and name in the tar, as numpy arrays (1.28 million Python
    tuples would be copied into every loader worker as they are touched)."""

    def __init__(self, rows: list[tuple[int, int, int, str]]):
        self.offsets, self.sizes, self.labels = (np.array([r[i] for r in rows], dtype=np.int64) for i in range(3))
        self.names = np.array([r[3].encode() for r in rows], dtype=np.bytes_)

    def __len__(self) -> int:
        return len(self.labels)


def _images(members: list[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
    """The image files among ``members``, by name: what ImageFolder lists (its extensions)."""
    return sorted((m for m in members if m.isfile() and m.name.lower().endswith(IMG_EXTENSIONS)), key=lambda m: m.name)


def _train_index(path: Path, progress: bool) -> tuple[list[str], Index]:
    """The classes (the inner tars' names, sorted) and where each training
    image lies in ``path``: class by class, file name by file name."""
    rows, inner = [], None
    try:
        with tarfile.open(path, "r:") as outer:  # random access: headers only, seeking past the data
            inner = sorted((m for m in outer.getmembers() if m.isfile() and m.name.endswith(".tar")), key=lambda m: m.name)
            for label, member in enumerate(tqdm(inner, desc="index train", unit="class", disable=not progress)):
                with tarfile.open(fileobj=outer.extractfile(member), mode="r:") as tar:
                    for m in _images(tar.getmembers()):  # offsets within the inner tar, which starts at the member's data
                        rows.append((member.offset_data + m.offset_data, m.size, label, f"{member.name}/{m.name}"))
    except tarfile.TarError as e:
        where = f"{path}: {member.name}" if inner else str(path)
        raise UserError(f"{where} is not a readable tar ({e})") from None
    if not inner:
        raise UserError(f"{path} holds no class tars (n01440764.tar ...): not ILSVRC-2012's training archive")
    return [PurePosixPath(m.name).stem for m in inner], Index(rows)


def _val_index(path: Path, truth: list[int], synsets: dict, classes: list[str]) -> Index:
    """Where each validation image lies in ``path``, labelled by the ground
    truth, in ImageFolder's order of ``val/<wnid>/`` (torchvision's layout):
    class by class, file name by file name."""
    index = {wnid: i for i, wnid in enumerate(classes)}
    rows, absent = [], 0
    try:
        with tarfile.open(path, "r:") as tar:
            for m in _images(tar.getmembers()):
                number = VAL_NAME.fullmatch(PurePosixPath(m.name).name)
                if number is None or not 1 <= int(number[1]) <= len(truth):
                    raise UserError(f"{path}: {m.name} is not one of the {len(truth):,} validation images the devkit"
                                    f" labels (ILSVRC2012_val_00000001.JPEG ...)")
                wnid = synsets[truth[int(number[1]) - 1]][0]
                if wnid not in index:
                    absent += 1
                    continue
                rows.append((m.offset_data, m.size, index[wnid], m.name))
    except tarfile.TarError as e:
        raise UserError(f"{path} is not a readable tar ({e})") from None
    if absent:
        warnings.warn(f"{absent} validation image(s) of {path.name} are of classes {TRAIN} does not hold: left out",
                      stacklevel=3)
    return Index(sorted(rows, key=lambda r: (r[2], r[3])))


def _check_counts(root: Path, classes: list[str], train: Index, val: Index) -> None:
    """The full set's counts, when the train tar holds all its classes: other counts are a one-line warning."""
    if len(classes) == FULL["classes"] and (len(train), len(val)) != (FULL["train"], FULL["val"]):
        warnings.warn(f"{root} holds {len(train):,} training and {len(val):,} validation images, not ILSVRC-2012's"
                      f" {FULL['train']:,} and {FULL['val']:,}: a partial or damaged download? Packing what is there",
                      stacklevel=3)


class _Members(torch.utils.data.Dataset):
    """In a loader worker: one image's bytes, read where its tar holds them
    (a plain tar stores a member's bytes as they are, in one piece, so a
    worker needs no TarFile of its own, and only the results pass between
    processes), decoded, rescaled and encoded (``store.encoded``)."""

    def __init__(self, tar: Path, index: Index, size: int, encoding: str, quality: int, contributes: bool):
        self.tar, self.index, self.size, self.encoding, self.quality = tar, index, size, encoding, quality
        self.contributes = contributes

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        offset, length = int(self.index.offsets[i]), int(self.index.sizes[i])
        name = f"{self.tar}:{self.index.names[i].decode()}"
        with open(self.tar, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        img = decode_rgb(data) if len(data) == length else None  # (short: a download cut off in this image)
        if img is None:
            return None, None, name
        return *encoded(img, data, self.size, self.encoding, self.quality, self.contributes), name


def pack_archives(data, out, *, size: int = 256, encoding: str = "jpeg", quality: int = 90, part_mib: float = 1024,
                  workers: int | None = None, progress: bool = True) -> dict:
    """Pack ILSVRC-2012's three archives in the folder ``data`` into the store
    ``out``, reading them in place; its manifest."""
    root, out = Path(data).expanduser(), Path(out)
    check_options(out, size, encoding, quality, part_mib)
    paths = _paths(root)
    synsets, truth = read_devkit(paths[DEVKIT])  # every archive read and checked before anything is written
    classes, train = _train_index(paths[TRAIN], progress)
    val = _val_index(paths[VAL], truth, synsets, classes)
    _check_counts(root, classes, train, val)
    words = dict(synsets.values())
    names = {wnid: words[wnid].split(",")[0].strip() for wnid in classes if words.get(wnid)}  # as classnames.read_synsets
    workers = default_workers(workers, cap=None)  # every core, as store.pack
    splits = {name: (len(index), Encoded(name, _Members(paths[tar], index, size, encoding, quality, name == "train"), index.labels, workers))
              for name, tar, index in (("train", TRAIN, train), ("val", VAL, val))}
    return write_store(out, classes, splits, size=size, encoding=encoding, quality=quality, part_mib=part_mib,
                       source=root, progress=progress, names=names)
