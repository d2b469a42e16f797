"""The packed store: a dataset written once at the network's input geometry.

``ilsvrc pack DATA OUT`` decodes every image of each split once, rescales it
as the paper does (shorter side to ``size``, central ``size x size`` square),
and writes it, with the labels, the class names and the training set's
statistics, into a folder of memory-mappable files::

    OUT/ilsvrc-store.json          what is where (format, size, encoding, classes, splits, parts; names)
    OUT/stats.pt                   mean image and RGB eigen of the training split
    OUT/<split>.labels.npy         int64 labels
    OUT/<split>-00000.bin          raw: uint8 images (3, size, size) back to back
                                   jpeg: JPEG files back to back ...
    OUT/<split>-00000.offsets.npy  ... and where each one starts and ends (jpeg only)

Parts hold at most ``part_mib`` MiB each, so a store can travel in pieces.
A source JPEG that already has the target geometry is stored byte for byte
(no second compression: CIFAR-10's 60,000 32x32 JPEGs pack into 53 MiB);
CIFAR's original pickles pack raw, bit for bit, through ``cifar.py``, which
hands ``write_store`` its already decoded images.
The folder is written under a temporary name (``.OUT.partial-PID``) and
renamed when complete, so a store is either whole or absent; the next pack
into OUT removes the partial folder of a pack that died, and leaves a living
one's alone. A store's files are checked as they are read: one that is not
what pack wrote (tampered with, or damaged) is a one-line error naming it.
``--data`` accepts a store wherever it accepts an ImageFolder root.
"""

import bisect
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.io import ImageReadMode, decode_image, encode_jpeg
from tqdm import tqdm

from ..device import default_workers
from ..errors import UserError
from .folders import Dataset, Split, open_folder
from .images import decode_rgb, rescale, warn_skipped
from .stats import Accumulator
from .stats import read as read_stats

MANIFEST = "ilsvrc-store.json"
FORMAT_VERSION = 1
ENCODINGS = ("jpeg", "raw")


def is_store(root: Path) -> bool:
    return (Path(root) / MANIFEST).is_file()


class PackedSplit:
    """One split of a packed store; the same interface as ``folders.Split``."""

    def __init__(self, root: Path, name: str, info: dict, manifest: dict):
        self.root, self.name = Path(root), name
        self.size, self.encoding = manifest["size"], manifest["encoding"]
        self.parts = info["parts"]
        self.starts = np.cumsum([0] + [p["count"] for p in self.parts]).tolist()
        self.labels = _array(self.root / f"{name}.labels.npy", self.starts[-1], len(manifest["classes"])).tolist()
        self._stats_file = self.root / manifest["stats"] if name == "train" else None
        self._maps = None  # opened lazily, once per process (loader workers included)

    def __len__(self) -> int:
        return self.starts[-1]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = None  # memory maps are reopened, not pickled
        return state

    def _open(self):
        maps = []
        for part in self.parts:
            data = np.memmap(self.root / part["file"], dtype=np.uint8, mode="r")
            offsets = _array(self.root / part["offsets"], part["count"] + 1) if self.encoding == "jpeg" else None
            maps.append((data, offsets))
        self._maps = maps

    def encoded(self, index: int) -> np.ndarray:
        """The stored bytes of image ``index`` (a JPEG file, or raw CHW pixels)."""
        if self._maps is None:
            self._open()
        p = bisect.bisect_right(self.starts, index) - 1
        data, offsets = self._maps[p]
        i = index - self.starts[p]
        if offsets is None:
            n = 3 * self.size * self.size
            return data[i * n : (i + 1) * n]
        return data[offsets[i] : offsets[i + 1]]

    def read(self, index: int, size: int) -> torch.Tensor:
        raw = torch.from_numpy(np.array(self.encoded(index)))
        if self.encoding == "raw":
            img = raw.view(3, self.size, self.size)
        else:
            img = decode_image(raw, mode=ImageReadMode.RGB)
        if size != self.size:
            img = rescale(img, size)
        return img

    def describe(self, index: int) -> str:
        return f"{self.root}:{self.name}[{index}]"

    def fingerprint(self) -> str:
        return json.dumps([str(self.root.resolve()), self.name, self.parts, os.stat(self.root / MANIFEST).st_mtime_ns])

    def stored_stats(self, size: int):
        """The store's statistics when they describe images of ``size``."""
        if self._stats_file is None or size != self.size:
            return None
        try:
            return read_stats(self._stats_file)
        except ValueError as e:
            raise UserError(f"{self._stats_file} is not the store's statistics: {e}; pack the store again") from None


