"""Runs side by side, and stacked into one step, against the same runs one after another, on one GPU.

``ilsvrc.together`` trains an experiment's networks at once, two ways:
they take turns one step each, each on its own CUDA stream, so that the GPU
runs one network's kernels beside another's; or (``--stack``) the runs of
one network (seeds; a plain network and its residual twin) take their steps
as one stacked step (``ilsvrc.stacked``: each convolution one grouped
convolution over the runs), the stacks taking turns on their streams. This
measures what each buys: for each network of ``--models`` (``--copies``
runs of each, seeds 0, 1, ...) it builds the trainer's step as ``ilsvrc
train`` runs it (``--mode``, by default the whole step as one CUDA graph,
on a random resident split: ``ilsvrc.synthetic.build_step``), and times
``--steps`` steps of every run, in the ways of ``--ways``:

- alone: one run of each network, all its steps, then the next network's;
  the copies of a network do the same work as its first (they differ only
  in their seeds), so "one after another" is its time times ``--copies``;
- together: one step of each run in turn, each on its own stream;
- stacked: the runs grouped into stacked steps where they can be, each
  stack (and each run left alone) in turn on its own stream.

Each way's warm-up (compilation and capture of the steps it runs; the
stacks compile once for all their runs) is timed apart and printed. It
prints the images/s of each way and their ratios to one after another (the
issue's target: >= 3x for the eight CIFAR ResNets).

    python benchmarks/together.py                                     # plain and residual 20-56, on a GPU
    python benchmarks/together.py --models resnet-20 --copies 8       # eight seeds of one network
    python benchmarks/together.py --device cpu --models resnet-20,plain-20 --steps 2 --images 16 --batch-size 4 --backend aot_eager
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ilsvrc import recipes
from ilsvrc.models import check_recipe
from ilsvrc.stacked import StackedStep, stack_key
from ilsvrc.step import MODES
from ilsvrc.synthetic import build_step
from ilsvrc.together import allow_recompiles

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py, also when loaded by path
from common import machine, resolve_device, sync, write_json  # noqa: E402

CIFAR_RESNETS = "resnet-20,resnet-32,resnet-44,resnet-56,plain-20,plain-32,plain-44,plain-56"


WAYS = ("alone", "together", "stacked")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="resnet-cifar")
    p.add_argument("--models", default=CIFAR_RESNETS, help=f"comma-separated networks of the recipe (default: {CIFAR_RESNETS})")
    p.add_argument("--copies", type=int, default=1, help="runs of each network (seeds)")
    p.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, of {', '.join(WAYS)} (default: all)")
    p.add_argument("--mode", default="graph", choices=MODES, help="the step mode (default: graph, as ilsvrc train on a GPU;"
                   " only its steps stack)")
    p.add_argument("--backend", default=None, help="torch.compile's backend (default: inductor; aot_eager for a quick CPU check)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    p.add_argument("--images", type=int, default=30000,
                   help="images in each run's random resident split: at least (--steps + 1) batches (default: 30000)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=200, help="timed steps per run, each way")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps of each run or stack (compilation, capture)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args(argv)
    resolve_device(p, a)
    ways = a.ways.split(",")
    if min(a.steps, a.warmup, a.copies) < 1:
        p.error("--steps, --warmup and --copies must be positive")
    if not ways or any(w not in WAYS for w in ways):
        p.error(f"--ways takes {', '.join(WAYS)}, not {a.ways!r}")
    device = torch.device(a.device)
    names = [m for m in a.models.split(",") for _ in range(a.copies)]
    allow_recompiles(len(names))  # each network's step (and each stack's) is an entry in torch.compile's cache
    runs = [_prepare(p, a, name, i, device) for i, name in enumerate(names)]
    figures = {}
    if "alone" in ways:
        firsts = [r for i, r in enumerate(runs) if names.index(r["name"]) == i]
        seconds = _timed(firsts, a, device, epoch=1, rounds=False) * a.copies
        figures["alone"] = {"seconds": seconds, "warmup_s": sum(r["warmup_s"] for r in firsts)}
    if "together" in ways:
        seconds = _timed(runs, a, device, epoch=2, rounds=True)
        figures["together"] = {"seconds": seconds, "warmup_s": sum(r["warmup_s"] for r in runs)}
    if "stacked" in ways:
        stacks = _stacks(runs, a, device)
        seconds = _timed(stacks, a, device, epoch=3, rounds=True)
        figures["stacked"] = {"seconds": seconds, "warmup_s": sum(s["warmup_s"] for s in stacks),
                              "stacks": [s["name"] for s in stacks]}
    images = a.steps * sum(r["batch_size"] for r in runs)
    m = machine(device)
    print(f"{len(runs)} runs ({', '.join(names)}), {a.steps} steps each, mode {a.mode}; "
          f"{m['device']}, torch {m['torch']}, {m['date']}")
    labels = {"alone": "one after another", "together": "together", "stacked": "stacked"}
    for way, f in figures.items():
        f["images_per_s"] = images / f["seconds"]
        print(f"{labels[way]:18s} {f['seconds']:8.2f} s  {f['images_per_s']:10.0f} images/s  (warm-up {f['warmup_s']:.1f} s)")
    if "stacked" in figures:
        print(f"stacks: {'; '.join(figures['stacked']['stacks'])}")
    ratios = {}
    if "alone" in figures:
        for way in ("together", "stacked"):
            if way in figures:
                ratios[way] = figures["alone"]["seconds"] / figures[way]["seconds"]
                print(f"{labels[way]} / one after another: {ratios[way]:.2f}x images/s")
    write_json(a.json, {"machine": m, "models": names, "mode": a.mode, "steps": a.steps, "ways": figures, "ratios": ratios})
    return 0


def _prepare(p, a, name: str, seed: int, device: torch.device) -> dict:
    """Run ``seed`` of network ``name``: its step as the trainer builds it, not yet warmed up."""
    plan = recipes.resolve(a.recipe, network=name)
    check_recipe(name, a.recipe)
    bs = a.batch_size or plan.optim.batch_size
    if a.images // bs < max(a.steps + 1, a.warmup):
        p.error(f"--images {a.images} gives {a.images // bs} batches of {bs}: fewer than --steps + 1 or --warmup")
    built = build_step(plan, a.mode, device=device, images=a.images, classes=a.classes, batch_size=a.batch_size,
                       seed=seed, backend=a.backend)
    return {"name": name, "batch_size": bs, "step": built.step, "steps": built.steps, "warmup_s": None,
            "stream": torch.cuda.Stream(device) if device.type == "cuda" else None}


def _stacks(runs: list[dict], a, device: torch.device) -> list[dict]:
    """The runs grouped as ``ilsvrc.together --stack`` groups them: a stack
    (a ``StackedStep``, with its own ``steps(epoch)``) for the runs that share
    a key, the others alone."""
    groups: dict = {}
    for r in runs:
        key = stack_key(r["step"])
        groups.setdefault(id(r) if key is None else key, []).append(r)
    found = []
    for members in groups.values():
        if len(members) == 1:
            found.append(members[0])
            continue
        stacked = StackedStep([r["step"] for r in members], backend=a.backend)
        bs = members[0]["batch_size"]

        def steps(epoch: int, stacked=stacked, bs=bs):
            for r in stacked.steps:
                r.feed.start(epoch)
            for _ in range(len(stacked.steps[0].feed.split) // bs):
                stacked.next(bs)
                yield

        found.append({"name": "+".join(r["name"] for r in members), "steps": steps, "warmup_s": None,
                      "stream": members[0]["stream"]})
    return found


def _timed(runs: list[dict], a, device: torch.device, epoch: int, rounds: bool) -> float:
    """Seconds for ``a.steps`` steps of each of ``runs`` (runs or stacks),
    after warming up those not yet warm: one after another, or one step of
    each in turn (``rounds``), each on its own stream."""
    for r in runs:
        if r["warmup_s"] is None:
            tick = time.perf_counter()
            with torch.cuda.stream(r["stream"]):
                for _ in zip(range(a.warmup), r["steps"](0)):
                    pass
            sync(device)
            r["warmup_s"] = time.perf_counter() - tick
            print(f"{r['name']}: warm-up {r['warmup_s']:.1f} s", flush=True)
    turns = []
    for r in runs:  # each run's epoch with its first step taken (the epoch's tables made): not timed
        with torch.cuda.stream(r["stream"]):
            turns.append(r["steps"](epoch))
            next(turns[-1])
    sync(device)
    tick = time.perf_counter()
    if rounds:
        for _ in range(a.steps):
            for r, turn in zip(runs, turns):
                with torch.cuda.stream(r["stream"]):
                    next(turn)
    else:
        for r, turn in zip(runs, turns):
            with torch.cuda.stream(r["stream"]):
                for _ in range(a.steps):
                    next(turn)
    sync(device)
    return time.perf_counter() - tick


if __name__ == "__main__":
    sys.exit(main())
