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
The folder is written under a temporary name (``.OUT.partial``, locked while
a pack writes it) and renamed when complete, so a store is either whole or
absent. Each part is recorded in the partial folder's journal once its files
are complete, with the statistics' sums at that point, so the same pack
started again after a kill (or a Ctrl-C, a full disk, a power loss) resumes
after the last complete part and ends with the very bytes of a pack never
stopped; a pack with other settings or changed data is refused while a
partial one holds finished parts, and a second pack while the first lives
too. A store's files are checked as they are read: one that is not
what pack wrote (tampered with, or damaged) is a one-line error naming it.
``--data`` accepts a store wherever it accepts an ImageFolder root.
"""

import bisect
import hashlib
import itertools
import json
import os
import pickle
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torchvision.io import ImageReadMode, decode_image
from tqdm import tqdm

from ..checkpoint import atomic_write
from ..device import default_workers
from ..errors import UserError
from .folders import Dataset, Split, open_folder
from .images import decode_rgb, for_store, rescale, warn_skipped
from .stats import Accumulator, Contribution, rgb_products
from .stats import read as read_stats

try:
    import fcntl  # POSIX: the partial folder's lock
except ImportError:  # (Windows: no lock)
    fcntl = None

MANIFEST = "ilsvrc-store.json"
FORMAT_VERSION = 1
ENCODINGS = ("jpeg", "raw")
LOCK, JOURNAL = "pack.lock", "pack.journal"  # the partial folder's own files, gone before it becomes the store
JOURNAL_VERSION = 1
ESTIMATE_FROM = 64  # images whose mean JPEG size, times the image count, is the plan line's estimate of the store's size


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

    def raw_parts(self):
        """A raw store's pixels as stored, part by part: ``(first index, its
        images as one (count, 3, size, size) uint8 array)`` (memory-mapped)."""
        if self.encoding != "raw":
            raise ValueError(f"{self.root} holds JPEGs, not raw pixels")
        if self._maps is None:
            self._open()
        n = 3 * self.size * self.size
        for start, part, (data, _) in zip(self.starts, self.parts, self._maps):
            yield start, data[: part["count"] * n].reshape(part["count"], 3, self.size, self.size)

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
    """In a loader worker: decode, rescale and encode one image of ``split``
    (``encoded``)."""

    def __init__(self, split: Split, size: int, encoding: str, quality: int, contributes: bool = True):
        self.split, self.size, self.encoding, self.quality = split, size, encoding, quality
        self.contributes = contributes

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        path = self.split.items[i][0]
        img = decode_rgb(path)
        if img is None:
            return None, None, path
        # the file's own bytes may be kept only when it has the store's geometry already: read it only then
        keep = img.shape[1:] == (self.size, self.size) and self.encoding == "jpeg"
        return *encoded(img, Path(path).read_bytes() if keep else b"", self.size, self.encoding, self.quality, self.contributes), path


def encoded(img: torch.Tensor, data: bytes, size: int, encoding: str, quality: int, contributes: bool) -> tuple:
    """In a loader worker: the decoded image ``img`` (from the file ``data``)
    rescaled and encoded, as ``(contribution, payload)``: where
    ``contributes`` (the training split), its part of the statistics' sums
    (``stats.Contribution``), so that the main process only adds and writes
    (measured on 2,200 Imagenette images, 2026-12-06: 1.9-2.6 ms of the main
    process's CPU an image before, 0.6-0.8 ms with this and ``_as_is``);
    else None."""
    img, payload = for_store(img, data, size, encoding, quality)
    if not contributes:
        return None, payload
    return Contribution(img.contiguous().numpy(), rgb_products(img).numpy()), payload


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
    check_options(out, size, encoding, quality, part_mib)
    if is_store(Path(data).expanduser()):
        raise UserError(f"{data} is already a packed store")
    dataset = open_folder(data, val_labels=val_labels)
    workers = default_workers(workers, cap=None)
    splits = {split.name: (len(split), Encoded(split.name, _Encoder(split, size, encoding, quality, split.name == "train"),
                                               split.labels, workers))
              for split in (dataset.train, dataset.heldout)}
    inputs = {split.name: split.fingerprint() for split in (dataset.train, dataset.heldout)}  # files, labels, sizes, times
    return write_store(out, dataset.classes, splits, size=size, encoding=encoding, quality=quality, part_mib=part_mib,
                       source=dataset.root, progress=progress, names=dataset.names, inputs=inputs)


class Encoded:
    """``write_store``'s items ``(contribution, payload, label, name)`` of the
    split ``name``: item i of ``images`` (a Dataset whose items are
    ``(contribution, payload, name)``, made in loader workers: ``_Encoder``,
    ``archives._Members``) with label ``labels[i]``, from item ``start`` on;
    ``starting_at(n)``: the same from item n, the n before not read (a
    resumed pack)."""

    def __init__(self, name: str, images, labels, workers: int, start: int = 0):
        self.name, self.images, self.labels, self.workers, self.start = name, images, labels, workers, start

    def starting_at(self, n: int) -> "Encoded":
        return Encoded(self.name, self.images, self.labels, self.workers, start=n)

    def __iter__(self):
        indices = range(self.start, len(self.images))
        loader = DataLoader(Subset(self.images, indices), batch_size=None, num_workers=self.workers, collate_fn=_as_is,
                            generator=torch.Generator(), prefetch_factor=8 if self.workers else None)
        for i, (contribution, payload, name) in zip(indices, loader):
            yield contribution, payload, int(self.labels[i]), name


def _as_is(item):
    """The loader's collation: the worker's numpy arrays as they are (pickled
    through the pipe). Made tensors (the default), each would pass through
    shared memory, a file descriptor sent per array: measured, 1.6-2.6 ms of
    the main process's CPU an image instead of 0.6-0.8."""
    return item


def check_options(out: Path, size: int, encoding: str, quality: int, part_mib: float) -> None:
    """A pack's settings, and its output folder (``check_out``), checked before anything is read or written."""
    if encoding not in ENCODINGS:
        raise UserError(f"--format must be one of {', '.join(ENCODINGS)}, not {encoding!r}")
    if not 1 <= quality <= 100:
        raise UserError(f"--quality must be between 1 and 100, not {quality}")
    if size < 1 or part_mib <= 0:
        raise UserError("--size and --part-size must be positive")
    check_out(out)


def check_out(out: Path) -> None:
    """A store is never written over: checked before anything is read or written."""
    if Path(out).exists():
        raise UserError(f"{out} already exists; choose another output folder or remove it")


def write_store(out, classes: list[str], splits: dict, *, size: int, encoding: str, quality: int | None,
                part_mib: float, source, progress: bool = True, names: dict | None = None, inputs=None) -> dict:
    """Write the store ``out`` from images already decoded and encoded; its manifest.

    ``splits`` maps each split's name (``train`` first: its images make the
    statistics) to ``(count, items)``, the items ``(image, payload, label,
    name)``: the (3, size, size) uint8 image (or its ``stats.Contribution``,
    computed where it was decoded), the bytes stored for it (its raw CHW
    pixels, or a JPEG file) and its class index; a payload of None is an
    image that could not be read, warned about and left out (``pack`` above,
    ``cifar.pack_cifar``).

    Written in the partial folder ``.OUT.partial``, locked while a pack
    writes it, and renamed when whole. A pack stopped part-way (killed,
    interrupted, out of disk) leaves there the parts it finished, recorded
    in its journal (``_Journal``); the same call again resumes after the
    last of them and writes the bytes an uninterrupted pack would. Only the
    same items resume it: ``inputs`` (JSON) identifies them (``pack``: its
    splits' fingerprints; by default the names, sizes and times of the files
    under ``source``). The items resumed past are not read where ``items``
    offers ``starting_at(n)`` (the items from the n-th on, as ``pack``'s
    do); any other iterable (a generator cannot start part-way) is read from
    its start and its first n items dropped.
    """
    out = Path(out)
    _remove_abandoned(out)
    folder = out.with_name(f".{out.name}.partial")
    manifest = {
        "format": "ilsvrc-store", "version": FORMAT_VERSION, "size": size, "encoding": encoding,
        "quality": quality, "classes": classes, "source": str(Path(source).resolve()),
        "stats": "stats.pt", "splits": {},
    } | ({"names": names} if names else {})  # the dataset's own class names (classnames.py)
    settings = {"manifest": manifest, "part_bytes": int(part_mib * 2**20), "counts": {name: n for name, (n, _) in splits.items()},
                "inputs": _files_fingerprint(source) if inputs is None else inputs}
    lock = _lock(folder, out)
    try:
        journal = _Journal(folder, settings)  # a partial pack of other settings or data: refused here, kept
        try:
            check_out(out)  # (a pack that ended while this one waited for the lock)
            _write_all(journal, manifest, splits, source, out, progress)
            journal.close()
            os.replace(folder, out)
            (out / LOCK).unlink()
        except BaseException:
            if not journal.parts:  # nothing finished to resume from: nothing left behind
                shutil.rmtree(folder, ignore_errors=True)
            raise
    finally:
        lock.close()
    return manifest


def _write_all(journal: "_Journal", manifest: dict, splits: dict, source, out: Path, progress: bool) -> None:
    """Every split's parts after those ``journal`` records finished, then the
    statistics and the manifest, into the partial folder."""
    acc = Accumulator(manifest["size"])
    done = {name: journal.resumed(name, acc if name == "train" else None) for name in splits}
    items = {name: _from(items, done[name].items) for name, (_, items) in splits.items()}
    counts = {name: count for name, (count, _) in splits.items()}
    if progress:
        items = _announce(out, counts, done, items, manifest)
    for name, count in counts.items():
        manifest["splits"][name] = _write_split(name, count, items[name], done[name], journal, acc if name == "train" else None, progress)
    stats = acc.result(f"the training split of {source}")
    atomic_write(journal.folder / "stats.pt", lambda f: torch.save(stats.to_dict(), f))
    atomic_write(journal.folder / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1).encode()))


