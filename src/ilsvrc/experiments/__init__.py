"""The papers' experiments and figures, one command each.

``run(NAME, data, out, budget=...)`` trains the networks an experiment
compares (each an ``ilsvrc.train`` run in ``out/runs/<run>``), draws its
figures and writes ``out/experiment.json`` (SCHEMA.md), which ``ilsvrc
report`` turns into a page with the paper's numbers beside ours.

Each experiment is a module here (``alexnet_fig1.py`` ...) with a ``run(ex)``
function, and a plan ``<name>.plan.toml`` beside it: its paper, its dataset, the
paper's published numbers (each with where it is printed), and its budgets:

- ``quick``: small sizes, minutes on a CPU (the tests run it); its figures
  show that the pipeline works, not the paper's result;
- ``laptop`` (alexnet-fig1, resnet-cifar): the paper's claim at a size that
  shows it on 2 CPU cores within an hour (docs/results.md);
- ``sweep`` (alexnet-fig1): the learning-rate sweep its laptop budget's
  rates come from;
- ``paper``: the paper's recipe, meant for a GPU.

A budget may hold ``settings`` (recipe values for every run, as
``ilsvrc.train`` overrides), ``max_steps`` (per run), ``per_class`` (``[train,
held-out]``: a subset of that many images per class, linked from the data
folder into ``out/data``) and values of the experiment's own (depths,
variants, learning rates). Running an experiment again with the same ``out``
resumes its unfinished runs and reuses finished ones.

``runs=N`` trains each network N times (seeds 0 to N-1, folders ``<run>``,
``<run>-seed1``, ...); its figures are then ``spread.Spread``s (mean, std,
n), shown as ``mean ± std (n runs)``. ``together``: train the experiment's
runs side by side in one process (``together.py``), at most that many at
once (default: all of them on a GPU, one by one on a CPU, where it gains
nothing). Which runs there are is found by a first pass of the experiment's
``run`` on stand-in results (``Experiment.planning``), so that an
experiment's module says once what it trains; a run that starts from
another's weights (VGG's deeper configurations) trains after, alone.
"""

import copy
import json
import math
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from importlib import import_module
from pathlib import Path

import torch
import torchvision
from tqdm import tqdm

from .. import __version__
from ..data.default import find
from ..data.folders import HELD_OUT
from ..device import pick_device
from ..errors import Diverged, UserError
from ..recipes import read_toml, toml_names
from ..spread import Spread, mean_curve, plain

BUDGETS = ("quick", "laptop", "sweep", "paper")
PLAN = ".plan.toml"  # an experiment's plan, named apart from the recipes it trains (recipes/NAME.toml)


def names() -> list[str]:
    """The experiments ``run`` knows."""
    return toml_names(__name__, PLAN)


def plan(name: str) -> dict:
    """Experiment ``name``'s plan (its TOML file) as a dict."""
    if name not in names():
        raise UserError(f"unknown experiment {name!r}; known experiments: {', '.join(names())}")
    return copy.deepcopy(read_toml(__name__, name, PLAN))


def device_name(device: str) -> str:
    """The device in words, for the record."""
    dev = pick_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"CPU ({platform.machine()}, {cores} cores)"


def subset(data: Path, out: Path, per_class: list[int]) -> Path:
    """A folder of links to the first ``per_class`` images of each class of
    ``data``'s train/ and held-out split (the quick budget's small data)."""
    if not (data / "train").is_dir():
        raise UserError(f"the quick budget takes a subset of an image folder; {data} has no train/ folder")
    heldout = next((s for s in HELD_OUT if (data / s).is_dir()), None)
    if heldout is None:
        raise UserError(f"{data} has no held-out split ({' or '.join(HELD_OUT)}/)")
    for split, n in (("train", per_class[0]), (heldout, per_class[1])):
        for cls in sorted(p for p in (data / split).iterdir() if p.is_dir()):
            dst = out / split / cls.name
            dst.mkdir(parents=True, exist_ok=True)
            for f in sorted(cls.iterdir())[:n]:
                link = dst / f.name
                if not link.exists():
                    link.symlink_to(f.resolve())
    return out


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


DIVERGED = "diverged.txt"  # in a run's folder: the run diverged (``train(may_diverge=True)``), and why


def _done(run_dir: Path, job: dict) -> bool:
    """Whether a run ended for good before its last epoch: it diverged, or it
    stops at a training error (``until_train_error``) and has stopped there
    (resumed, it would train one more epoch)."""
    rows = [r for r in read_metrics(run_dir) if r["complete"]]
    target = job.get("until_train_error")
    return (run_dir / DIVERGED).is_file() or (target is not None and bool(rows) and rows[-1]["train_error"] <= target)


FINAL = ("train_error", "val_top1_error", "val_top5_error")  # a record's final figures
CURVE = ("epoch", "step", "train_error", "val_top1_error")  # its curves, one point per epoch


class _Planned(Exception):
    """Ends a planning pass at a network the experiment then looks at."""


