"""Data-loader throughput: images/s of the paper's AlexNet training batches.

Every entry delivers the same batches in kind: float32 ``(B, 3, 224, 224)``
images and their labels, each image rescaled (shorter side to 256, the central
256x256 kept), minus the training set's mean image, randomly cropped to
224x224, reflected half the time, and shifted by a PCA lighting offset drawn
per image (alpha ~ N(0, 0.1)); the values are the AlexNet recipe's
(``ilsvrc.recipes``), the statistics ``ilsvrc.data.stats.load_or_compute``'s,
the same for every entry. Same data (the training split), batch size and
worker count for all:

  (a) torchvision baseline  what a user writes: torchvision.datasets.ImageFolder
                            (PIL decoding) with torchvision.transforms.v2
                            (Resize, CenterCrop, PILToTensor, ToDtype, the mean
                            image subtracted, RandomCrop, RandomHorizontalFlip,
                            a small lighting Module) and torch.utils.data.DataLoader
                            (shuffle, pin_memory on CUDA)
  (b) ilsvrc workers, folder  ilsvrc.data.loaders.loader over Images(the image
                            folder's train split, PaperTransforms)
  (c) ilsvrc workers, store   the same over a packed JPEG store
                            (ilsvrc.data.store.pack(size=256, encoding="jpeg"),
                            made once in --store-dir and reused)
  (d) ilsvrc resident         ResidentSplit (the store's train split decoded once
                            onto the device) + BatchTransforms; its one-time load
                            is reported apart from its steady-state images/s

Timing: each entry first takes ``--warmup`` batches (worker start-up, first
decodes; not timed), then ``--batches`` batches are timed, continuing into
the next epoch if one ends. Each batch is moved to the device (CUDA: pinned
memory, non-blocking copy) and consumed (its images are summed), and CUDA is
synchronised before the clock stops. ``--epoch`` instead times one whole
fresh epoch, from making its iterator (worker start-up included, as a training
loop with non-persistent workers sees it) to its last batch.

    python benchmarks/loader.py                          # Imagenette, all cores
    python benchmarks/loader.py --device cuda --batch-size 128 --epoch --json loader.json
    python benchmarks/loader.py --data DIR --store-dir /fast/disk/stores

Without ``--data``, the data is ``$ILSVRC_DATA/imagenette``, else
``../shared/datasets/imagenette`` beside the checkout; when neither exists a
small synthetic ImageFolder of 224x224 JPEGs is generated in a temporary folder
(and the output says so).
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.transforms import v2

from ilsvrc import recipes
from ilsvrc.data.batched import BatchTransforms
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.loaders import Images, loader
from ilsvrc.data.resident import ResidentSplit
from ilsvrc.data.stats import Stats, load_or_compute
from ilsvrc.data.transforms import PaperTransforms

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py, also when loaded by path
from common import cores, default_data, default_store_dir, device_name, resolve_device, store_for, sync, write_json  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
RECIPE = "alexnet"
# Defaults: the paper's batch of 128 (Sec. 5); 64 timed batches (8,192 images, most of an
# Imagenette epoch) take about 15-25 s per entry on 2 idle CPU cores.
BATCH_SIZE, BATCHES, WARMUP = 128, 64, 2
ENTRIES = ("(a) torchvision baseline", "(b) ilsvrc workers, folder", "(c) ilsvrc workers, store",
           "(d) ilsvrc resident")
SYNTHETIC = dict(classes=4, train=64, val=8, size=224)  # the generated stand-in when no data is found


# --- (a) the baseline, as a torchvision user writes it --------------------------------------


class SubtractMean(torch.nn.Module):
    """x - the mean image (both 256x256, before the random crop, as the paper does)."""

    def __init__(self, mean: torch.Tensor):
        super().__init__()
        self.mean = mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.mean


class Lighting(torch.nn.Module):
    """AlexNet's PCA lighting: add P (alpha * lambda), alpha ~ N(0, std), per image (0-255 units)."""

    def __init__(self, std: float, eigval: torch.Tensor, eigvec: torch.Tensor):
        super().__init__()
        self.std, self.eigval, self.eigvec = std, eigval, eigvec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.randn(3) * self.std
        return x + 255.0 * (self.eigvec @ (alpha * self.eigval)).view(3, 1, 1)


def baseline_transform(stats: Stats, data: dict) -> v2.Compose:
    mean = stats.mean_image if data["mean"] == "image" else stats.mean_rgb.view(3, 1, 1)
    return v2.Compose([
        v2.Resize(data["resize"]), v2.CenterCrop(data["resize"]),
        v2.PILToTensor(), v2.ToDtype(torch.float32),  # 0-255, as cuda-convnet
        SubtractMean(mean),
        v2.RandomCrop(data["image_size"]),
        v2.RandomHorizontalFlip() if data["flip"] else v2.Identity(),
        Lighting(data["pca_lighting"], stats.eigval, stats.eigvec),
    ])  # fmt: skip


