"""Time to accuracy: the wall time the paper's AlexNet takes to reach a stated
validation top-1 error on Imagenette.

The run is ``ilsvrc.train("alexnet", ..., until_top1_error=TARGET)``: the
paper's recipe (Sec. 5: SGD, batch 128, momentum 0.9, weight decay 5e-4,
learning rate 0.01 divided by 10 when the validation error stops improving;
the paper's data pipeline and network), with any overrides given on the
command line printed beside it. Training stops after the first validation
(one per epoch, on the centre crop) whose top-1 error is at most the target,
or after ``--epochs`` epochs (default: the recipe's 90) if none is.

Reported:

  wall s             from the start to the end of the epoch that reached the
                     target (its validation and checkpoints included): the
                     training set's statistics (computed, or read from the
                     cache: said which) plus the whole ``train()`` call
  excl. stats, load  the same without the statistics and without the one-time
                     making of the batch source (the resident decode)
  training steps s   the training loops alone, summed over the epochs run
                     (the metrics rows' ``epoch_time_s``; no validation,
                     checkpoints, statistics or loading; compilation included)
  from rows s        start to the reaching epoch's metrics row, from the row's
                     timestamp (whole seconds; a check on the timer)
  epochs             the epoch at which the target was reached (or the last)

Defaults are meant for a GPU: target 40.0% top-1 error on Imagenette's
3,925 val images (ten classes, chance 90%), the paper's recipe unchanged,
resident data, torch.compile. On a CPU pass small settings, e.g.
``--image-size 64 --batch-size 16 --epochs 2 --target 80``.

    python benchmarks/time_to_accuracy.py                       # GPU, target 40%
    python benchmarks/time_to_accuracy.py --target 30 --json tta.json
    python benchmarks/time_to_accuracy.py --lr 0.02 --batch-size 256 --epochs 40

Without ``--data`` the data is ``$ILSVRC_DATA/imagenette``, else
``../shared/datasets/imagenette`` beside the checkout (a packed store is
accepted too).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path


import ilsvrc
from ilsvrc import recipes
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.stats import cache_path, load_or_compute
from ilsvrc.data.store import is_store
from ilsvrc.device import default_workers, pick_device

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py, also when loaded by path
from common import default_data, machine, sync, timed_source, write_json  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
RECIPE = "alexnet"
TARGET = 40.0  # percent val top-1 error on Imagenette; a GPU run's target (chance is 90%)
# Recipe values the command line may override: (flag, recipe key, type).
OVERRIDES = (("--epochs", "epochs", int), ("--batch-size", "batch_size", int), ("--lr", "lr", float),
             ("--image-size", "image_size", int), ("--momentum", "momentum", float),
             ("--weight-decay", "weight_decay", float), ("--patience", "patience", int))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="ImageFolder root or packed store (default: $ILSVRC_DATA/imagenette, "
                   "else ../shared/datasets/imagenette)")
    p.add_argument("--target", type=float, default=TARGET,
                   help=f"val top-1 error to reach, in percent (default {TARGET}, meant for a GPU run)")
    for flag, key, kind in OVERRIDES:
        p.add_argument(flag, type=kind, dest=key, help=f"override the recipe's {key}")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in all, target reached or not")
    p.add_argument("--loader", choices=("auto", "resident", "stream", "workers"), default="auto",
                   help="where batches come from (default auto: resident when the data fits)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the training step (default: on CUDA yes, on the CPU no, as ilsvrc.train)")
    p.add_argument("--workers", type=int, help="loader worker processes (default: ilsvrc.train's, one per core up to 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="keep the run in this new run directory (default: a temporary one, removed)")
    p.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = p.parse_args(argv)
    if not 0 <= args.target <= 100:
        p.error("--target is a top-1 error in percent, between 0 and 100")
    if args.data is None:
        args.data = default_data()
        if args.data is None:
            p.error("no --data given and neither $ILSVRC_DATA/imagenette nor ../shared/datasets/imagenette exists")
    return args


def _meta(args, argv, plan: dict, device, dataset, overrides: dict, compiled: bool) -> dict:
    """What every recorded figure states: machine, data, recipe, settings, command."""
    d, o, s = plan["data"], plan["optim"], plan["schedule"]
    return {
        **machine(device),
        "data": str(Path(args.data).resolve()),
        "train_images": len(dataset.train), "val_images": len(dataset.heldout), "classes": len(dataset.classes),
        "target_top1_error": args.target,
        "recipe": RECIPE, "overrides": overrides,
        "settings": {"batch_size": o["batch_size"], "lr": o["lr"], "momentum": o["momentum"],
                     "weight_decay": o["weight_decay"], "epochs": s["epochs"], "patience": s["patience"],
                     "image_size": d["image_size"], "resize": d["resize"], "test_crops": d["test_crops"]},
        "max_steps": args.max_steps, "loader": args.loader, "compile": compiled, "seed": args.seed,
        "precision": "bf16 autocast, channels_last" if device.type == "cuda" else "float32",
        "command": " ".join(["python", "benchmarks/time_to_accuracy.py", *(sys.argv[1:] if argv is None else argv)]),
    }


def _print_plan(args, meta: dict, overrides: dict, compiled: bool) -> None:
    """What is measured, on what, before the run."""
    changed = ", ".join(f"{k} {v}" for k, v in overrides.items()) or "none"
    st = meta["settings"]
    print(f"date         {meta['date']}")
    print(f"device       {meta['device']}; {meta['cores']} CPU cores")
    print(f"versions     ilsvrc {meta['ilsvrc']}   torch {meta['torch']}   torchvision {meta['torchvision']}   python {meta['python']}")
    print(f"data         {meta['data']}: {meta['train_images']} train, {meta['val_images']} val images, {meta['classes']} classes")
    print(f"recipe       {RECIPE} (paper, Sec. 5): batch {st['batch_size']}, lr {st['lr']:g}, momentum {st['momentum']:g}, "
          f"weight decay {st['weight_decay']:g}, lr / 10 after {st['patience']} epochs without a better val top-1, "
          f"at most {st['epochs']} epochs, {st['image_size']}x{st['image_size']} from {st['resize']}x{st['resize']}")
    print(f"overrides    {changed}{'' if args.max_steps is None else f'; at most {args.max_steps} steps'}")
    print(f"run          loader {args.loader}, {meta['precision']}, {'compiled' if compiled else 'eager'}, seed {args.seed}")
    print(f"target       val top-1 error <= {args.target:g}% (centre crop)")
    print(flush=True)


def _print_result(args, result: dict, rows: list[dict]) -> None:
    """The epochs' rows and the verdict."""
    print()
    print(f"{'epoch':>5} {'step':>7} {'val top-1 %':>11} {'val top-5 %':>11} {'lr':>8} {'train img/s':>11} {'epoch s':>8}")
    for r in rows:
        print(f"{r['epoch']:>5} {r['step']:>7} {r['val_top1_error']:>11.2f} {r['val_top5_error']:>11.2f} {r['lr']:>8.2g} "
              f"{r['images_per_s']:>11.1f} {r['epoch_time_s']:>8.1f}{'' if r['complete'] else '  (partial)'}")
    print()
    verdict = (f"reached {result['val_top1_error']:.2f}% <= {args.target:g}% at epoch {result['epochs']}" if result['reached']
               else f"NOT reached: best {result['best_val_top1_error']:.2f}% > {args.target:g}% after {result['epochs']} epoch(s)")
    print(f"result       {verdict} (loader {result['loader']})")
    print(f"wall         {result['wall_s']:.1f} s from the start{' to that epoch' if result['reached'] else ''} "
          f"(statistics {result['stats_s']:.1f} s, {'cached' if result['stats_cached'] else 'computed'}; one-time load {result['load_s']:.1f} s)")
    print(f"             {result['wall_excluding_stats_and_load_s']:.1f} s without statistics and loading; "
          f"{result['training_steps_s']:.1f} s in the training steps alone; {result['from_rows_s']:.0f} s by the metrics rows")