def _array(path: Path, length: int, below: int | None = None) -> np.ndarray:
    """The int64 array of ``length`` entries (each in [0, below)) that pack
    wrote to ``path``, or a UserError naming the file: a tampered one (an
    object array needs pickle, which np.load refuses) is not read."""
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not an array as pack writes it ({e}); pack the store again") from None
    if a.dtype != np.int64 or a.shape != (length,) or (below is not None and length and not 0 <= a.min() <= a.max() < below):
        raise UserError(f"{path} does not hold the {length} whole numbers the store's manifest expects; pack the store again")
    return a


def open_store(root: Path, need_train: bool = True) -> Dataset:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{root / MANIFEST} is not readable ({e})") from None
    if manifest.get("format") != "ilsvrc-store" or manifest.get("version") != FORMAT_VERSION:
        raise UserError(f"{root} is not an ilsvrc store of version {FORMAT_VERSION}")
    splits = manifest["splits"]
    heldout = next((s for s in ("val", "test") if s in splits), None)
    if heldout is None or (need_train and "train" not in splits):
        raise UserError(f"store {root} lacks a {'train' if heldout else 'val or test'} split")
    missing = [p for info in splits.values() for part in info["parts"] for p in part.values() if isinstance(p, str) and not (root / p).is_file()]
    if missing:
        raise UserError(f"store {root} is incomplete: {missing[0]} is missing")
    train = PackedSplit(root, "train", splits["train"], manifest) if "train" in splits else Split("train", root / "train", [])
    return Dataset(root, manifest["classes"], train, PackedSplit(root, heldout, splits[heldout], manifest), manifest.get("names", {}))


class _Encoder(torch.utils.data.Dataset):
    """In a loader worker: decode, rescale and encode one image."""

    def __init__(self, split: Split, size: int, encoding: str, quality: int):
        self.split, self.size, self.encoding, self.quality = split, size, encoding, quality

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        path = self.split.items[i][0]
        img = decode_rgb(path)
        if img is None:
            return None, None, path
        if img.shape[1:] == (self.size, self.size) and self.encoding == "jpeg":
            with open(path, "rb") as f:
                data = f.read()
            if data[:3] == b"\xff\xd8\xff" and _decodes_like(data, img):
                return img, np.frombuffer(bytearray(data), dtype=np.uint8), path  # already the right geometry: keep the bytes
        img = rescale(img, self.size)
        if self.encoding == "raw":
            return img, img.contiguous().numpy().reshape(-1), path
        return img, encode_jpeg(img, quality=self.quality).numpy(), path


def _decodes_like(data: bytes, img: torch.Tensor) -> bool:
    try:
        return torch.equal(decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB), img)
    except RuntimeError:
        return False


def pack(
    data,
    out,
    *,
    size: int = 256,
    encoding: str = "jpeg",
    quality: int = 90,
    part_mib: float = 1024,
    workers: int | None = None,
    progress: bool = True,
    val_labels=None,
) -> dict:
    """Pack the ImageFolder dataset ``data`` into the store ``out``; its
    manifest. ``val_labels``: the labels file of a flat ``val/`` (``labels.py``)."""
    out = Path(out)
    if encoding not in ENCODINGS:
        raise UserError(f"--format must be one of {', '.join(ENCODINGS)}, not {encoding!r}")
    if not 1 <= quality <= 100:
        raise UserError(f"--quality must be between 1 and 100, not {quality}")
    if size < 1 or part_mib <= 0:
        raise UserError("--size and --part-size must be positive")
    check_out(out)
    if is_store(Path(data).expanduser()):
        raise UserError(f"{data} is already a packed store")
    dataset = open_folder(data, val_labels=val_labels)
    workers = default_workers(workers)
    splits = {split.name: (len(split), _encoded(split, size, encoding, quality, workers))
              for split in (dataset.train, dataset.heldout)}
    return write_store(out, dataset.classes, splits, size=size, encoding=encoding, quality=quality, part_mib=part_mib,
                       source=dataset.root, progress=progress, names=dataset.names)