def baseline_epochs(train_dir: Path, stats: Stats, data: dict, batch_size: int, workers: int,
                    device: torch.device) -> Callable[[int], Iterator]:
    dataset = torchvision.datasets.ImageFolder(str(train_dir), transform=baseline_transform(stats, data))
    dl = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                     pin_memory=device.type == "cuda")
    return lambda epoch: iter(dl)


# --- Timing ---------------------------------------------------------------------------------


def _forever(epochs: Callable[[int], Iterator]) -> Iterator:
    epoch = 0
    while True:
        yield from epochs(epoch)
        epoch += 1


def _images_labels(batch):
    return (batch.images, batch.labels) if hasattr(batch, "images") else batch


def measure(epochs: Callable[[int], Iterator], device: torch.device, image_size: int, *, warmup: int,
            batches: int, whole_epoch: bool) -> dict:
    """images/s of the batches ``epochs(epoch)`` yields, moved to ``device`` and consumed."""
    checksum = torch.zeros((), dtype=torch.float64, device=device)

    def take(batch) -> int:
        nonlocal checksum
        x, y = _images_labels(batch)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if x.dtype != torch.float32 or tuple(x.shape[1:]) != (3, image_size, image_size) or len(y) != len(x):
            raise RuntimeError(f"unexpected batch: images {tuple(x.shape)} {x.dtype}, labels {tuple(y.shape)}")
        checksum += x.sum(dtype=torch.float64) + y.sum()  # the batch is really made and read
        return len(x)

    images = count = 0
    if whole_epoch:
        sync(device)
        start = time.perf_counter()
        for batch in epochs(0):
            images += take(batch)
            count += 1
    else:
        stream = _forever(epochs)
        for _ in range(warmup):
            take(next(stream))
        sync(device)
        start = time.perf_counter()
        for _ in range(batches):
            images += take(next(stream))
            count += 1
    sync(device)
    seconds = time.perf_counter() - start
    if not whole_epoch:
        stream.close()  # ends the epoch's loader (and its workers)
    if not math.isfinite(checksum.item()):
        raise RuntimeError("a batch holds non-finite values")
    return {"images_per_s": images / seconds, "seconds": seconds, "images": images, "batches": count}


# --- Data, store and statistics -------------------------------------------------------------


