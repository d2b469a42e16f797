"""Does ilsvrc train right? Its CIFAR-10 ResNet against an independent
implementation (``benchmarks/reference/resnet_cifar.py``, which shares no
code with ilsvrc), on the same images, at the same budget, over seeds.

On a lossy copy of CIFAR-10 (the shared one is a q75 JPEG re-encode) the
paper's Table 6 is no yardstick; a second, independent trainer of the same
recipe on the same files is. Each *variant* trains ``--seeds`` runs:

    reference-float32, reference-bf16   the independent trainer (its own ResNet, augmentation, SGD + MultiStepLR)
    eager-float32, eager-bf16           ilsvrc's eager step (``--compile eager``)
    graph-float32, graph-bf16           ilsvrc's whole step compiled as one graph (``--compile graph``, the GPU's
                                        step: on a GPU also replayed as one CUDA graph)

``bf16`` is bf16 autocast, the GPU's arithmetic, which ``torch.autocast``
runs on a CPU too (``ilsvrc train --precision bf16``). Every variant runs
the recipe of Sec. 4.2 (batch 128, lr 0.1, momentum 0.9, weight decay 1e-4,
padded crops and flips, per-pixel mean) for ``--iterations`` steps with the
learning rate divided by 10 at 1/2 and 3/4 of them (the paper's 32k and 48k
of 64k). Printed: each variant's final test error, mean ± std over its
seeds, then each ilsvrc variant minus the reference of the same arithmetic
(the float32 reference where that one is not run), with the standard error
of the difference and a one-line verdict: within 2 standard errors or not.

Beside it, the batch-norm check: for the first ``--bn-check`` seeds of each
ilsvrc variant, the test error with the trained network's running
statistics and with statistics recomputed over the training set
(``torch.optim.swa_utils.update_bn`` on its centre views); a large
difference points at the statistics, not at the weights.

    python benchmarks/fidelity.py --iterations 800 --seeds 3                      # a CPU: the laptop budget (docs/results.md)
    python benchmarks/fidelity.py --seeds 5 --variants reference-bf16,graph-bf16  # a GPU: the paper's 64k steps

Runs are kept in ``--out`` (default ``runs/fidelity``); run the same command
again and finished runs are read back, unfinished ones resume. The
reference's runs are subprocesses (``--parallel`` of them at once: on a GPU
all of its seeds, beside ilsvrc's runs, which train together in this
process, seeds stacked into one step; on a CPU one at a time, before
ilsvrc's). ``--data``: CIFAR-10 as an ImageFolder root (train/, test/) or
a packed JPEG store of it (``ilsvrc pack DIR STORE --size 32``, what
travels to a GPU machine), whose files, kept byte for byte, are written
out once into ``OUT/data`` for the reference, which reads image files as a
user's script would; default ``$ILSVRC_DATA/cifar10``, else
``../shared/datasets/cifar10`` beside the checkout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from ilsvrc.checkpoint import load
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.store import is_store
from ilsvrc.data.sources import test_source
from ilsvrc.evaluate import evaluate_model, model_from_checkpoint, transforms_from_checkpoint
from ilsvrc.spread import Spread, difference, plain, verdict
from ilsvrc.together import train_together

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py, also when loaded by path
from common import REPO, default_data, machine, resolve_device, write_json  # noqa: E402

REFERENCE = REPO / "benchmarks" / "reference" / "resnet_cifar.py"
VARIANTS = ("reference-float32", "reference-bf16", "eager-float32", "eager-bf16", "graph-float32", "graph-bf16")
# bf16 on a CPU without bf16 arithmetic of its own (AVX2: the project's 2-core machine) is about 10x slower than
# float32 (a ResNet-20 step of 128: 15 s against 1.2 s, 2026-12-06): named, not a default there
DEFAULTS = {"cpu": "reference-float32,eager-float32,graph-float32", "cuda": "reference-bf16,graph-bf16"}


def image_folder(data: Path, work: Path) -> Path:
    """``data`` as an ImageFolder root: itself, or a packed JPEG store's files
    written out (once) into ``work/data``, class folders named as the store's."""
    if not is_store(data):
        return data
    folder = work / "data"
    if (folder / "complete").is_file():
        return folder
    dataset = open_dataset(data)
    for split in (dataset.train, dataset.heldout):
        if split.encoding != "jpeg":
            raise SystemExit(f"fidelity: error: {data} stores raw pixels; pack it with --format jpeg, or give the folder")
        for cls in dataset.classes:
            (folder / split.name / cls).mkdir(parents=True, exist_ok=True)
        for i, label in enumerate(split.labels):
            (folder / split.name / dataset.classes[label] / f"{i:05d}.jpg").write_bytes(split.encoded(i).tobytes())
    (folder / "complete").touch()
    return folder


