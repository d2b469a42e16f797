"""Runs side by side against the same runs one after another, on one GPU.

``ilsvrc.together`` trains an experiment's networks at once: they take
turns one step each, each on its own CUDA stream, so that the GPU runs one
network's kernels beside another's. This measures what that buys: for each
network of ``--models`` it builds the trainer's step as ``ilsvrc train``
runs it (``--mode``, by default the whole step as one CUDA graph, on a
random resident split as ``step_profile.py`` does), warms each up
(compilation, capture: not timed), then times ``--steps`` steps of every
network

- one after another: all of the first network's steps, then the second's...
- together: one step of each in turn, each on its own stream,

and prints the images/s of both, in all, and their ratio (the issue's
target: together >= 3x one after another for the eight CIFAR ResNets).

    python benchmarks/together.py                                     # plain and residual 20-56, on a GPU
    python benchmarks/together.py --models resnet-20 --copies 8       # eight seeds of one network
    python benchmarks/together.py --device cpu --models resnet-20,plain-20 --steps 2 --images 16 --batch-size 4 --mode eager
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

from ilsvrc import recipes
from ilsvrc.models import check_recipe
from ilsvrc.step import MODES

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py, also when loaded by path
from common import machine, resolve_device, sync, write_json  # noqa: E402
from step_profile import prepare  # noqa: E402

CIFAR_RESNETS = "resnet-20,resnet-32,resnet-44,resnet-56,plain-20,plain-32,plain-44,plain-56"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="resnet-cifar")
    p.add_argument("--models", default=CIFAR_RESNETS, help=f"comma-separated networks of the recipe (default: {CIFAR_RESNETS})")
    p.add_argument("--copies", type=int, default=1, help="runs of each network (seeds)")
    p.add_argument("--mode", default="graph", choices=MODES, help="the step mode (default: graph, as ilsvrc train on a GPU)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    p.add_argument("--images", type=int, default=30000,
                   help="images in each run's random resident split: at least (--steps + 1) batches (default: 30000)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=200, help="timed steps per run, each way")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps of each run (compilation, capture)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args(argv)
    resolve_device(p, a)
    if min(a.steps, a.warmup, a.copies) < 1:
        p.error("--steps, --warmup and --copies must be positive")
    device = torch.device(a.device)
    names = [m for m in a.models.split(",") for _ in range(a.copies)]
    runs = []
    for i, name in enumerate(names):
        a.seed = i  # step_profile.prepare reads the seed from the arguments
        plan = recipes.resolve(a.recipe, network=name).to_dict()
        check_recipe(name, a.recipe)
        bs, _, steps, run = prepare(a.mode, plan, a, device)
        if a.images // bs < max(a.steps + 1, a.warmup):
            p.error(f"--images {a.images} gives {a.images // bs} batches of {bs}: fewer than --steps + 1 or --warmup")
        stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        runs.append({"name": name, "batch_size": bs, "steps": steps, "stream": stream})
        tick = time.perf_counter()
        with _on(stream):
            run(a.warmup, 0)
        sync(device)
        print(f"{name}: warm-up {time.perf_counter() - tick:.1f} s", flush=True)

    def started(epoch: int) -> list:
        """Each run's steps of ``epoch`` with its first step taken (the epoch's tables made): not timed."""
        turns = []
        for r in runs:
            with _on(r["stream"]):
                turns.append(r["steps"](epoch))
                next(turns[-1])
        sync(device)
        return turns

    # one after another: all of a run's steps, then the next run's
    turns = started(1)
    tick = time.perf_counter()
    for r, turn in zip(runs, turns):
        with _on(r["stream"]):
            for _ in range(a.steps):
                next(turn)
        sync(device)
    alone = time.perf_counter() - tick

    # together: one step of each run in turn, each on its own stream (ilsvrc.together)
    turns = started(2)
    tick = time.perf_counter()
    for _ in range(a.steps):
        for r, turn in zip(runs, turns):
            with _on(r["stream"]):
                next(turn)
    sync(device)
    together = time.perf_counter() - tick

    images = a.steps * sum(r["batch_size"] for r in runs)
    m = machine(device)
    result = {"machine": m, "models": names, "mode": a.mode, "steps": a.steps,
              "one_after_another": {"seconds": alone, "images_per_s": images / alone},
              "together": {"seconds": together, "images_per_s": images / together},
              "ratio": alone / together}
    print(f"{len(runs)} runs ({', '.join(names)}), {a.steps} steps each, mode {a.mode}; "
          f"{m['device']}, torch {m['torch']}, {m['date']}")
    print(f"one after another  {alone:8.2f} s  {images / alone:10.0f} images/s")
    print(f"together           {together:8.2f} s  {images / together:10.0f} images/s")
    print(f"together / one after another: {alone / together:.2f}x images/s")
    write_json(a.json, result)
    return 0


def _on(stream):
    return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()


if __name__ == "__main__":
    sys.exit(main())