def _from(items, n: int):
    """An iterator over ``items`` from the n-th on: begun there where the
    items can (``starting_at``), else read from the start with the first n
    dropped (a generator: each dropped item is still made, decoded perhaps;
    the only way to reach the n-th)."""
    if n and hasattr(items, "starting_at"):
        return iter(items.starting_at(n))
    return itertools.islice(items, n, None)


def _announce(out: Path, counts: dict, done: dict, items: dict, manifest: dict) -> dict:
    """One line on stderr before the work: the images, and the store's size,
    exact for raw pixels (size x size x 3 bytes an image), for JPEG the mean
    size of the first ``ESTIMATE_FROM`` images encoded (read ahead from the
    first split left to write) times the image count; ``items`` with those
    read ahead put back."""
    n, size, encoding = sum(counts.values()), manifest["size"], manifest["encoding"]
    if encoding == "raw":
        how = f"{_in_bytes(n * 3 * size * size)} ({size}x{size}x3 bytes an image)"
    else:
        first = next((name for name in counts if not done[name].finished), None)
        head = list(itertools.islice(items[first], ESTIMATE_FROM)) if first else []
        if first:
            items = items | {first: itertools.chain(head, items[first])}
        sizes = [len(payload) for _, payload, _, _ in head if payload is not None]
        how = (f"about {_in_bytes(n * sum(sizes) / len(sizes))} (the mean of the first {len(sizes)} JPEGs x {n:,})"
               if sizes else "its size unknown (no readable image among the first read)")
    each = ", ".join(f"{name} {count:,}" for name, count in counts.items())
    packed = sum(d.items for d in done.values())
    resuming = f"; resuming after the {packed:,} packed already" if packed else ""
    print(f"pack: {n:,} images ({each}) into {out} as {encoding} {size}x{size}, {how}{resuming}", file=sys.stderr)
    return items


