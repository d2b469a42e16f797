"""The papers' experiments and figures, one command each.

``run(NAME, data, out, budget=...)`` trains the networks an experiment
compares (each an ``ilsvrc.train`` run in ``out/runs/<run>``), draws its
figures and writes ``out/experiment.json`` (SCHEMA.md), which ``ilsvrc
report`` turns into a page with the paper's numbers beside ours.

Each experiment is a module here (``alexnet_fig1.py`` ...) with a ``run(ex)``
function, and a plan ``<name>.toml`` beside it: its paper, its dataset, the
paper's published numbers (each with where it is printed), and two budgets:

- ``quick``: small sizes, minutes on a CPU (the tests run it); its figures
  show that the pipeline works, not the paper's result;
- ``paper``: the paper's recipe, meant for a GPU.

A budget may hold ``settings`` (recipe values for every run, as
``ilsvrc.train`` overrides), ``max_steps`` (per run), ``per_class`` (``[train,
held-out]``: a subset of that many images per class, linked from the data
folder into ``out/data``) and values of the experiment's own (depths,
variants, learning rates). Running an experiment again with the same ``out``
resumes its unfinished runs and reuses finished ones.
"""

import copy
import json
import os
import platform
import time
from datetime import datetime, timezone
from importlib import import_module
from pathlib import Path

import torch
import torchvision
from tqdm import tqdm

from .. import __version__
from ..data.folders import HELD_OUT
from ..device import pick_device
from ..errors import UserError
from ..recipes import read_toml, toml_names

BUDGETS = ("quick", "paper")


def names() -> list[str]:
    """The experiments ``run`` knows."""
    return toml_names(__name__)


def plan(name: str) -> dict:
    """Experiment ``name``'s plan (its TOML file) as a dict."""
    if name not in names():
        raise UserError(f"unknown experiment {name!r}; known experiments: {', '.join(names())}")
    return copy.deepcopy(read_toml(__name__, name))


def default_data(dataset: str) -> Path:
    """``$ILSVRC_DATA/<dataset>``: where an experiment's data is when no --data is given."""
    env = os.environ.get("ILSVRC_DATA")
    if not env:
        raise UserError(f"no data: pass --data DIR (this experiment needs {dataset}) or set ILSVRC_DATA")
    folder = Path(env).expanduser() / dataset
    if not folder.is_dir():
        raise UserError(f"ILSVRC_DATA is set but {folder} does not exist; pass --data DIR ({dataset})")
    return folder


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


class Experiment:
    """What an experiment's ``run`` works with: its plan and budget, the
    data, the output folder, and ``train`` for each network it compares."""

    def __init__(self, name: str, data: Path, out: Path, budget: str, device: str, progress: bool, workers=None,
                 checkpoint: Path | None = None):
        self.name, self.data, self.out, self.budget_name = name, data, out, budget
        self.given_checkpoint = checkpoint
        self.plan = plan(name)
        self.budget = self.plan["budget"][budget]
        self.published = self.plan.get("published", {})
        self.device, self.progress, self.workers = device, progress, workers
        self.runs: list[dict] = []

    def train(self, run: str, recipe: str, model: str | None = None, **settings) -> dict:
        """Train (or resume, or reuse) run ``run``: ``recipe`` with the
        budget's settings and then ``settings``; its record (SCHEMA.md)."""
        from ..train import train

        changed = {**self.budget.get("settings", {}), **settings}
        run_dir = self.out / "runs" / run
        resume = (run_dir / "last.pt").exists()
        if self.progress:
            tqdm.write(f"{self.name}: {'resuming' if resume else 'training'} {run}")
        train(recipe, self.data, run_dir, model=model, device=self.device, workers=self.workers, resume=resume,
              progress=self.progress, max_steps=self.budget.get("max_steps"), **changed)
        rows = [r for r in read_metrics(run_dir) if r["complete"]] or read_metrics(run_dir)
        last = rows[-1]
        record = {
            "name": run, "recipe": recipe, "model": model or json.loads((run_dir / "config.json").read_text())["recipe"]["network"],
            "settings": changed, "dir": str(run_dir.relative_to(self.out)), "steps": last["step"], "epochs": last["epoch"],
            "seconds": round(sum(r["epoch_time_s"] for r in read_metrics(run_dir)), 1),
            "final": {k: last[k] for k in ("train_error", "val_top1_error", "val_top5_error")},
            "curve": {k: [r[k] for r in rows] for k in ("epoch", "step", "train_error", "val_top1_error")},
        }
        self.runs.append(record)
        return record

    def checkpoint(self, run: dict) -> Path:
        """The best checkpoint of a trained run."""
        d = self.out / run["dir"]
        return d / "best.pt" if (d / "best.pt").exists() else d / "last.pt"

    def trained(self, run: str, recipe: str, **settings) -> Path:
        """A trained network's checkpoint: the one given (``--checkpoint``), else
        run ``run`` trained here."""
        if self.given_checkpoint is not None:
            return self.given_checkpoint
        return self.checkpoint(self.train(run, recipe, **settings))


def run(name: str, data=None, out=None, *, budget: str = "quick", device: str = "auto", progress: bool = True,
        workers: int | None = None, checkpoint=None, command: str | None = None) -> Path:
    """Run experiment ``name`` on ``data`` into ``out``; the path of its
    experiment.json. ``checkpoint``: a trained network for the experiments
    that look at one (alexnet-fig3, alexnet-fig4) instead of training it."""
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
    out = Path(out or Path("experiments") / f"{name}-{budget}")
    source = Path(data).expanduser() if data else default_data(p["dataset"])
    if not source.is_dir():
        raise UserError(f"data folder {source} does not exist")
    if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
        raise UserError(f"--out {out} is inside the data folder {source}; choose another")
    b = p["budget"][budget]
    start, wall = datetime.now(timezone.utc), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    used = subset(source, out / "data", b["per_class"]) if "per_class" in b else source
    ex = Experiment(name, used, out, budget, device, progress, workers, checkpoint)
    module = import_module(f"{__name__}.{name.replace('-', '_')}")
    results = module.run(ex)
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
        "notes": ([p["budget"]["quick_note"]] if budget == "quick" and "quick_note" in p["budget"] else [])
        + results.get("notes", []),
    }
    path = out / "experiment.json"
    from ..checkpoint import atomic_write

    atomic_write(path, lambda f: f.write(json.dumps(record, indent=2).encode()))
    return path
