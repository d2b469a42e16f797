"""DistributedDataParallel under torchrun: two gloo processes on the CPU
train the same weights as one process with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from conftest import NARROW_UNITS
from ilsvrc import train

# Dropout off: each rank draws its own masks, so with dropout the two runs
# would differ by design; everything else (crops, flips, lighting) is drawn
# per image and is identical.
COMMON = ["--epochs", "2", "--batch-size", "6", "--image-size", "64", "--dropout", "0", "--device", "cpu",
          "--workers", "0", "--no-progress", "--seed", "3"]


def torchrun(args, tmp_path, **env):
    env = dict(os.environ, OMP_NUM_THREADS="1", **env)
    entry = Path(__file__).with_name("torchrun_train.py")  # `ilsvrc train`, checking that DDP is gone before its group
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(entry), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_two_processes_match_one_and_resume(tiny_data, tmp_path, narrow):
    """AlexNet's recipe (crops, flips, lighting; two towers, LRN), its fc6
    and fc7 narrow in every process (conftest.narrow_heads): 9.4 rather than
    81 MB of gradients to reduce each step, and checkpoints as much smaller."""
    one = train("alexnet", tiny_data, tmp_path / "one", epochs=2, batch_size=6, image_size=64, dropout=0.0,
                device="cpu", workers=0, progress=False, seed=3, max_steps=6)
    out = str(tmp_path / "two")
    narrow = {"HIDDEN_UNITS": str(NARROW_UNITS)}  # read by torchrun_train.py
    torchrun(["--data", str(tiny_data), "--out", out, "--max-steps", "3", *COMMON], tmp_path, **narrow)
    torchrun(["--data", str(tiny_data), "--out", out, "--max-steps", "6", "--resume", *COMMON], tmp_path, **narrow)
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert b["step"] == a["step"] == 6 and len(b["rng"]) == 2
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-4, atol=1e-6, msg=k)
    # rank 0 alone writes, one row each: the stop at 3, the end of epoch 1 at 4, the stop at 6
    rows = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 4, 6]
    assert abs(rows[-1]["train_loss"] - one["train_loss"]) < 1e-3  # summed over both ranks


def test_each_rank_streams_only_its_share_and_the_shares_make_the_epoch(tiny_data, tmp_path):
    """Two ranks on a packed store with the stream loader: each reads the
    bytes of its own images only, the two shares are disjoint, and together
    they are every image of the epoch, training and held-out."""
    from ilsvrc.data.store import pack

    store = tmp_path / "store"
    pack(tiny_data, store, size=32, encoding="raw", workers=0, progress=False)
    shares = tmp_path / "shares"
    shares.mkdir()
    torchrun(["--data", str(store), "--out", str(tmp_path / "run"), "--recipe", "resnet-cifar", "--model", "resnet-20",
              "--set", "iterations=4", "--batch-size", "6", "--loader", "stream", "--device", "cpu", "--no-progress"],
             tmp_path, SHARES=str(shares))
    manifest = json.loads((store / "ilsvrc-store.json").read_text())
    for split in ("train", "val"):
        read = [[int(i) for i in (shares / f"{split}-rank{r}.txt").read_text().split()] for r in (0, 1)]
        assert set(read[0]).isdisjoint(read[1]) and all(read)
        assert sorted(read[0] + read[1]) == list(range(manifest["splits"][split]["count"]))  # each image once
