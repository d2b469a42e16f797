"""Training-step throughput: the paper's AlexNet as ilsvrc builds it, the same
network as a stock PyTorch user would write it, and torchvision's alexnet.

One training step = forward, cross-entropy loss, backward, SGD step (momentum
0.9, weight decay 5e-4), on one synthetic batch of random images and labels
that is the same for every step and every network. Compilation and cuDNN's
algorithm search happen in the warm-up steps, which are not timed. Each
network is then timed over ``--repeats`` runs of ``--steps`` steps (the device
synchronised before and after each run); the figure is the median run.

On CUDA every network runs under bf16 autocast with channels_last weights and
inputs; on the CPU in float32, contiguous.

    python benchmarks/step.py                      # all networks, eager and compiled
    python benchmarks/step.py --device cuda --batch-size 256 --json step.json
    python benchmarks/step.py --no-compile         # eager only (fast)

Entries:
  ilsvrc eager / compiled       ilsvrc.models.build("alexnet", num_classes=1000)
  stock eager / compiled        the same layers with nn.Conv2d(groups=2) and
                                torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75,
                                k=2.0) over all 96 / 256 channels (the towers not
                                kept apart in the LRN, as a stock user writes it)
  torchvision eager / compiled  torchvision.models.alexnet(num_classes=1000), random
                                weights (a different, smaller network: no LRN, no
                                towers, 64/192/384/256/256 kernels)
  with --reference-lrn also:
  ilsvrc eager / compiled, reference LRN   ilsvrc's network with its LRN through
                                F.local_response_norm (the path before the fused LRN)
  with --variants also (each gain of issue 12 on its own):
  ilsvrc compiled, towers as groups   the towers as groups=2 convolutions (cuDNN
                                slices channels_last maps per group), not as halves
  ilsvrc compiled, LRN kernel   the LRN (with the ReLU before it) as the Triton
                                kernels of models/lrn_triton.py (off by default
                                until a GPU run checks them)
  with --whole-step also:
  ilsvrc whole step             ilsvrc's network trained as ``ilsvrc train`` does on
                                a GPU: the whole step (forward, gradient, SGD update)
                                as one compiled graph, replayed as one CUDA graph
                                (``step.WholeStep``, the batch in static buffers)

``--profile N`` prints, after each entry, its top GPU kernels over N more
steps (``torch.profiler``): the kernel, its share of the GPU time, ms per step.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import platform
import statistics
import sys
from pathlib import Path
import time
from collections import OrderedDict
from typing import Callable

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from ilsvrc.models import paper_variant
from ilsvrc.models import lrn_triton
from ilsvrc.models.alexnet import alexnet
from ilsvrc.models.layers import LocalResponseNorm, lrn_reference
from ilsvrc.step import WholeStep

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py, also when loaded by path
from common import device_name, resolve_device, sync, write_json  # noqa: E402


NUM_CLASSES = 1000
# Defaults per device: (batch size, timed steps per repeat, warm-up steps, repeats).
DEFAULTS = {"cuda": (256, 20, 5, 5), "cpu": (8, 1, 2, 3)}


# --- The networks ---------------------------------------------------------------------------


def stock_alexnet(num_classes: int = NUM_CLASSES, image_size: int = 224) -> nn.Module:
    """The paper's AlexNet as a stock PyTorch user writes it: the same layers,
    towers as ``groups=2`` convolutions, torch's own LRN over all channels
    (alpha=5e-4 = n * 1e-4, since torch divides alpha by n)."""
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731
    features = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4, padding=2), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    )  # fmt: skip
    with torch.no_grad():
        flat = features(torch.zeros(1, 3, image_size, image_size)).numel()
    classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(flat, 4096), nn.ReLU(inplace=True),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )  # fmt: skip
    return nn.Sequential(OrderedDict(features=features, flatten=nn.Flatten(1), classifier=classifier))


class _ReferenceLRN(LocalResponseNorm):
    """ilsvrc's LRN through F.local_response_norm (the path before the fused one)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu:  # the ReLU before it, which the layer applies (layers.fuse_relu_lrn)
            x = F.relu(x)
        return lrn_reference(x, self.size, self.alpha, self.beta, self.k, self.groups)


