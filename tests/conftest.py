"""Shared fixtures: small datasets, real where ../shared/datasets is present,
generated otherwise, so the suite runs anywhere without downloads."""

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# Under pytest-xdist (pyproject.toml's addopts: one worker per core) each
# worker computes on its share of the cores, and so do the processes its
# tests start: N workers each taking every core would oversubscribe them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _threads = max(1, _cores // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)


def shared_datasets() -> Path | None:
    """$ILSVRC_DATA, else ../shared/datasets beside the checkout, if present."""
    for candidate in (os.environ.get("ILSVRC_DATA"), REPO.parent / "shared" / "datasets"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def make_images(root: Path, classes: int, per_class: int, size=(40, 52), seed: int = 0, split="train") -> None:
    """Generated photos: each class a colour and a stripe direction, with noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for c in range(classes):
        folder = root / split / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = np.array([(c * 97) % 256, (c * 57 + 80) % 256, (c * 151 + 40) % 256], dtype=np.float64)
        angle = np.pi * c / classes
        stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / 2.5)
        for i in range(per_class):
            noise = rng.normal(0, 25, (h, w, 3))
            img = 0.6 * colour + 60 * stripes[..., None] + noise + rng.normal(0, 15, 3)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img{i:04d}.jpg", quality=92)


def make_cifar_like(root: Path, classes: int, train: int, test: int, seed: int = 0) -> Path:
    """A CIFAR-shaped ImageFolder at ``root``: 32x32 images, ``train`` and ``test`` per class (train/, test/)."""
    make_images(root, classes, train, size=(32, 32), seed=seed, split="train")
    make_images(root, classes, test, size=(32, 32), seed=seed + 1, split="test")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Three generated classes, a few images each, in train/ and val/."""
    root = tmp_path_factory.mktemp("tiny")
    make_images(root, 3, 8, seed=1, split="train")
    make_images(root, 3, 4, seed=2, split="val")
    return root


@pytest.fixture(scope="session")
def learn_data(tmp_path_factory) -> Path:
    """Four CIFAR-10 classes (150 train, 50 test images each) from the shared
    datasets when present, else four generated classes of the same size."""
    root = tmp_path_factory.mktemp("learn")
    shared = shared_datasets()
    cifar = shared / "cifar10" if shared else None
    if cifar and (cifar / "train").is_dir():
        for split, dst, n in (("train", "train", 150), ("test", "val", 50)):
            for c in ("airplane", "automobile", "frog", "ship"):
                (root / dst / c).mkdir(parents=True)
                for f in sorted(os.listdir(cifar / split / c))[:n]:
                    os.symlink(cifar / split / c / f, root / dst / c / f)
    else:
        make_images(root, 4, 150, size=(32, 32), seed=3, split="train")
        make_images(root, 4, 50, size=(32, 32), seed=4, split="val")
    return root


NARROW_UNITS = 64  # fc6's and fc7's units in ``narrow_heads``
# ``narrow_heads`` in a process the test starts (cli_with's patch; torchrun_train.py reads $HIDDEN_UNITS)
NARROW_PATCH = ("import ilsvrc.models.alexnet, ilsvrc.models.vgg\n"
                f"ilsvrc.models.alexnet.HIDDEN_UNITS = ilsvrc.models.vgg.HIDDEN_UNITS = {NARROW_UNITS}\n")


def narrow_heads(patch: pytest.MonkeyPatch, units: int = NARROW_UNITS) -> None:
    """AlexNet's and VGG's fc6 and fc7 built with ``units`` units instead of
    4096 (in this process), for tests of what is done around a network (its
    runs, checkpoints, tables), not of the network: at 64 px AlexNet has 20M
    parameters, 17M of them fc7's, and each epoch writes 240 MB of
    checkpoints (the weights, their momentum, the best weights)."""
    import ilsvrc.models.alexnet
    import ilsvrc.models.vgg

    for module in (ilsvrc.models.alexnet, ilsvrc.models.vgg):
        patch.setattr(module, "HIDDEN_UNITS", units)


@pytest.fixture
def narrow(monkeypatch) -> None:
    """``narrow_heads`` for one test."""
    narrow_heads(monkeypatch)


@pytest.fixture(scope="module")
def narrow_module():
    """``narrow_heads`` for a module's tests and its module-scoped runs
    (which ask for it, so that it is in place before they train)."""
    with pytest.MonkeyPatch.context() as patch:
        narrow_heads(patch)
        yield


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """Statistics are cached in a folder of the test session, not the user's."""
    monkeypatch.setenv("ILSVRC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its size and modification time."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def user_error(capsys, argv, code: int = 2) -> str:
    """Run the CLI in this process, check the exit code (2: a user error)
    and a single line on stderr; return that line."""
    from ilsvrc.cli import main

    try:
        got = main(argv)
    except SystemExit as e:  # argparse
        got = e.code
    err = capsys.readouterr().err
    assert got == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def cli_with(folder: Path, patch: str = "") -> list[str]:
    """The command line of ``ilsvrc`` in a fresh Python process that first
    runs ``patch`` (code that makes the process interrupt or kill itself at a
    chosen moment; ``os``, ``signal`` and ``sys`` are imported): what a
    signal does at that moment, every time, however fast the machine. Ctrl-C
    works as in a terminal even where the tests run as a background job
    (whose processes start with SIGINT ignored)."""
    script = folder / f"ilsvrc-{abs(hash(patch)):x}.py"
    script.write_text("import os, signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
                      + textwrap.dedent(patch) + "\nfrom ilsvrc.cli import main\nsys.exit(main())\n")
    return [sys.executable, str(script)]


def started(cmd: list[str], until: Path) -> subprocess.Popen:
    """``cmd`` running, once file ``until`` exists (or it has ended, or 4
    minutes have passed); its stderr is a text pipe."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not until.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    return proc


def load_benchmark(name: str):
    """The script benchmarks/NAME.py as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomise(model, seed=0):
    """Random weights and batch-norm statistics, so that equal logits say something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.2, generator=g)
                m.running_mean.normal_(0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return model