def main(argv: list[str] | None = None) -> dict:
    """Train until the target, print the figures, and return them."""
    args = parse_args(argv)
    progress = sys.stderr.isatty()
    overrides = {key: getattr(args, key) for _, key, _ in OVERRIDES if getattr(args, key) is not None}
    try:
        plan = recipes.resolve(RECIPE, **overrides).to_dict()
        device = pick_device(args.device)
        dataset = open_dataset(args.data)
    except ilsvrc.UserError as e:
        raise SystemExit(f"benchmarks/time_to_accuracy.py: error: {e}") from None
    compiled = args.compile if args.compile is not None else device.type == "cuda"
    d = plan["data"]
    meta = _meta(args, argv, plan, device, dataset, overrides, compiled)
    _print_plan(args, meta, overrides, compiled)

    tmp = None
    out = args.out
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="ilsvrc-bench-tta-")
        out = Path(tmp.name) / "run"
    try:
        started = datetime.datetime.now(datetime.timezone.utc)
        sync(device)
        t0 = time.perf_counter()
        stats_cached = is_store(dataset.root) or cache_path(dataset.train, d["resize"]).exists()
        load_or_compute(dataset.train, d["resize"], default_workers(args.workers), progress)
        t1 = time.perf_counter()
        loads: list[float] = []
        try:
            with timed_source(device, loads):
                ilsvrc.train(RECIPE, data=args.data, out=out, max_steps=args.max_steps, device=args.device,
                             workers=args.workers, seed=args.seed, progress=progress, data_loader=args.loader,
                             compile=compiled, until_top1_error=args.target, **overrides)
        except ilsvrc.UserError as e:
            raise SystemExit(f"benchmarks/time_to_accuracy.py: error: {e}") from None
        sync(device)
        t2 = time.perf_counter()
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
        loader = json.loads((out / "config.json").read_text())["loader"]
    finally:
        if tmp is not None:
            tmp.cleanup()

    hit = next((r for r in rows if r["val_top1_error"] <= args.target), None)
    reached = hit is not None
    end = hit if reached else rows[-1]
    upto = rows[: rows.index(end) + 1]
    load_s = sum(loads)
    result = {
        "reached": reached,
        "epochs": end["epoch"],
        "steps": end["step"],
        "val_top1_error": end["val_top1_error"],
        "val_top5_error": end["val_top5_error"],
        "best_val_top1_error": min(r["val_top1_error"] for r in rows),
        "wall_s": t2 - t0,
        "wall_excluding_stats_and_load_s": (t2 - t1) - load_s,
        "train_call_s": t2 - t1,
        "stats_s": t1 - t0, "stats_cached": stats_cached,
        "load_s": load_s,
        "training_steps_s": sum(r["epoch_time_s"] for r in upto),
        # the rows' times are whole seconds: the start is cut to its second too, so that the difference
        # is never negative (a run shorter than a second could end "before" it started)
        "from_rows_s": (datetime.datetime.fromisoformat(end["time"]) - started.replace(microsecond=0)).total_seconds(),
        "loader": loader,
    }
    _print_result(args, result, rows)

    output = {**meta, "result": result, "rows": rows}
    write_json(args.json, output)
    return output


if __name__ == "__main__":
    main()
