"""What the benchmark scripts share: where the data is, the packed store they
reuse, how to name the machine, and how to time the trainer's data loading.

Imported by the scripts beside it (``python benchmarks/NAME.py`` puts this
folder on ``sys.path``; the scripts add it themselves when loaded otherwise).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib
import json
import os
import platform
import time
from pathlib import Path

import torch
import torchvision

import ilsvrc
from ilsvrc.data.default import located
from ilsvrc.data.stats import cache_dir
from ilsvrc.data.store import is_store, pack

REPO = Path(__file__).resolve().parents[1]


def default_data(dataset: str = "imagenette") -> Path | None:
    """``dataset`` where ilsvrc finds it by name (``$ILSVRC_DATA``, the cache),
    else ``../shared/datasets/<dataset>`` beside the repo; None if nowhere."""
    return located(dataset, also=[REPO.parent / "shared" / "datasets"])


def default_store_dir() -> Path:
    return cache_dir() / "bench-stores"


def store_for(dataset, store_dir: Path, size: int, workers: int | None, progress: bool, script: str = "benchmarks") -> tuple[Path, float | None]:
    """The packed JPEG store of ``dataset`` at ``size`` in ``store_dir`` (made once,
    then reused by every script), and the seconds packing took (None when reused)."""
    key = hashlib.sha256(f"{dataset.train.fingerprint()}|{dataset.heldout.fingerprint()}|{size}|jpeg".encode())
    path = Path(store_dir).expanduser() / f"{dataset.root.name}-{size}-jpeg-{key.hexdigest()[:16]}"
    if is_store(path):
        return path, None
    if path.exists():
        raise SystemExit(f"benchmarks/{script}: error: {path} exists but is not a packed store; remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pack(dataset.root, path, size=size, encoding="jpeg", workers=workers, progress=progress)
    return path, time.perf_counter() - start


def device_name(device: torch.device, threads: bool = True) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU ({cpu}), {torch.get_num_threads()} threads" if threads else f"CPU ({cpu})"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def timed_source(device: torch.device, seconds: list):
    """Times the making of the batch source inside ``ilsvrc.train`` (the one-time
    resident load happens there) and appends the seconds to ``seconds``."""
    module = importlib.import_module("ilsvrc.train")
    original = module.source

    def source(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            sync(device)
            seconds.append(time.perf_counter() - start)

    module.source = source
    try:
        yield
    finally:
        module.source = original


def machine(device: torch.device) -> dict:
    """Date, device and versions: what every recorded figure states."""
    return {
        "date": datetime.date.today().isoformat(),
        "device": device_name(device),
        "cores": cores(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "ilsvrc": ilsvrc.__version__,
        "python": platform.python_version(),
    }


def write_json(path, obj) -> None:
    """``obj`` to ``path`` as indented JSON, when a path is given."""
    if path:
        with open(path, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")


def resolve_device(parser, args) -> None:
    """``args.device``: ``auto`` becomes cuda or cpu; cuda without a GPU is a usage error."""
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
