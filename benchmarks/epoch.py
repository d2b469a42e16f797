"""End-to-end training throughput: images/s over one epoch of ``ilsvrc.train``,
for each source of batches, beside the model-only figure of the same network.

For each source asked for (``--loaders``, default ``resident,stream,workers``)
the paper's AlexNet recipe is trained through ``ilsvrc.train`` into a fresh
temporary run directory, for one epoch (``--max-steps`` stops it early, for a
CPU). The sources (``ilsvrc.data.sources``):

  resident   each split decoded once onto the device as uint8; crops, flips and
             lighting on whole batches there (reads the image folder, or the
             packed store with --resident-from store)
  stream     the packed JPEG store's bytes decoded batch by batch on the device
             (nvJPEG on a GPU, libjpeg-turbo on the CPU)
  workers    every image decoded and transformed in loader worker processes,
             every epoch (reads the image folder, or the store with
             --workers-from store)

The stream source needs a packed store: one is packed with
``ilsvrc.data.store.pack`` (JPEG, at the recipe's rescaled size: 256 for
224 px inputs) into ``--store-dir`` the first time and reused after (the same
store ``benchmarks/loader.py`` makes and reuses).

Per source it reports

  train images/s   the ``images_per_s`` of the run's last metrics row: images
                   trained over the seconds spent in the training loop of that
                   epoch; it excludes the statistics, the one-time resident
                   load, validation and checkpoint writing
  wall s           the whole ``train()`` call (model, one-time load, training,
                   validation, checkpoints); the training set's statistics are
                   computed (or read from the cache) once before all sources
                   and reported apart
  load s           the one-time making of the batch source inside ``train()``
                   (the resident decode; near zero for stream and workers)
  / model-only     train images/s over the model-only images/s

The model-only figure is measured in the same process by
``benchmarks/step.py``'s ``time_one`` (its ``ilsvrc`` entry alone, eager or
compiled as the runs are) with the same device, batch size, image size and
compile setting, and the dataset's number of classes (step.py's own default is
1000). The speed issue's targets, on a GPU: >= 0.9 for resident, >= 0.7 from
the packed JPEG store with GPU decoding.

torch.compile compiles in the first training steps, and that time falls inside
the first epoch's images/s. When compiling, the default is therefore two
epochs (``--epochs``); the figure is the last epoch's, the first epoch's is
shown beside it.

    python benchmarks/epoch.py                                     # GPU: Imagenette, batch 128, one epoch per source
    python benchmarks/epoch.py --device cuda --loaders resident --json epoch.json
    python benchmarks/epoch.py --device cpu --batch-size 16 --max-steps 20 --no-compile   # a CPU: a partial epoch

Without ``--data`` the data is ``$ILSVRC_DATA/imagenette``, else
``../shared/datasets/imagenette`` beside the checkout.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

import ilsvrc
from ilsvrc import recipes
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.stats import cache_path, load_or_compute
from ilsvrc.data.store import is_store
from ilsvrc.device import default_workers

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py, also when loaded by path
from common import default_data, default_store_dir, machine, resolve_device, store_for, sync, timed_source, write_json  # noqa: E402
import step as step_bench  # noqa: E402  (benchmarks/step.py)


RECIPE = "alexnet"
SOURCES = ("resident", "stream", "workers")
# Defaults per device: (batch size, max steps). On a GPU the paper's batch of
# 128 (Sec. 5) over a whole epoch; on a CPU a small batch and a partial epoch.
DEFAULTS = {"cuda": (128, None), "cpu": (16, 20)}


# --- Data, store, device ----------------------------------------------------------------------


# --- Model-only: benchmarks/step.py -----------------------------------------------------------


def model_only(device: torch.device, batch_size: int, image_size: int, compiled: bool, num_classes: int,
               timing: tuple[int | None, int | None, int | None] = (None, None, None)) -> dict:
    """images/s of the ``ilsvrc`` entry of benchmarks/step.py alone (eager or
    compiled as asked, nothing else timed), for ``num_classes`` classes."""
    want = f"ilsvrc {'compiled' if compiled else 'eager'}"
    steps, warmup, repeats = timing  # None: step.py's default for the device
    cudnn_benchmark = torch.backends.cudnn.benchmark  # step.py turns it on; the training runs get the user's setting
    try:
        r = step_bench.time_one(want, device=device.type, batch_size=batch_size, image_size=image_size,
                                num_classes=num_classes, steps=steps, warmup=warmup, repeats=repeats)
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch._dynamo.reset()
    return {"entry": want, "images_per_s": r["images_per_s"], "ms_per_step": r["ms_per_step"],
            "ms_per_step_runs": r["ms_per_step_runs"], "warmup_s": r["warmup_s"], "num_classes": num_classes,
            "steps": r["steps"], "warmup": r["warmup"], "repeats": r["repeats"],
            "command": f"benchmarks/step.py time_one({want!r}, device={device.type!r}, batch_size={batch_size}, "
                       f"image_size={image_size}, num_classes={num_classes}, steps={r['steps']}, "
                       f"warmup={r['warmup']}, repeats={r['repeats']})"}


# --- The run --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="ImageFolder root with train/ and val/ (default: $ILSVRC_DATA/imagenette, "
                   "else ../shared/datasets/imagenette)")
    p.add_argument("--loaders", default=",".join(SOURCES),
                   help=f"comma-separated sources of batches to run, of {', '.join(SOURCES)} (default: all three)")
    p.add_argument("--resident-from", choices=("auto", "folder", "store"), default="auto",
                   help="what the resident source decodes once: the image folder or the packed store "
                        "(default auto: the store when stream is run too, else the folder)")
    p.add_argument("--workers-from", choices=("folder", "store"), default="folder",
                   help="what the loader workers read (default: the image folder)")
    p.add_argument("--store-dir", type=Path, help="folder for the packed stores, made once and reused "
                   "(default: $ILSVRC_CACHE/bench-stores, else ~/.cache/ilsvrc/bench-stores)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, help="images per step (default: 128 on CUDA, the paper's; 16 on the CPU)")
    p.add_argument("--image-size", type=int, default=224, help="network input in pixels (default 224; the rescale follows)")
    p.add_argument("--max-steps", type=int, help="stop each run after this many steps (default: the whole epoch on "
                   "CUDA, 20 on the CPU)")
    p.add_argument("--full-epoch", action="store_true", help="no --max-steps default on the CPU: the whole epoch")
    p.add_argument("--epochs", type=int, help="epochs per source; the last one is the figure (default: 2 when "
                   "compiling, the first absorbing compilation, else 1)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the training step (default: on CUDA yes, on the CPU no, as ilsvrc.train)")
    p.add_argument("--workers", type=int, help="loader worker processes (default: ilsvrc.train's, one per core up to 8)")
    p.add_argument("--model-classes", type=int, help="classes of the model-only network (default: the dataset's)")
    p.add_argument("--model-steps", type=int,
                   help="model-only: timed steps per repeat (default: step.py's, 20 on CUDA, 1 on the CPU)")
    p.add_argument("--model-warmup", type=int,
                   help="model-only: untimed steps first (default: step.py's, 5 on CUDA, 2 on the CPU)")
    p.add_argument("--model-repeats", type=int,
                   help="model-only: timed runs, the median reported (default: step.py's, 5 on CUDA, 3 on the CPU)")
    p.add_argument("--runs-dir", type=Path, help="where the temporary run directories go (default: the system's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = p.parse_args(argv)
    resolve_device(p, args)
    args.loaders = [s.strip() for s in args.loaders.split(",") if s.strip()]
    unknown = [s for s in args.loaders if s not in SOURCES]
    if unknown or not args.loaders or len(set(args.loaders)) != len(args.loaders):
        p.error(f"--loaders takes distinct names of {', '.join(SOURCES)}, not {','.join(args.loaders) or 'nothing'}")
    batch, steps = DEFAULTS[args.device]
    if args.batch_size is None:
        args.batch_size = batch
    if args.max_steps is None and not args.full_epoch:
        args.max_steps = steps
    if args.compile is None:
        args.compile = args.device == "cuda"
    if args.epochs is None:
        args.epochs = 2 if args.compile else 1
    for name in ("batch_size", "epochs", "max_steps", "model_classes", "model_steps", "model_repeats"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("workers", "model_warmup"):
        value = getattr(args, name)
        if value is not None and value < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    if args.image_size < 63:
        p.error("--image-size must be at least 63 (AlexNet's layers)")
    if args.data is None:
        args.data = default_data()
        if args.data is None:
            p.error("no --data given and neither $ILSVRC_DATA/imagenette nor ../shared/datasets/imagenette exists")
    if not (args.data / "train").is_dir() and not is_store(args.data):
        p.error(f"--data {args.data} has no train/ folder")
    if is_store(args.data):
        p.error("--data takes an image folder; the packed store is made from it in --store-dir")
    if args.resident_from == "auto":
        args.resident_from = "store" if "stream" in args.loaders else "folder"
    return args


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _time_source(args, device: torch.device, name: str, root: Path, reads: str, model: dict, progress: bool) -> dict:
    """One training run of the recipe from ``root`` with loader ``name``: its figures."""
    with tempfile.TemporaryDirectory(prefix=f"ilsvrc-bench-epoch-{name}-", dir=args.runs_dir) as tmp:
        torch._dynamo.reset()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        loads: list[float] = []
        sync(device)
        start = time.perf_counter()
        with timed_source(device, loads):
            last = ilsvrc.train(RECIPE, data=root, out=Path(tmp) / "run", max_steps=args.max_steps,
                                device=args.device, workers=args.workers, seed=args.seed, progress=progress,
                                data_loader=name, compile=args.compile, batch_size=args.batch_size,
                                image_size=args.image_size, epochs=args.epochs)
        sync(device)
        wall = time.perf_counter() - start
        rows = _rows(Path(tmp) / "run" / "metrics.jsonl")
        kind = json.loads((Path(tmp) / "run" / "config.json").read_text())["loader"]
    gc.collect()
    return {
        "source": kind, "reads": reads,
        "images_per_s": last["images_per_s"],
        "ratio_to_model_only": last["images_per_s"] / model["images_per_s"],
        "first_epoch_images_per_s": rows[0]["images_per_s"],
        "epoch_time_s": last["epoch_time_s"],
        "images": round(last["images_per_s"] * last["epoch_time_s"]),
        "steps": last["step"], "complete": last["complete"],
        "wall_s": wall, "load_s": sum(loads),
        "val_top1_error": last["val_top1_error"],
        "rows": rows,
    }


def _one_time(args, dataset, size: int, needed: set, progress: bool, meta: dict) -> tuple[dict, Path | None]:
    """The one-time costs, outside the per-source figures: the statistics and the packed store."""
    once: dict = {}
    store = None
    if "folder" in needed:
        cached = cache_path(dataset.train, size).exists()
        start = time.perf_counter()
        load_or_compute(dataset.train, size, default_workers(args.workers), progress)
        once["stats_s"], once["stats_cached"] = time.perf_counter() - start, cached
    if "store" in needed:
        store_path, pack_s = store_for(dataset, args.store_dir or default_store_dir(), size, args.workers, progress, "epoch.py")
        once["pack_s"] = pack_s
        meta["store"], meta["store_reused"] = str(store_path), pack_s is None
        store = store_path
    return once, store


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table, and return every figure."""
    args = parse_args(argv)
    device = torch.device(args.device)
    progress = sys.stderr.isatty()
    plan = recipes.resolve(RECIPE, image_size=args.image_size, batch_size=args.batch_size, epochs=args.epochs)
    size = plan.data.resize
    dataset = open_dataset(args.data)
    origins = {"resident": args.resident_from, "stream": "store", "workers": args.workers_from}
    meta = {
        **machine(device),
        "data": str(Path(args.data).resolve()),
        "train_images": len(dataset.train),
        "val_images": len(dataset.heldout),
        "classes": len(dataset.classes),
        "recipe": RECIPE,
        "batch_size": args.batch_size, "image_size": args.image_size, "resize": size,
        "max_steps": args.max_steps, "epochs": args.epochs, "compile": args.compile,
        "precision": "bf16 autocast, channels_last" if device.type == "cuda" else "float32",
        "workers": args.workers,
        "command": " ".join(["python", "benchmarks/epoch.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    steps_per_epoch = -(-len(dataset.train) // args.batch_size)
    span = (f"{args.max_steps} steps of {steps_per_epoch} in an epoch" if args.max_steps and args.max_steps < steps_per_epoch * args.epochs
            else f"{args.epochs} epoch{'s' if args.epochs > 1 else ''} of {steps_per_epoch} steps")
    print(f"date         {meta['date']}")
    print(f"device       {meta['device']}; {meta['cores']} CPU cores")
    print(f"versions     ilsvrc {meta['ilsvrc']}   torch {meta['torch']}   torchvision {meta['torchvision']}   python {meta['python']}")
    print(f"data         {meta['data']}: {meta['train_images']} train, {meta['val_images']} val images, {meta['classes']} classes")
    print(f"recipe       {RECIPE} (paper, Sec. 5), batch {args.batch_size}, {args.image_size}x{args.image_size} "
          f"from {size}x{size}, {meta['precision']}, {'compiled' if args.compile else 'eager'}; {span} per source")
    print(flush=True)

    once, store = _one_time(args, dataset, size, {origins[s] for s in args.loaders}, progress, meta)
    roots = {"folder": Path(args.data), "store": store}

    model = model_only(device, args.batch_size, args.image_size, args.compile, args.model_classes or len(dataset.classes),
                       (args.model_steps, args.model_warmup, args.model_repeats))
    print(f"model-only   {model['images_per_s']:.1f} images/s ({model['entry']}, {model['num_classes']} classes; "
          f"median of {model['repeats']} runs of {model['steps']} steps after {model['warmup']} warm-up steps)")
    print(flush=True)

    results: dict[str, dict] = {}
    header = f"{'source':<18} {'train img/s':>11} {'/ model-only':>12} {'first epoch':>11} {'wall s':>8} {'load s':>7} {'steps':>6}"
    lines = []
    for name in args.loaders:
        r = _time_source(args, device, name, roots[origins[name]], origins[name], model, progress)
        results[name] = r
        first = f"{r['first_epoch_images_per_s']:>11.1f}" if len(r["rows"]) > 1 else f"{'-':>11}"
        lines.append(f"{name + ' (' + r['reads'] + ')':<18} {r['images_per_s']:>11.1f} {r['ratio_to_model_only']:>11.2f}x "
                     f"{first} {r['wall_s']:>8.1f} {r['load_s']:>7.1f} {r['steps']:>6}")
        print(f"{name}: {r['images_per_s']:.1f} train images/s, {r['ratio_to_model_only']:.2f}x model-only, "
              f"wall {r['wall_s']:.1f} s", flush=True)

    print()
    print(header)
    for line in lines:
        print(line)
    print()
    print(f"model-only ({model['entry']}): {model['images_per_s']:.1f} images/s; targets on a GPU: "
          f"resident >= 0.9x, stream (packed JPEG store, GPU decoding) >= 0.7x")
    notes = []
    if "stats_s" in once:
        notes.append(f"statistics {once['stats_s']:.1f} s ({'cached' if once['stats_cached'] else 'computed once and cached'})")
    if "pack_s" in once:
        packing = "reused" if once["pack_s"] is None else f"packed in {once['pack_s']:.1f} s, once"
        notes.append(f"JPEG store {packing} ({store})")
    if notes:
        print(f"one-time     {'; '.join(notes)}")

    ratios = {name: r["ratio_to_model_only"] for name, r in results.items()}
    out = {**meta, "model_only": model, "results": results, "ratios": ratios, "one_time": once}
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