def _in_bytes(n: float) -> str:
    unit, scale = next(((u, s) for u, s in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)) if n >= s), ("bytes", 1))
    return f"{n / scale:.1f} {unit}"


def _files_fingerprint(source) -> str:
    """The names, sizes and modification times of the files at ``source``
    (a file, or those under a folder): what identifies ``write_store``'s
    items where its caller gives nothing better."""
    root = Path(source).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root] if root.is_file() else []
    h = hashlib.sha256(str(root).encode())
    for path in files:
        st = path.stat()
        h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _lock(folder: Path, out: Path):
    """The partial folder ``folder``, made if need be, locked for this pack
    (``pack.lock``, which holds its pid; released when the file closes, or
    the process dies, so a killed pack leaves no stale lock); a living
    pack's lock is a UserError. The lock file is the folder's until the
    folder is the store; one renamed or removed while this process waited is
    looked for again. (Without fcntl: no lock.)"""
    for _ in range(10):
        check_out(out)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            f = open(folder / LOCK, "a+")  # noqa: SIM115 (held open: the lock lasts as long as the pack)
        except FileNotFoundError:  # removed between the two lines above
            continue
        if fcntl is None:
            return f
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            f.close()
            raise UserError(f"process {pid} is packing into {out} ({folder}); wait for it to end"
                            " (stopped, the same command resumes it)") from None
        try:
            ours = os.fstat(f.fileno()).st_ino == os.stat(folder / LOCK).st_ino
        except FileNotFoundError:
            ours = False
        if ours:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            return f
        f.close()
    raise UserError(f"{folder} keeps changing under this pack; is another one packing into {out}?")