class Experiment:
    """What an experiment's ``run`` works with: its plan and budget, the
    data, the output folder, and ``train`` for each network it compares."""

    def __init__(self, name: str, data: Path, out: Path, budget: str, device: str, progress: bool, workers=None,
                 checkpoint: Path | None = None, runs: int = 1):
        self.name, self.data, self.out, self.budget_name = name, data, out, budget
        self.given_checkpoint = checkpoint
        self.plan = plan(name)
        self.budget = self.plan["budget"][budget]
        self.published = self.plan.get("published", {})
        self.device, self.progress, self.workers, self.seeds = device, progress, workers, runs
        self.runs: list[dict] = []
        self.runs_dir = out / "runs"
        self.finished: set[str] = set()  # runs trained to their end in this process (by train_together)
        self.planning: list[dict] | None = None  # in a planning pass: the train() arguments of each run asked for

    def train(self, run: str, recipe: str, model: str | None = None, *, may_diverge: bool = False, **settings) -> dict:
        """Train (or resume, or reuse) run ``run``: ``recipe`` with the
        budget's settings and then ``settings``, once per seed; its record
        (SCHEMA.md), over several seeds with each final figure a ``Spread``
        and each curve their mean; ``each``: the seeds' own records.
        ``may_diverge``: a run whose training diverges (a learning-rate
        sweep's largest rates) ends there, its record marked ``diverged``
        (and kept so: run again, it is not trained again), instead of
        stopping the experiment."""
        names = [run] + [f"{run}-seed{seed}" for seed in range(1, self.seeds)]
        records = [self._train_one(name, seed, recipe, model, settings, may_diverge) for seed, name in enumerate(names)]
        if len(records) == 1:
            return {**records[0], "each": records}
        return {**records[0], "name": run, "seeds": len(records), "each": records,  # its checkpoint: seed 0's
                "final": {k: Spread([r["final"][k] for r in records]) for k in FINAL},
                "curve": {k: mean_curve([r["curve"][k] for r in records]) for k in CURVE}}

    def job(self, name: str, seed: int, recipe: str, model: str | None, changed: dict) -> dict:
        """The ``train`` arguments of run ``name``, ``changed`` its recipe values."""
        run_dir = self.runs_dir / name
        return dict(recipe=recipe, data=self.data, out=run_dir, model=model, seed=seed, device=self.device,
                    workers=self.workers, resume=(run_dir / "last.pt").exists(), max_steps=self.budget.get("max_steps"),
                    **changed)

    def _train_one(self, name: str, seed: int, recipe: str, model: str | None, settings: dict,
                   may_diverge: bool = False) -> dict:
        from ..train import train

        changed = {**self.budget.get("settings", {}), **settings}  # a network's own settings win over the budget's
        job = self.job(name, seed, recipe, model, changed)
        if self.planning is not None:  # a stand-in record: the planning pass only notes what is trained
            self.planning.append(job)
            nan = {k: [math.nan] for k in CURVE} | {"epoch": [1], "step": [1]}
            self.runs.append({"name": name, "recipe": recipe, "model": model or recipe, "settings": changed, "seed": seed,
                              "dir": f"runs/{name}", "steps": 0, "epochs": 0, "seconds": 0.0,
                              "final": {k: math.nan for k in FINAL}, "curve": nan})
            return self.runs[-1]
        run_dir = job["out"]
        if name not in self.finished and not _done(run_dir, job):
            if self.progress:
                tqdm.write(f"{self.name}: {'resuming' if job['resume'] else 'training'} {name}")
            try:
                train(**job, progress=self.progress)
            except Diverged as e:
                if not may_diverge:
                    raise
                (run_dir / DIVERGED).write_text(f"{e}\n")
                tqdm.write(f"{self.name}: {name} diverged ({e})")
        rows = [r for r in read_metrics(run_dir) if r["complete"]] or read_metrics(run_dir)
        last = rows[-1] if rows else {"step": 0, "epoch": 0} | {k: math.nan for k in FINAL}
        record = {
            "name": name, "recipe": recipe, "model": model or json.loads((run_dir / "config.json").read_text())["recipe"]["network"],
            "settings": changed, "seed": seed, "dir": str(run_dir.relative_to(self.out)), "steps": last["step"],
            "epochs": last["epoch"], "seconds": round(sum(r["epoch_time_s"] for r in read_metrics(run_dir)), 1),
            "final": {k: last[k] for k in FINAL},
            "curve": {k: [r[k] for r in rows] for k in CURVE},
        }
        if (run_dir / DIVERGED).is_file():
            record["diverged"] = (run_dir / DIVERGED).read_text().strip()
        self.runs.append(record)
        return record

    def planned(self, module) -> list[dict]:
        """The runs ``module.run`` trains, found by running it on stand-in
        results with its figures drawn into a folder thrown away after."""
        with tempfile.TemporaryDirectory() as tmp:
            planner = copy.copy(self)
            planner.out, planner.runs, planner.planning = Path(tmp), [], []
            try:
                module.run(planner)
            except _Planned:
                pass
        return planner.planning

    def checkpoint(self, run: dict) -> Path:
        """The best checkpoint of a trained run."""
        d = self.out / run["dir"]
        return d / "best.pt" if (d / "best.pt").exists() else d / "last.pt"

    def trained(self, run: str, recipe: str, **settings) -> Path:
        """A trained network's checkpoint: the one given (``--checkpoint``), else
        run ``run`` trained here."""
        if self.given_checkpoint is None:
            record = self.train(run, recipe, **settings)
        if self.planning is not None:
            raise _Planned  # what follows looks at the trained network: nothing to plan there
        return self.given_checkpoint or self.checkpoint(record)