def ilsvrc_alexnet(image_size: int, reference_lrn: bool = False, tower_layout: str = "halves",
                   num_classes: int = NUM_CLASSES) -> nn.Module:
    model = alexnet(num_classes, **paper_variant("alexnet"), image_size=image_size, tower_layout=tower_layout)
    if reference_lrn:
        for name, layer in model.features.named_children():
            if isinstance(layer, LocalResponseNorm):
                setattr(model.features, name, _ReferenceLRN(layer.size, layer.alpha, layer.beta, layer.k, layer.groups,
                                                            relu=layer.relu))
    return model


def torchvision_alexnet(image_size: int, num_classes: int = NUM_CLASSES) -> nn.Module:
    return torchvision.models.alexnet(weights=None, num_classes=num_classes)


# --- Timing ---------------------------------------------------------------------------------


def top_kernels(events, steps: int, count: int) -> list[tuple[str, float, float]]:
    """(kernel, share of the GPU time, ms per step) of the ``count`` kernels
    that took the most GPU time in a profiler trace of ``steps`` steps."""
    totals: dict[str, float] = {}
    for e in events:
        if e.device_type == torch.autograd.DeviceType.CUDA:
            totals[e.name] = totals.get(e.name, 0.0) + e.time_range.end - e.time_range.start
    whole = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:count]
    return [(name, t / whole, t / 1e3 / steps) for name, t in ranked]