def milestones(iterations: int) -> list[int]:
    """The learning-rate drops at 1/2 and 3/4 of the run (Sec. 4.2: 32k and 48k of 64k)."""
    return [round(iterations / 2), round(3 * iterations / 4)]


def reference_runs(a, variant: str, work: Path) -> list[dict]:
    """The reference's runs of ``variant``, ``a.parallel`` subprocesses at a
    time; a seed whose JSON is there already is read back."""
    precision = variant.split("-")[1]
    folder = work / variant
    folder.mkdir(parents=True, exist_ok=True)
    todo, running = list(range(a.seeds)), []
    while todo or running:
        while todo and len(running) < a.parallel:
            seed = todo.pop(0)
            js = folder / f"seed{seed}.json"
            if js.is_file():
                continue
            argv = [sys.executable, str(REFERENCE), "--data", str(a.folder), "--depth", str(a.depth),
                    "--iterations", str(a.iterations), "--milestones", ",".join(map(str, milestones(a.iterations))),
                    "--seeds", str(seed), "--device", a.device, "--precision", precision, "--cache",
                    str(work / "reference-data.pt"), "--json", str(js), "--no-progress"] + (["--compile"] if a.device == "cuda" else [])
            log = open(folder / f"seed{seed}.log", "w")
            running.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), log, seed))
        if running:
            proc, log, seed = running.pop(0)
            if proc.wait() != 0:
                print(f"{variant} seed {seed} failed: see {folder / f'seed{seed}.log'}", file=sys.stderr)
            log.close()
            last = (folder / f"seed{seed}.log").read_text().strip().splitlines()[-1:]
            print(f"{variant}: {last[0] if last else f'seed {seed}: no output'}", flush=True)  # as each run ends
    runs = [json.loads((folder / f"seed{s}.json").read_text())[0] for s in range(a.seeds) if (folder / f"seed{s}.json").is_file()]
    return [{"seed": r["seed"], "test_error": r["test_error"], "train_error": r["train_error"], "steps_s": r["seconds"],
             "validation_s": r["eval_seconds"]} for r in runs]


def start_references(a, variants: list[str], work: Path):
    """On a GPU the reference trains beside ilsvrc: a thread that runs its
    subprocesses while this process trains ilsvrc's runs."""
    import threading

    results: dict[str, list[dict]] = {}
    thread = threading.Thread(target=lambda: results.update({v: reference_runs(a, v, work) for v in variants}))
    thread.start()
    return thread, results


def ilsvrc_jobs(a, variants: list[str], work: Path) -> list[dict]:
    """``ilsvrc.train`` arguments for every seed of every ilsvrc variant."""
    jobs = []
    for variant in variants:
        mode, precision = variant.split("-")
        for seed in range(a.seeds):
            out = work / f"ilsvrc-{variant}" / f"seed{seed}"
            jobs.append(dict(recipe="resnet-cifar", model=f"resnet-{a.depth}", data=a.data, out=out, seed=seed,
                             compile=mode, precision=precision, iterations=a.iterations,
                             milestones=milestones(a.iterations), resume=(out / "last.pt").exists(),
                             workers=a.workers, variant=variant))
    return jobs


