"""Which one bounds a training step: the host or the GPU?

For each step mode of the trainer (``graph``: the whole step as one CUDA
graph, ``default``: the compiled network in an eager step, ``eager``) this
trains a recipe's network on a resident split of random images for a while
and prints, per step:

  ms/step     wall time per step over ``--steps`` steps (synchronised at the end)
  host ms     what the host spends issuing one step (Python, launches)
  GPU ms      the time the GPU is busy per step (the union of its kernels'
              intervals in a ``torch.profiler`` trace of ``--profile-steps`` steps)
  busy %      GPU ms over ms/step: near 100 the GPU limits, far below it the host
  launches    kernel and graph launches per step, from the same trace
  warm-up s   the first steps (compilation, cuDNN's search, capture)

The batches are made as the trainer makes them (``data/resident.py``: in the
graph's own kernels for ``graph`` where the windows have a fixed size),
from a split of random uint8 images with made-up statistics, so no data set
is needed (``ilsvrc.synthetic.build_step``). Then the ratios of each mode's
images/s to eager's.

    python benchmarks/step_profile.py                                   # ResNet-20 at 128, CIFAR sizes
    python benchmarks/step_profile.py --model resnet-110
    python benchmarks/step_profile.py --recipe alexnet --images 2048   # AlexNet at 128, 224x224 of 256
    python benchmarks/step_profile.py --device cpu --steps 3 --profile-steps 2 --modes eager   # a check on a CPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ilsvrc import recipes
from ilsvrc.models import check_recipe
from ilsvrc.step import MODES
from ilsvrc.synthetic import build_step, made_up_stats, random_split  # noqa: F401 (tests/test_whole_step.py imports the last two from here)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py, also when loaded by path
from common import machine, resolve_device, sync, write_json  # noqa: E402


def busy(events) -> tuple[float, int]:
    """(GPU busy seconds: the union of kernel intervals, launches) of a profiler trace."""
    spans = sorted((e.time_range.start, e.time_range.end) for e in events
                   if e.device_type == torch.autograd.DeviceType.CUDA and e.time_range.end > e.time_range.start)
    total, end = 0, None
    for a, b in spans:
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    launches = sum(1 for e in events if e.name in ("cudaLaunchKernel", "cuLaunchKernel", "cudaGraphLaunch",
                                                   "cuLaunchKernelEx", "cudaLaunchKernelExC"))
    return total / 1e6, launches


def measure(mode: str, plan: recipes.Recipe, a, device: torch.device) -> dict:
    built = build_step(plan, mode, device=device, images=a.images, classes=a.classes, batch_size=a.batch_size, seed=a.seed)
    bs, step, run = built.batch_size, built.step, built.run
    per_epoch = a.images // bs
    tick = time.perf_counter()
    run(a.warmup, 0)
    sync(device)
    warmup = time.perf_counter() - tick
    done, tick = 0, time.perf_counter()
    while done < a.steps:
        count = min(per_epoch, a.steps - done)
        run(count, 1 + done // per_epoch)
        done += count
    sync(device)
    wall = (time.perf_counter() - tick) / a.steps
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        tick = time.perf_counter()
        run(a.profile_steps, 99)
        host = (time.perf_counter() - tick) / a.profile_steps  # issuing the steps, before waiting for them
        sync(device)
    gpu, launches = busy(prof.events()) if device.type == "cuda" else (float("nan"), 0)
    return {"mode": mode, "ms_per_step": 1e3 * wall, "images_per_s": bs / wall, "host_ms": 1e3 * host,
            "gpu_ms": 1e3 * gpu / a.profile_steps, "busy": gpu / a.profile_steps / wall,
            "launches_per_step": launches / a.profile_steps, "warmup_s": warmup,
            "graphs": getattr(step, "graphs", 0), "batch_size": bs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="resnet-cifar")
    p.add_argument("--model", default=None, help="a network of the recipe other than its default (resnet-56, ...)")
    p.add_argument("--modes", default="graph,default,eager", help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    p.add_argument("--images", type=int, default=10000, help="images in the random resident split")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=300, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed first steps (compilation, capture)")
    p.add_argument("--profile-steps", type=int, default=20)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args(argv)
    resolve_device(p, a)
    modes = a.modes.split(",")
    if any(m not in MODES for m in modes):
        p.error(f"--modes: each one of {', '.join(MODES)}")
    if min(a.steps, a.warmup, a.profile_steps) < 1:
        p.error("--steps, --warmup and --profile-steps must be positive")
    device = torch.device(a.device)
    plan = recipes.resolve(a.recipe, network=a.model)
    if a.model is not None:
        check_recipe(a.model, a.recipe)
    bs = a.batch_size or plan.optim.batch_size
    if a.images // bs < max(a.warmup, a.profile_steps, 1):
        raise SystemExit(f"--images {a.images} gives {a.images // bs} batches of {bs}: fewer than the warm-up or profiled steps")
    rows = [measure(m, plan, a, device) for m in modes]
    m = machine(device)
    print(f"{plan.network}, batch {rows[0]['batch_size']}, {plan.data.image_size}px; "
          f"{m['device']}, torch {m['torch']}, {m['date']}")
    print(f"{'mode':8s} {'ms/step':>8s} {'images/s':>9s} {'host ms':>8s} {'GPU ms':>7s} {'busy %':>7s} "
          f"{'launches':>9s} {'warm-up s':>10s} {'graphs':>7s}")
    for r in rows:
        print(f"{r['mode']:8s} {r['ms_per_step']:8.2f} {r['images_per_s']:9.0f} {r['host_ms']:8.2f} {r['gpu_ms']:7.2f} "
              f"{100 * r['busy']:7.1f} {r['launches_per_step']:9.1f} {r['warmup_s']:10.1f} {r['graphs']:7d}")
    base = next((r for r in rows if r["mode"] == "eager"), None)
    if base:
        for r in rows:
            if r is not base:
                print(f"{r['mode']} / eager: {r['images_per_s'] / base['images_per_s']:.2f}x images/s")
    write_json(a.json, {"machine": m, "network": plan.network, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