def make_synthetic(root: Path, classes: int, train: int, val: int, size: int, seed: int = 0) -> Path:
    """An ImageFolder of generated ``size x size`` JPEGs (coloured stripes and noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            colour = np.array([(c * 97) % 256, (c * 57 + 80) % 256, (c * 151 + 40) % 256], dtype=np.float64)
            stripes = np.sin((xx * np.cos(c) + yy * np.sin(c)) / 4.0)[..., None]
            for i in range(n):
                img = 0.6 * colour + 60 * stripes + rng.normal(0, 25, (size, size, 3))
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img{i:04d}.jpg", quality=90)
    return root


# --- The run --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="ImageFolder root with train/ and val/ (default: $ILSVRC_DATA/imagenette, "
                   "else ../shared/datasets/imagenette; else generated)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the batches are delivered and the resident split lives (default: auto)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"images per batch (default {BATCH_SIZE})")
    p.add_argument("--batches", type=int, default=BATCHES, help=f"timed batches per entry (default {BATCHES})")
    p.add_argument("--warmup", type=int, default=WARMUP, help=f"untimed batches first (default {WARMUP})")
    p.add_argument("--epoch", action="store_true", help="time one whole epoch per entry instead of --batches")
    p.add_argument("--workers", type=int, default=cores(), help=f"loader worker processes (default: all cores, {cores()})")
    p.add_argument("--store-dir", type=Path, help="folder for the packed stores, made once and reused "
                   "(default: $ILSVRC_CACHE/bench-stores, else ~/.cache/ilsvrc/bench-stores)")
    p.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = p.parse_args(argv)
    resolve_device(p, args)
    for name in ("batch_size", "batches"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("warmup", "workers"):
        if getattr(args, name) < 0:
            p.error(f"--{name} must not be negative")
    if args.data is not None and not (args.data / "train").is_dir():
        p.error(f"--data {args.data} has no train/ folder")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table, and return every figure."""
    args = parse_args(argv)
    device = torch.device(args.device)
    progress = sys.stderr.isatty()
    data = recipes.resolve(RECIPE).data.to_dict()
    size, crop = data["resize"], data["image_size"]
    tmp = None
    root, synthetic = args.data, False
    if root is None:
        root = default_data()
    if root is None:
        tmp = Path(tempfile.mkdtemp(prefix="ilsvrc-bench-data-"))
        root, synthetic = make_synthetic(tmp / "synthetic", **SYNTHETIC), True
    try:
        return _run(args, device, progress, data, size, crop, root, synthetic, argv)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _meta(args, device, data, size, crop, root, dataset, synthetic, argv) -> dict:
    """The run's date, machine, versions, data and settings, printed as the header."""
    bs, workers = args.batch_size, args.workers
    meta = {
        "date": datetime.date.today().isoformat(),
        "device": device_name(device, threads=False),
        "cores": cores(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "data": str(Path(root).resolve()),
        "synthetic": synthetic,
        "train_images": len(dataset.train),
        "batch_size": bs, "workers": workers, "warmup": 0 if args.epoch else args.warmup,
        "timed": "one epoch" if args.epoch else f"{args.batches} batches",
        "command": " ".join(["python", "benchmarks/loader.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    print(f"date         {meta['date']}")
    print(f"device       {meta['device']}; {meta['cores']} CPU cores")
    print(f"torch        {meta['torch']}   torchvision {meta['torchvision']}   python {meta['python']}")
    note = " (SYNTHETIC: no dataset found; generated 224x224 JPEGs)" if synthetic else ""
    print(f"data         {meta['data']}{note}: train split, {meta['train_images']} images, {len(dataset.classes)} classes")
    timing = "one whole epoch from a fresh iterator" if args.epoch else f"{args.batches} batches after {args.warmup} warm-up batches"
    print(f"setting      batch {bs} of float32 3x{crop}x{crop} (rescale {size}, mean {data['mean']}, crop, "
          f"flip, PCA lighting {data['pca_lighting']}); {workers} workers; {timing}")
    print(flush=True)
    return meta


def _run(args, device, progress, data, size, crop, root, synthetic, argv) -> dict:
    bs, workers = args.batch_size, args.workers
    dataset = open_dataset(root)
    meta = _meta(args, device, data, size, crop, root, dataset, synthetic, argv)

    # One-time costs: statistics, packed store, resident split.
    once = {}
    start = time.perf_counter()
    stats = load_or_compute(dataset.train, size, workers, progress)
    once["stats_s"] = time.perf_counter() - start
    transforms = PaperTransforms(stats, crop, data["mean"], data["flip"], data["pca_lighting"])
    store_dir = args.store_dir or default_store_dir()
    store_path, pack_s = store_for(dataset, store_dir, size, workers, progress, "loader.py")
    once["pack_s"] = pack_s
    store = open_dataset(store_path)
    meta["store"], meta["store_reused"] = str(store_path), pack_s is None
    pin = device.type == "cuda"

    def worker_epochs(split):
        images = Images(split, transforms)
        return lambda epoch: iter(loader(images, bs, shuffle=True, epoch=epoch, workers=workers, pin_memory=pin))

    def resident_epochs():
        sync(device)
        start = time.perf_counter()
        resident = ResidentSplit(store.train, size, device, workers, progress)
        sync(device)
        once["resident_load_s"] = time.perf_counter() - start
        batched = BatchTransforms(transforms, device)
        return lambda epoch: resident.batches(batched, bs, shuffle=True, epoch=epoch)

    makers = [
        lambda: baseline_epochs(dataset.train.root, stats, data, bs, workers, device),
        lambda: worker_epochs(dataset.train),
        lambda: worker_epochs(store.train),
        resident_epochs,
    ]
    results: dict[str, dict] = {}
    print(f"{'loader':<30} {'images/s':>10} {'x (a)':>7} {'seconds':>8} {'images':>7}")
    for name, make in zip(ENTRIES, makers):
        torch.manual_seed(0)
        r = measure(make(), device, crop, warmup=args.warmup, batches=args.batches, whole_epoch=args.epoch)
        base = results.get(ENTRIES[0], r)["images_per_s"]
        r["ratio_to_baseline"] = r["images_per_s"] / base
        results[name] = r
        print(f"{name:<30} {r['images_per_s']:>10.1f} {r['ratio_to_baseline']:>6.2f}x {r['seconds']:>8.1f} "
              f"{r['images']:>7}", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    best = max(ENTRIES[1:], key=lambda n: results[n]["images_per_s"])
    ratios = {f"{n} / (a)": results[n]["ratio_to_baseline"] for n in ENTRIES[1:]}
    ratios["best ilsvrc / (a)"] = results[best]["ratio_to_baseline"]
    print()
    print(f"best ilsvrc loader: {best}, {ratios['best ilsvrc / (a)']:.2f}x the torchvision baseline")
    stats_note = f"{once['stats_s']:.1f} s (cached, or computed once and cached)"
    pack_note = "reused" if pack_s is None else f"{pack_s:.1f} s, once"
    print(f"one-time     statistics {stats_note}; packing the JPEG store {pack_note} ({store_path}); "
          f"resident load {once['resident_load_s']:.1f} s ({device.type})")

    out = {**meta, "results": results, "ratios": ratios, "best": best, "one_time": once}
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