def last_row(run_dir: Path) -> dict | None:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()] \
        if (run_dir / "metrics.jsonl").is_file() else []
    return rows[-1] if rows else None


def ilsvrc_runs(a, jobs: list[dict]) -> dict[str, list[dict]]:
    """Train the unfinished jobs together (seeds stacked on a GPU); every job's final figures by variant."""
    todo = [j for j in jobs if (row := last_row(j["out"])) is None or row["step"] < a.iterations]
    start = time.perf_counter()
    if todo:
        train_together([{k: v for k, v in j.items() if k != "variant"} for j in todo], device=a.device,
                       progress=a.progress, stack=a.device == "cuda")
        print(f"ilsvrc: {len(todo)} run(s) trained together in {time.perf_counter() - start:.0f} s wall", flush=True)
    runs: dict[str, list[dict]] = {}
    for j in jobs:
        rows = [json.loads(line) for line in (j["out"] / "metrics.jsonl").read_text().splitlines() if line.strip()]
        runs.setdefault(j["variant"], []).append(
            {"seed": j["seed"], "test_error": rows[-1]["val_top1_error"], "train_error": rows[-1]["train_error"],
             "steps_s": round(sum(r["epoch_time_s"] for r in rows), 1),
             "validation_s": round(sum(r.get("val_time_s", 0.0) for r in rows), 1), "dir": str(j["out"])})
    return runs


def batchnorm_check(run_dir: Path, device: torch.device, workers: int) -> dict:
    """A trained run's test error with its running statistics and with
    statistics recomputed over the training set's centre views."""
    ckpt = load(run_dir / "last.pt")
    model = model_from_checkpoint(ckpt).to(device)
    transforms = transforms_from_checkpoint(ckpt)
    dataset = open_dataset(Path(ckpt["data_root"]))
    bs = ckpt["config"]["optim"]["batch_size"]

    def batches(split):
        return test_source("auto", split, transforms, device, bs, crops=1, workers=workers, progress=False)[1]()

    running = evaluate_model(model, batches(dataset.heldout), device, precision="float32")["top1_error"]
    # update_bn: running statistics reset, then the cumulative mean over every batch (momentum None), in train mode
    torch.optim.swa_utils.update_bn((b.images.to(device).flatten(0, 1) for b in batches(dataset.train) if len(b.labels)), model)
    recomputed = evaluate_model(model, batches(dataset.heldout), device, precision="float32")["top1_error"]
    return {"dir": str(run_dir), "running": running, "recomputed": recomputed, "difference": recomputed - running}