def _encoded(split: Split, size: int, encoding: str, quality: int, workers: int):
    """``(image, payload, label, path)`` for each image of ``split``, decoded
    and encoded in loader workers (``write_store``'s items)."""
    encoder = _Encoder(split, size, encoding, quality)
    loader = DataLoader(encoder, batch_size=None, num_workers=workers, generator=torch.Generator(), prefetch_factor=8 if workers else None)
    for i, (img, payload, path) in enumerate(loader):
        yield img, payload, split.items[i][1], path


def check_out(out: Path) -> None:
    """A store is never written over: checked before anything is read or written."""
    if Path(out).exists():
        raise UserError(f"{out} already exists; choose another output folder or remove it")


def write_store(out, classes: list[str], splits: dict, *, size: int, encoding: str, quality: int | None,
                part_mib: float, source, progress: bool = True, names: dict | None = None) -> dict:
    """Write the store ``out`` from images already decoded and encoded; its manifest.

    ``splits`` maps each split's name (``train`` first: its images make the
    statistics) to ``(count, items)``, the items ``(image, payload, label,
    name)``: the (3, size, size) uint8 image, the bytes stored for it (its
    raw CHW pixels, or a JPEG file) and its class index; a payload of None is
    an image that could not be read, warned about and left out. Written
    under a temporary name and renamed when whole (``pack`` above, and
    ``cifar.pack_cifar``).
    """
    out = Path(out)
    _remove_abandoned(out)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        manifest = {
            "format": "ilsvrc-store", "version": FORMAT_VERSION, "size": size, "encoding": encoding,
            "quality": quality, "classes": classes, "source": str(Path(source).resolve()),
            "stats": "stats.pt", "splits": {},
        } | ({"names": names} if names else {})  # the dataset's own class names (classnames.py)
        acc = Accumulator(size)
        for name, (count, items) in splits.items():
            manifest["splits"][name] = _write_split(
                name, tqdm(items, total=count, desc=f"pack {name}", unit="img", disable=not progress),
                tmp, encoding, int(part_mib * 2**20), acc if name == "train" else None,
            )
        torch.save(acc.result(f"the training split of {source}").to_dict(), tmp / "stats.pt")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _remove_abandoned(out: Path) -> None:
    """Remove the partial folders of packs into ``out`` whose process is gone
    (killed: nothing else would ever remove them); a living one is another
    pack into the same folder, and this one stops rather than race it."""
    for partial in out.parent.glob(f".{out.name}.partial-*"):
        pid = partial.name.rpartition("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        if _alive(int(pid)):
            raise UserError(f"process {pid} is packing into {out} ({partial}); wait for it to end, or remove that folder")
        shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int) -> bool:
    if os.name != "posix":  # (Windows' os.kill would end the process: there, the folder is left to the user)
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to someone else
        pass
    return True


def _write_split(name, items, folder, encoding, part_bytes, acc) -> dict:
    parts, labels, skipped = [], [], []
    f, offsets = None, []

    def close_part():
        nonlocal f
        f.close()
        if encoding == "jpeg":
            np.save(folder / parts[-1]["offsets"], np.array(offsets, dtype=np.int64))
        f = None

    for img, payload, label, path in items:
        if payload is None:
            warn_skipped(path)
            skipped.append(path)
            continue
        if f is None or (offsets[-1] + len(payload) > part_bytes and len(offsets) > 1):
            if f is not None:
                close_part()
            part = f"{name}-{len(parts):05d}"
            parts.append({"file": f"{part}.bin", "count": 0} | ({"offsets": f"{part}.offsets.npy"} if encoding == "jpeg" else {}))
            f, offsets = open(folder / parts[-1]["file"], "wb"), [0]
        f.write(np.asarray(payload).tobytes())  # the loader hands numpy arrays over as tensors
        offsets.append(offsets[-1] + len(payload))
        parts[-1]["count"] += 1
        labels.append(int(label))
        if acc is not None:
            acc.add(img)
    if f is not None:
        close_part()
    np.save(folder / f"{name}.labels.npy", np.array(labels, dtype=np.int64))
    if skipped:
        warnings.warn(f"{name}: {len(skipped)} unreadable image(s) left out of the store", stacklevel=2)
    return {"count": len(labels), "parts": parts, "skipped": skipped}