def time_training_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, compiled: bool | str, compile_mode: str,
                       steps: int, warmup: int, repeats: int, profile: int = 0) -> dict:
    """Median ms per training step of ``model`` on the batch (x, y);
    ``compiled="whole"``: the whole step as ``ilsvrc train`` runs it."""
    device = x.device
    model = model.to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    if compiled == "whole":
        whole = WholeStep(model, opt, 0.0, device, len(y))

        def step() -> torch.Tensor:
            whole(x, y, 1.0 / len(y))
            return whole.totals[0]
    else:
        forward = torch.compile(model, mode=None if compile_mode == "default" else compile_mode) if compiled else model

        def step() -> torch.Tensor:
            if compiled and compile_mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            with autocast:
                loss = F.cross_entropy(forward(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

    start = time.perf_counter()
    for _ in range(warmup):  # compilation, autotuning, allocator warm-up
        loss = step()
    sync(device)
    warmup_s = time.perf_counter() - start
    if warmup and not math.isfinite(loss.item()):
        raise RuntimeError("the loss is not finite during warm-up")

    per_step = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        per_step.append((time.perf_counter() - start) / steps)
    ms = 1000 * statistics.median(per_step)
    result = {"ms_per_step": ms, "images_per_s": x.shape[0] / (ms / 1000), "warmup_s": warmup_s,
              "ms_per_step_runs": [1000 * t for t in per_step]}
    if profile and device.type == "cuda":
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(profile):
                step()
            sync(device)
        result["top_kernels"] = top_kernels(prof.events(), profile, 10)
    return result


# --- The run --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, help="images per step (default: 256 on CUDA, 8 on the CPU)")
    p.add_argument("--image-size", type=int, default=224, help="square input size in pixels (default 224)")
    p.add_argument("--steps", type=int, help="timed steps per repeat (default: 20 on CUDA, 1 on the CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps first, compilation included (default: 5 on CUDA, 2 on the CPU)")
    p.add_argument("--repeats", type=int, help="timed runs of --steps steps; the median is reported (default: 5 on CUDA, 3 on the CPU)")
    p.add_argument("--no-compile", action="store_true", help="eager entries only")
    p.add_argument("--compile-mode", choices=("default", "reduce-overhead", "max-autotune"), default="default")
    p.add_argument("--reference-lrn", action="store_true", help="also time ilsvrc's network with the F.local_response_norm LRN")
    p.add_argument("--whole-step", action="store_true", help="also time ilsvrc's whole step as one graph (ilsvrc train on a GPU)")
    p.add_argument("--variants", action="store_true",
                   help="also time ilsvrc's network with its towers as groups and with the Triton LRN kernel (compiled)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="print each entry's top GPU kernels over N more steps (CUDA only)")
    p.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = p.parse_args(argv)
    resolve_device(p, args)
    batch, steps, warmup, repeats = DEFAULTS[args.device]
    for name, default in (("batch_size", batch), ("steps", steps), ("warmup", warmup), ("repeats", repeats)):
        if getattr(args, name) is None:
            setattr(args, name, default)
    for name in ("batch_size", "steps", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must not be negative")
    if args.image_size < 63:
        p.error("--image-size must be at least 63 (AlexNet's layers)")
    return args


def entries(args: argparse.Namespace, num_classes: int = NUM_CLASSES) -> list[tuple[str, Callable[[], nn.Module], bool]]:
    """(name, model builder, compiled) in the order they are timed, each network for ``num_classes`` classes."""
    size, k = args.image_size, num_classes
    nets = [("ilsvrc", lambda: ilsvrc_alexnet(size, num_classes=k)), ("stock", lambda: stock_alexnet(k, size)),
            ("torchvision", lambda: torchvision_alexnet(size, k))]
    if args.reference_lrn:
        nets.insert(1, ("ilsvrc, reference LRN", lambda: ilsvrc_alexnet(size, reference_lrn=True, num_classes=k)))
    modes = (False,) if args.no_compile else (False, True)
    listed = [(f"{name} {'compiled' if compiled else 'eager'}", make, compiled) for name, make in nets for compiled in modes]
    if args.variants and not args.no_compile:
        at = [n for n, _, _ in listed].index("ilsvrc compiled") + 1
        listed[at:at] = [("ilsvrc compiled, towers as groups",
                          lambda: ilsvrc_alexnet(size, tower_layout="groups", num_classes=k), True),
                         ("ilsvrc compiled, LRN kernel", lambda: ilsvrc_alexnet(size, num_classes=k), True)]
    if args.whole_step:
        listed.insert(2 if not args.no_compile else 1, ("ilsvrc whole step", lambda: ilsvrc_alexnet(size, num_classes=k), "whole"))
    return listed


def ratios(results: dict) -> dict:
    """The issue's ratios (images/s over images/s), wherever both entries ran."""
    pairs = [("ilsvrc compiled / stock compiled", "ilsvrc compiled", "stock compiled"),
             ("ilsvrc compiled / torchvision compiled", "ilsvrc compiled", "torchvision compiled"),
             ("ilsvrc eager / stock eager", "ilsvrc eager", "stock eager"),
             ("ilsvrc eager / torchvision eager", "ilsvrc eager", "torchvision eager"),
             ("ilsvrc compiled / ilsvrc compiled, reference LRN", "ilsvrc compiled", "ilsvrc, reference LRN compiled"),
             ("ilsvrc whole step / stock compiled", "ilsvrc whole step", "stock compiled"),
             ("ilsvrc compiled / ilsvrc compiled, towers as groups", "ilsvrc compiled", "ilsvrc compiled, towers as groups"),
             ("ilsvrc compiled, LRN kernel / ilsvrc compiled", "ilsvrc compiled, LRN kernel", "ilsvrc compiled"),
             ("ilsvrc whole step / torchvision compiled", "ilsvrc whole step", "torchvision compiled")]
    return {label: results[a]["images_per_s"] / results[b]["images_per_s"]
            for label, a, b in pairs if a in results and b in results}


def synthetic_batch(args: argparse.Namespace, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The one batch of random images and labels every entry trains on (seed 0);
    on CUDA cuDNN's search is turned on, as ``ilsvrc train`` does."""
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, num_classes, (args.batch_size,), device=device)


def time_entry(name: str, make: Callable[[], nn.Module], compiled: bool | str, x: torch.Tensor, y: torch.Tensor,
               args: argparse.Namespace) -> dict:
    """``time_training_step`` of one entry of ``entries``, from a fresh compile cache and seed 0."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    kernel = lrn_triton.ENABLED
    lrn_triton.use(kernel or name.endswith("LRN kernel"))
    try:
        return time_training_step(make(), x, y, compiled=compiled, compile_mode=args.compile_mode,
                                  steps=args.steps, warmup=args.warmup, repeats=args.repeats, profile=args.profile)
    finally:
        lrn_triton.use(kernel)


def time_one(entry: str, *, device: str, batch_size: int, image_size: int, num_classes: int,
             steps: int | None = None, warmup: int | None = None, repeats: int | None = None) -> dict:
    """Entry ``entry`` of ``entries`` (e.g. "ilsvrc eager") alone, its network
    for ``num_classes`` classes, timed as ``main`` times it (``None``: the
    device's default): its figures, and the settings it ran with."""
    argv = ["--device", device, "--batch-size", str(batch_size), "--image-size", str(image_size),
            "--reference-lrn", "--variants", "--whole-step"]  # every entry listed, to find the one asked for
    for flag, value in (("--steps", steps), ("--warmup", warmup), ("--repeats", repeats)):
        argv += [] if value is None else [flag, str(value)]
    args = parse_args(argv)
    found = {name: (make, compiled) for name, make, compiled in entries(args, num_classes)}
    if entry not in found:
        raise ValueError(f"no entry {entry!r}; the entries: {', '.join(found)}")
    x, y = synthetic_batch(args, num_classes)
    r = time_entry(entry, *found[entry], x, y, args)
    return {"entry": entry, **r, "num_classes": num_classes, "batch_size": args.batch_size,
            "image_size": args.image_size, "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table, and return every figure."""
    args = parse_args(argv)
    device = torch.device(args.device)
    x, y = synthetic_batch(args, NUM_CLASSES)

    meta = {
        "date": datetime.date.today().isoformat(),
        "device": device_name(device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "precision": "bf16 autocast, channels_last" if device.type == "cuda" else "float32",
        "batch_size": args.batch_size, "image_size": args.image_size, "steps": args.steps,
        "warmup": args.warmup, "repeats": args.repeats, "compile_mode": None if args.no_compile else args.compile_mode,
        "command": " ".join(["python", "benchmarks/step.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    print(f"date         {meta['date']}")
    print(f"device       {meta['device']}")
    print(f"torch        {meta['torch']}   torchvision {meta['torchvision']}   python {meta['python']}")
    print(f"setting      batch {args.batch_size}, {args.image_size}x{args.image_size}, {meta['precision']}; "
          f"median of {args.repeats} runs of {args.steps} steps after {args.warmup} warm-up steps")
    print(flush=True)

    results: dict[str, dict] = {}
    print(f"{'network':<34} {'images/s':>10} {'ms/step':>10} {'warm-up s':>10}")
    for name, make, compiled in entries(args):
        r = time_entry(name, make, compiled, x, y, args)
        results[name] = r
        print(f"{name:<34} {r['images_per_s']:>10.1f} {r['ms_per_step']:>10.2f} {r['warmup_s']:>10.1f}", flush=True)
        for kernel, share, ms in r.get("top_kernels", []):
            print(f"    {100 * share:5.1f}%  {ms:7.3f} ms/step  {kernel[:100]}")
        if device.type == "cuda":
            torch.cuda.empty_cache()

    rat = ratios(results)
    if rat:
        print()
        for label, value in rat.items():
            print(f"{label:<50} {value:.2f}x")
    out = {**meta, "results": results, "ratios": rat}
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