def _remove_abandoned(out: Path) -> None:
    """Remove the partial folders named with their pid, ``.OUT.partial-PID``,
    of packs by earlier versions into ``out`` whose process is gone (killed:
    nothing else would ever remove them, and they cannot be resumed); a
    living one is another pack into the same folder, and this one stops
    rather than race it."""
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


def _write_split(name: str, count: int, items, done: "_Done", journal: "_Journal", acc, progress: bool) -> dict:
    """Write split ``name``'s parts after those ``done`` already (none in a
    fresh pack), each recorded in ``journal`` once complete; its manifest entry."""
    if not done.finished:
        bar = tqdm(items, total=count, initial=done.items, desc=f"pack {name}", unit="img", disable=not progress)
        part, skipped, read = None, [], done.items
        for img, payload, label, path in bar:
            read += 1
            if payload is None:
                warn_skipped(path)
                skipped.append(path)
                continue
            data = np.asarray(payload).tobytes()  # (a loader may hand numpy arrays over as tensors)
            if part is not None and not part.fits(len(data), journal.part_bytes):
                journal.part_done(name, part, read - 1, skipped, acc, done)
                part, skipped = None, []
            if part is None:
                part = _Part(journal.folder, name, len(done.parts), journal.encoding)
            part.add(data, label)
            if acc is not None:
                acc.add(img)
        bar.close()
        if part is not None:
            journal.part_done(name, part, read, skipped, acc, done)
            skipped = []
        journal.split_done(name, read, skipped, done)
    if done.skipped:
        warnings.warn(f"{name}: {len(done.skipped)} unreadable image(s) left out of the store", stacklevel=2)
    return {"count": len(done.labels), "parts": done.parts, "skipped": done.skipped}