def summarise(results: dict[str, list[dict]]) -> tuple[dict, list[dict]]:
    """Each variant's spread, and each ilsvrc variant against its reference."""
    spreads = {v: {"test_error": Spread([r["test_error"] for r in runs]),
                   "train_error": Spread([r["train_error"] for r in runs])} for v, runs in results.items() if runs}
    comparisons = []
    for v in spreads:
        if v.startswith("reference"):
            continue
        ref = next((r for r in (f"reference-{v.split('-')[1]}", "reference-float32", "reference-bf16") if r in spreads), None)
        if ref is None:
            continue
        diff, se = difference(spreads[v]["test_error"], spreads[ref]["test_error"])
        comparisons.append({"variant": v, "reference": ref, "difference": diff, "standard_error": se,
                            "verdict": verdict(diff, se)})
    return spreads, comparisons


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="CIFAR-10 as an ImageFolder root (train/, test/)")
    p.add_argument("--iterations", type=int, default=64000, help="steps per run (default: the paper's 64000)")
    p.add_argument("--seeds", type=int, default=3, help="runs per variant, seeds 0 to N-1 (default: 3)")
    p.add_argument("--variants", help=f"comma-separated, of {', '.join(VARIANTS)} (default: {DEFAULTS['cpu']} on a"
                   f" CPU, {DEFAULTS['cuda']} on a GPU)")
    p.add_argument("--depth", type=int, default=20, help="the ResNet's depth, 6n+2 (default: 20)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", type=Path, default=Path("runs/fidelity"), help="where the runs are kept (default: runs/fidelity)")
    p.add_argument("--parallel", type=int, help="reference runs at once (default: all its seeds on a GPU, 1 on a CPU)")
    p.add_argument("--bn-check", type=int, default=1, metavar="K", help="seeds of each ilsvrc variant given the batch-norm check (default: 1)")
    p.add_argument("--workers", type=int, default=None, help="decoding workers (default: one per core, at most 8)")
    p.add_argument("--json", help="write the runs, spreads and verdicts here")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv=None) -> int:
    p = parser()
    a = p.parse_args(argv)
    resolve_device(p, a)
    a.data = a.data or default_data("cifar10")
    if a.data is None or not ((a.data / "train").is_dir() or is_store(a.data)):
        p.error(f"--data {a.data}: no CIFAR-10 there (an ImageFolder root with train/ and test/, or a packed store)")
    variants = (a.variants or DEFAULTS[a.device]).split(",")
    if unknown := [v for v in variants if v not in VARIANTS]:
        p.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if a.seeds < 1 or a.iterations < 1 or (a.depth - 2) % 6:
        p.error("--seeds and --iterations must be positive and --depth 6n+2")
    a.parallel = a.parallel or (a.seeds if a.device == "cuda" else 1)
    info = machine(torch.device(a.device))
    print(f"fidelity: resnet-{a.depth} on {a.data}, {a.iterations} steps (lr / 10 at {', '.join(map(str, milestones(a.iterations)))}),"
          f" {a.seeds} seed(s) per variant, {info['device']}, torch {info['torch']}, {info['date']}", flush=True)
    start = time.perf_counter()
    refs = [v for v in variants if v.startswith("reference")]
    ours = [v for v in variants if not v.startswith("reference")]
    a.out.mkdir(parents=True, exist_ok=True)
    a.folder = image_folder(a.data, a.out) if refs else a.data
    if a.device == "cuda":
        thread, results = start_references(a, refs, a.out)
    else:
        results = {v: reference_runs(a, v, a.out) for v in refs}
    results.update(ilsvrc_runs(a, ilsvrc_jobs(a, ours, a.out)) if ours else {})
    if a.device == "cuda":
        thread.join()
    spreads, comparisons = summarise(results)
    for v in variants:
        if v in spreads:
            name = v if v.startswith("reference") else f"ilsvrc {v}"
            runs = results[v]
            print(f"{name:24s} test error {spreads[v]['test_error']}, training error at the end {spreads[v]['train_error']};"
                  f" per run {sum(r['steps_s'] for r in runs) / len(runs):.0f} s of steps,"
                  f" {sum(r['validation_s'] for r in runs) / len(runs):.0f} s of validation")
    for c in comparisons:
        print(f"ilsvrc {c['variant']} - {c['reference']}: {c['difference']:+.2f} ± {c['standard_error']:.2f} points: {c['verdict']}")
    checks = []
    for v in ours:
        for r in results.get(v, [])[: a.bn_check]:
            c = batchnorm_check(Path(r["dir"]), torch.device(a.device), a.workers or 0)
            checks.append({"variant": v, "seed": r["seed"], **c})
            print(f"batch norm, ilsvrc {v} seed {r['seed']}: test error {c['running']:.2f}% with its running statistics,"
                  f" {c['recomputed']:.2f}% with statistics recomputed over the training set ({c['difference']:+.2f})")
    print(f"fidelity: {time.perf_counter() - start:.0f} s in all")
    write_json(a.json, plain({"machine": info, "iterations": a.iterations, "seeds": a.seeds, "depth": a.depth,
                              "data": str(a.data), "runs": results, "spreads": spreads, "comparisons": comparisons,
                              "batchnorm": checks, "seconds": round(time.perf_counter() - start, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
