"""How long the whole step takes to compile, cold and with a warm cache, alone and stacked.

The first step of a run compiles its whole step (``ilsvrc.step.WholeStep``;
on a GPU it is then captured): on an H200 that took 40 s of the ResNet-20
recipe's 184 s and 89 s for ResNet-56 (docs/benchmarks.md), and an
experiment compiles each of its networks. torch.compile keeps what it
compiled in a cache folder (inductor's FX graph cache and AOTAutograd's
cache, ``TORCHINDUCTOR_CACHE_DIR``), so a second run of the same network on
the same machine compiles far less. This measures both: for each network
of ``--models`` and each count of ``--copies`` (1: one run's step; N > 1:
N seeds as one stacked step, ``ilsvrc.stacked``), it times the first step
(compilation and the step) and the third (the step alone) in a fresh
process with an empty cache folder ("cold"), then again in another fresh
process with the cache the first one left ("warm"). Each process builds the
trainer's step on a random resident split (``ilsvrc.synthetic.build_step``).

    python benchmarks/compile_time.py                                        # ResNet-20 and -56, alone and 8 stacked, on a GPU
    python benchmarks/compile_time.py --device cpu --models resnet-20 --copies 1,4 --batch-size 8 --images 32   # 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ilsvrc import UserError, recipes
from ilsvrc.models import check_recipe

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py, also when loaded by path
from common import machine, resolve_device, sync, write_json  # noqa: E402

MARK = "compile_time: "  # the child process's one line of results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="resnet-cifar")
    p.add_argument("--models", default="resnet-20,resnet-56", help="comma-separated networks of the recipe (default: resnet-20,resnet-56)")
    p.add_argument("--copies", default="1,8", help="comma-separated run counts: 1 is one run's step, N > 1 N seeds stacked (default: 1,8)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    p.add_argument("--images", type=int, default=2560, help="images in each run's random resident split: three batches at least (default: 2560)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--backend", default=None,
                   help="torch.compile's backend (default: inductor, whose cache this measures; aot_eager: a quick check that it runs)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one measurement, in its own process
    a = p.parse_args(argv)
    resolve_device(p, a)
    try:
        counts = [int(c) for c in a.copies.split(",")]
    except ValueError:
        p.error(f"--copies takes whole numbers, not {a.copies!r}")
    if min(counts) < 1:
        p.error("--copies must be positive")
    models = a.models.split(",")
    for name in models:
        try:
            check_recipe(name, a.recipe)
        except UserError as e:  # a network the recipe does not train
            p.error(str(e))
    if a.child:
        print(MARK + json.dumps(measure(a, models[0], counts[0])), flush=True)
        return 0
    rows = []
    for name in models:
        for copies in counts:
            with tempfile.TemporaryDirectory(prefix="ilsvrc-compile-") as cache:
                cold, warm = (child(a, name, copies, cache) for _ in range(2))
            rows.append({"model": name, "copies": copies, "cold": cold, "warm": warm})
    m = machine(torch.device(a.device))
    print(f"whole-step compilation, {a.recipe}; {m['device']}, torch {m['torch']}, {m['date']}")
    print(f"{'network':12s} {'runs':>4s}  {'cold first s':>12s}  {'warm first s':>12s}  {'cold / warm':>11s}  {'step ms':>8s}")
    for r in rows:
        print(f"{r['model']:12s} {r['copies']:4d}  {r['cold']['first_s']:12.1f}  {r['warm']['first_s']:12.1f}"
              f"  {r['cold']['first_s'] / r['warm']['first_s']:10.1f}x  {1000 * r['warm']['step_s']:8.1f}")
    write_json(a.json, {"machine": m, "recipe": a.recipe, "rows": rows})
    return 0


def child(a, name: str, copies: int, cache: str) -> dict:
    """One measurement in a fresh process whose torch.compile cache is ``cache``."""
    argv = [sys.executable, __file__, "--child", "--recipe", a.recipe, "--models", name, "--copies", str(copies),
            "--images", str(a.images), "--classes", str(a.classes), "--device", a.device]
    if a.batch_size:
        argv += ["--batch-size", str(a.batch_size)]
    if a.backend:
        argv += ["--backend", a.backend]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARK)), None)
    if done.returncode or line is None:
        raise SystemExit(f"the measurement of {name} x{copies} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return json.loads(line[len(MARK):])


def measure(a, name: str, copies: int) -> dict:
    """Seconds of the first step (compilation included) and of the third
    (the step alone: on a GPU the second is captured as a CUDA graph, the
    third replays it)."""
    from ilsvrc.stacked import StackedStep
    from ilsvrc.synthetic import build_step

    device = torch.device(a.device)
    plan = recipes.resolve(a.recipe, network=name)
    bs = a.batch_size or plan.optim.batch_size
    if a.images < 3 * bs:
        raise SystemExit(f"{name}: needs --images of at least three batches")
    steps = []
    for seed in range(copies):
        step = build_step(plan, "graph", device=device, images=a.images, classes=a.classes, batch_size=a.batch_size,
                          seed=seed, backend=a.backend).step
        if step.feed is None:
            raise SystemExit(f"{name}: needs a recipe with fixed-size windows")
        step.feed.start(0)
        steps.append(step)
    step = steps[0] if copies == 1 else StackedStep(steps, backend=a.backend)
    times = []
    for _ in range(3):
        tick = time.perf_counter()
        step.next(bs)
        sync(device)
        times.append(time.perf_counter() - tick)
    return {"first_s": times[0], "step_s": times[2], "batch_size": bs}


if __name__ == "__main__":
    sys.exit(main())