class _Part:
    """One part being written: its data under a temporary name, where each
    payload ends (its offsets), and its labels."""

    def __init__(self, folder: Path, name: str, index: int, encoding: str):
        self.folder, self.stem, self.offsets, self.labels = folder, f"{name}-{index:05d}", [0], []
        self.entry = {"file": f"{self.stem}.bin", "count": 0} | ({"offsets": f"{self.stem}.offsets.npy"} if encoding == "jpeg" else {})
        self.file = open(folder / f"{self.entry['file']}.partial", "wb")  # noqa: SIM115 (open until the part is full)

    def fits(self, nbytes: int, part_bytes: int) -> bool:
        return self.offsets[-1] + nbytes <= part_bytes or len(self.offsets) == 1  # (one payload, however large, fits)

    def add(self, data: bytes, label: int) -> None:
        self.file.write(data)
        self.offsets.append(self.offsets[-1] + len(data))
        self.labels.append(int(label))
        self.entry["count"] += 1

    def close(self) -> None:
        """Its files complete under their own names, on disk."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.file.name, self.folder / self.entry["file"])
        if "offsets" in self.entry:
            atomic_write(self.folder / self.entry["offsets"], lambda f: np.save(f, np.array(self.offsets, dtype=np.int64)))


@dataclass
class _Done:
    """What of a split is finished: its parts' manifest entries, their
    labels, the unreadable items met, the items read, whether all were."""

    parts: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    items: int = 0
    finished: bool = False


class _Journal:
    """The partial folder's record of what a pack has finished, for the same
    pack started again after a kill to resume from (``pack.journal``).

    One JSON line a step, appended and synced only once the files it names
    are complete under their own names, and synced too: first the settings
    and what identifies the inputs; then, for each part, its manifest entry,
    its size, its labels, the items read through it, the unreadable ones met
    since the line before, and (training split) the file that holds the
    statistics' sums at that point (``Accumulator.state_dict``: whole
    numbers, restored exactly); then a line as each split ends. A last line
    cut short (power lost while it was written) is dropped, and every file a
    line does not name (a part begun, never finished) is removed on opening.
    """

    def __init__(self, folder: Path, settings: dict):
        self.folder, self.path = folder, folder / JOURNAL
        header = {"journal": JOURNAL_VERSION, "settings": json.loads(json.dumps(settings))}  # as it reads back
        self.part_bytes, self.encoding = settings["part_bytes"], settings["manifest"]["encoding"]
        lines = self._read()
        self.parts = sum("part" in r for r in lines[1:])
        if lines and lines[0] != header and self.parts:
            raise UserError(_differs(folder, lines[0], header))
        if lines and lines[0] != header:  # begun with other settings, nothing finished: begun again
            lines = []
        self.records = lines[1:]
        self.accumulator = next((r["accumulator"] for r in reversed(self.records) if "accumulator" in r), None)
        self._tidy()
        if not lines:  # a journal begun afresh
            self.path.unlink(missing_ok=True)
            self._append(header)

    def _read(self) -> list:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) < len(data):  # the last line cut short: dropped
            with open(self.path, "r+b") as f:
                f.truncate(len(whole))
        try:
            lines = [json.loads(line) for line in whole.splitlines()]
        except ValueError:
            lines = [None]
        if not all(isinstance(r, dict) for r in lines):
            raise UserError(f"{self.path} is damaged; remove {self.folder} to start the pack over")
        return lines

    def _tidy(self) -> None:
        """Remove every file that no line names (the lock's aside), and every
        statistics file but the last: a kill after a line and before the
        unlink of the file it replaces leaves the one before."""
        named = {LOCK, JOURNAL, self.accumulator}
        for r in self.records:
            named |= {v for v in (r.get("part") or {}).values() if isinstance(v, str)} | {r.get("file")}
        for path in self.folder.iterdir():
            if path.name not in named:
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def _append(self, record: dict) -> None:
        with open(self.path, "ab") as f:
            f.write((json.dumps(record) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())

    def resumed(self, name: str, acc: Accumulator | None) -> _Done:
        """What of split ``name`` the journal records finished, its files
        checked; ``acc`` (the training split's) holding the sums of that point."""
        done, state = _Done(), None
        try:
            for r in (r for r in self.records if r["split"] == name):
                done.skipped += r["skipped"]
                done.items, done.finished = r["items"], bool(r.get("done"))
                if "part" in r:
                    _check_part(self.folder, r)
                    done.parts.append(r["part"])
                    done.labels += r["labels"]
                    state = r.get("accumulator", state)
            if acc is not None and state is not None:
                acc.load_state_dict(torch.load(self.folder / state, map_location="cpu", weights_only=True))
        except (KeyError, TypeError, ValueError, OSError, RuntimeError, pickle.UnpicklingError) as e:
            raise UserError(f"{self.folder} is damaged ({type(e).__name__}: {e}); remove it to start the pack over") from None
        return done

    def part_done(self, name: str, part: _Part, items: int, skipped: list, acc: Accumulator | None, done: _Done) -> None:
        """Close ``part`` and record it, ``items`` read through it."""
        part.close()
        record = {"split": name, "part": part.entry, "bytes": part.offsets[-1], "labels": part.labels, "items": items, "skipped": skipped}
        previous = self.accumulator
        if acc is not None:
            record["accumulator"] = self.accumulator = f"pack.accumulator-{part.stem}.pt"
            atomic_write(self.folder / self.accumulator, lambda f: torch.save(acc.state_dict(), f))
        _sync(self.folder)  # the files' names on disk before the line that names them
        self._append(record)
        if previous is not None and previous != self.accumulator:
            (self.folder / previous).unlink()
        self.parts += 1
        done.parts.append(part.entry)
        done.labels += part.labels
        done.skipped += skipped
        done.items = items

    def split_done(self, name: str, items: int, skipped: list, done: _Done) -> None:
        """Write split ``name``'s labels and record its end, ``items`` read."""
        labels = f"{name}.labels.npy"
        atomic_write(self.folder / labels, lambda f: np.save(f, np.array(done.labels, dtype=np.int64)))
        _sync(self.folder)
        self._append({"split": name, "done": True, "file": labels, "items": items, "skipped": skipped})
        done.skipped += skipped
        done.items, done.finished = items, True

    def close(self) -> None:
        """Remove the journal's files: what is left is the store (and the lock)."""
        self.path.unlink()
        if self.accumulator is not None:
            (self.folder / self.accumulator).unlink()


def _check_part(folder: Path, record: dict) -> None:
    part = record["part"]
    if (folder / part["file"]).stat().st_size != record["bytes"] or not ("offsets" not in part or (folder / part["offsets"]).is_file()):
        raise ValueError(f"{part['file']} is not as the journal recorded it")


def _sync(folder: Path) -> None:
    """The folder's entries (new files, new names) on disk (POSIX; elsewhere the rename is trusted)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _differs(folder: Path, was: dict, now: dict) -> str:
    """The refusal of a pack over the finished parts of one begun otherwise."""
    if was.get("journal") != now["journal"] or not isinstance(was.get("settings"), dict):
        return f"{folder} holds a partial pack by another version of ilsvrc; remove that folder to start the pack over"
    a, b = was["settings"], now["settings"]
    ma, mb = a.get("manifest") or {}, b["manifest"]
    differ = [f"{flag} {ma.get(key)} there, {mb[key]} here" for key, flag in (("size", "--size"), ("encoding", "--format"),
              ("quality", "--quality")) if ma.get(key) != mb[key]]
    if a.get("part_bytes") != b["part_bytes"]:
        differ.append(f"--part-size {(a.get('part_bytes') or 0) / 2**20:g} there, {b['part_bytes'] / 2**20:g} here")
    same = {"size", "encoding", "quality"}
    if any(a.get(k) != b[k] for k in ("inputs", "counts")) or {k: v for k, v in ma.items() if k not in same} != {k: v for k, v in mb.items() if k not in same}:
        differ.append("other data (its files, labels or classes have changed)")
    return (f"{folder} holds the finished parts of a pack begun otherwise ({'; '.join(differ)}): give the command that began it"
            " to resume it, or remove that folder to start over")
