"""Training from a packed store larger than memory (issue 24, item 5): the
stream loader reads at most ``prefetch`` batches ahead, so a run's memory
does not grow with the store. Measured as a difference, so that nothing
else of a process's memory (torch, the network, the allocator's habits)
enters: the same training on a store four times as large, each run in a
fresh process, peaks at the same anonymous memory (``RssAnon``: the store's
own pages are memory-mapped, page cache the kernel takes back, and are not
counted), where a loader that read the store ahead whole would peak three
stores' difference higher."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ilsvrc.data.store import write_store

SIZE = 256  # stored side: 192 KiB a raw image, so that a store of a few hundred images is tens of MiB
SMALL, LARGE = 96, 384  # images in the training split: 18 and 72 MiB
BATCH = 8
# glibc's malloc keeps freed blocks for reuse (a threshold that rises as large blocks are freed, an arena per
# thread), and how much it keeps grows with the steps taken: fixed here, every block of 64 KiB or more is mapped
# when allocated and returned when freed, so that RssAnon is the memory in use. (Measured without: 18 MiB more
# for the larger store with a bounded loader, 52 MiB with an unbounded one.)
MALLOC = {"OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "2"}

# A training run from ``store`` with the stream loader, its peak RssAnon sampled every 2 ms.
TRAIN = textwrap.dedent("""
    import json, sys, threading, time
    import torch
    from ilsvrc.data import streamed
    from ilsvrc.train import train

    torch.set_num_threads(1)
    store, out, prefetch, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    init = streamed.StreamedSplit.__init__
    streamed.StreamedSplit.__init__ = lambda self, *a, **k: init(self, *a, **{**k, "prefetch": prefetch})

    def anon():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))  # KiB

    peak, running = [0], True
    def sample():
        while running:
            peak[0] = max(peak[0], anon())
            time.sleep(0.002)
    threading.Thread(target=sample, daemon=True).start()
    row = train("resnet-cifar", store, out, model="resnet-20", max_steps=steps, batch_size=%d, data_loader="stream",
                device="cpu", workers=0, progress=False)
    running = False
    print(json.dumps({"peak_kib": max(peak[0], anon()), "steps": row["step"]}))
""" % BATCH)


def make_store(out: Path, n: int) -> Path:
    """A raw store of ``n`` random SIZE x SIZE training images and 8 held out, two classes."""
    gen = torch.Generator().manual_seed(n)

    def rows(count):
        for i in range(count):
            img = torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8, generator=gen)
            yield img, img.numpy().reshape(-1), i % 2, f"image{i}"

    (out.parent / "source").mkdir(exist_ok=True)
    write_store(out, ["a", "b"], {"train": (n, rows(n)), "val": (8, rows(8))}, size=SIZE, encoding="raw",
                quality=None, part_mib=16, source=out.parent / "source", progress=False)
    return out


def peak_mib(store: Path, out: Path, prefetch: int) -> float:
    """The peak RssAnon (MiB) of one epoch's training from ``store``."""
    steps = -(-int(store.name.split("-")[1]) // BATCH)
    done = subprocess.run([sys.executable, "-c", TRAIN, str(store), str(out), str(prefetch), str(steps)], capture_output=True,
                          text=True, env=os.environ | MALLOC, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["steps"] == steps  # every batch of the epoch trained
    return result["peak_kib"] / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon from /proc (Linux)")
def test_training_from_a_store_four_times_as_large_takes_no_more_memory(tmp_path):
    small, large = make_store(tmp_path / f"store-{SMALL}", SMALL), make_store(tmp_path / f"store-{LARGE}", LARGE)
    stores = (LARGE - SMALL) * 3 * SIZE * SIZE / 2**20  # 54 MiB more stored images
    grew = peak_mib(large, tmp_path / "run-large", 4) - peak_mib(small, tmp_path / "run-small", 4)
    # bounded: what 4 batches ahead, 4 reads under way and the batch in use hold (9 x 1.5 MiB), whatever the store
    assert grew < stores / 4, f"peak memory grew {grew:.1f} MiB with {stores:.0f} MiB more stored images"