def _train_together(ex: Experiment, module, at_once: int, stack: bool) -> None:
    """Train the experiment's runs side by side, ``at_once`` at a time; those
    that start from another run's weights are left to train after it."""
    from ..together import train_together

    jobs = [job for job in ex.planned(module) if job.get("init_from") is None]
    for first in range(0, len(jobs), at_once):
        group = jobs[first : first + at_once]
        if ex.progress:
            tqdm.write(f"{ex.name}: training {', '.join(job['out'].name for job in group)} together")
        train_together([{k: v for k, v in job.items() if k != "device"} for job in group], device=ex.device,
                       progress=ex.progress, stack=stack)
        ex.finished.update(job["out"].name for job in group)


def run(name: str, data=None, out=None, *, budget: str = "quick", device: str = "auto", progress: bool = True,
        workers: int | None = None, checkpoint=None, command: str | None = None, runs: int = 1,
        together: int | None = None, stack: bool = False) -> Path:
    """Run experiment ``name`` on ``data`` into ``out``; the path of its
    experiment.json. ``checkpoint``: a trained network for the experiments
    that look at one (alexnet-fig3, alexnet-fig4) instead of training it.
    ``runs``: seeds per network. ``together``: at most this many runs
    trained at once (default: all on a GPU; 1, one by one, on a CPU).
    ``stack``: runs trained at once that can take their steps as one
    (``stacked.py``: seeds of a network, a plain network beside its residual
    twin) do."""
    if not isinstance(runs, int) or runs < 1:
        raise UserError(f"--runs must be a positive whole number, not {runs!r}")
    if together is not None and together < 1:
        raise UserError(f"--together must be a positive whole number, not {together!r}")
    p = plan(name)
    if checkpoint is not None:
        if not p.get("takes_checkpoint"):
            raise UserError(f"experiment {name} trains its own networks; --checkpoint is for {', '.join(n for n in names() if plan(n).get('takes_checkpoint'))}")
        from ..checkpoint import load

        if load(checkpoint)["config"]["network"] != "alexnet":
            raise UserError(f"{checkpoint} is not an AlexNet checkpoint (experiment {name} looks at AlexNet's layers)")
        checkpoint = Path(checkpoint)
    if budget not in BUDGETS:
        raise UserError(f"--budget must be one of {', '.join(BUDGETS)}, not {budget!r}")
    if budget not in p["budget"]:
        raise UserError(f"experiment {name} has no {budget} budget; its budgets: "
                        f"{', '.join(b for b in BUDGETS if b in p['budget'])}")
    out = Path(out or Path("experiments") / f"{name}-{budget}")
    source = find(data or p["dataset"])  # a path, or a dataset's name (under $ILSVRC_DATA, the cache; CIFAR downloaded)
    if not source.is_dir():
        raise UserError(f"data folder {source} does not exist")
    if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
        raise UserError(f"--out {out} is inside the data folder {source}; choose another")
    b = p["budget"][budget]
    start, wall = datetime.now(timezone.utc), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    used = subset(source, out / "data", b["per_class"]) if "per_class" in b else source
    ex = Experiment(name, used, out, budget, device, progress, workers, checkpoint, runs)
    module = import_module(f"{__name__}.{name.replace('-', '_')}")
    if together is None:
        together = 1 if pick_device(device).type == "cpu" else 1 << 30
    if together > 1:
        _train_together(ex, module, together, stack)
    results = plain(module.run(ex))
    record = {
        "format": 1, "experiment": name, "title": p["title"], "paper": p["paper"], "budget": budget,
        "command": command or f"ilsvrc experiment {name} --data {source} --budget {budget} --out {out}",
        "data": str(source.resolve()) + (f" (subset: {b['per_class'][0]} train and {b['per_class'][1]} held-out images per class)"
                                         if "per_class" in b else ""),
        "device": device_name(device),
        "versions": {"ilsvrc": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
                     "python": platform.python_version()},
        "started": start.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - wall, 1),
        "runs": ex.runs,
        "tables": results.get("tables", []),
        "figures": results.get("figures", []),
        "comparisons": results.get("comparisons", []),
        "claims": results.get("claims", []),
        "notes": ([p["budget"][f"{budget}_note"]] if f"{budget}_note" in p["budget"] else [])
        + results.get("notes", []),
    }
    path = out / "experiment.json"
    from ..checkpoint import atomic_write

    atomic_write(path, lambda f: f.write(json.dumps(record, indent=2).encode()))
    return path
