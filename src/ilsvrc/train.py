"""Training, as Section 5 of the AlexNet paper describes it, for every recipe.

Stochastic gradient descent with momentum and weight decay on batches of the
paper's augmented images; the learning rate follows the recipe's schedule
(``schedule.py``: divided by 10 when the validation error stops improving,
at fixed steps, or every few epochs). A network with auxiliary classifiers
(GoogLeNet) returns their outputs too in training mode, and their losses are
added with the model's ``aux_weight``. Each epoch appends one row to
``metrics.jsonl`` and to the TensorBoard log, and writes ``last.pt``
(everything needed to go on) and, when the validation top-1 error is the
best so far, ``best.pt`` (``run_folder.py`` lists the run folder).
``resume=True`` continues from ``last.pt`` exactly where the run stopped: the
same batches, the same dropout masks, the same weights at the end.

Read it top to bottom: ``train`` drives ``training``, a generator that
yields once prepared and after each step is issued (so that runs can take
turns, or share one stacked step: ``together.py``);
``training`` names the parts in order: ``prepare`` (every check, then the
model, optimizer, schedule, batches and ``TrainState``), ``run_epoch`` (the
steps) and ``end_epoch`` (validation, the metrics row, the schedule, the
checkpoints).
"""

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm import tqdm

from . import checkpoint as ckpts
from . import recipes
from .data.datasets import open_dataset
from .data.default import default_data, find
from .data.images import warn_skipped
from .data.sources import KINDS, Source, source
from .data.stats import Stats, load_or_compute
from .data.transforms import PaperTransforms
from .device import check_precision, default_workers, pick_device, uses_bf16
from .distributed import World, join, leave
from .errors import Diverged, Interrupted, UserError
from .evaluate import checkpoint_labels, evaluate_model
from .models import check_recipe, for_recipe
from .run_folder import RunFolder
from .schedule import Schedule
from .step import TrainStep, WholeStep, pick_mode

# Settings that may change when a run is resumed: how long it goes on.
RESUMABLE = {"epochs", "iterations"}
LOG_EVERY = 10  # steps between progress-bar and TensorBoard updates (each one syncs with the device)


def _zero_sums() -> dict:
    return {"loss": 0.0, "errors": 0, "images": 0, "seconds": 0.0}


@dataclass
class TrainState:
    """Where a run is: what changes from step to step, and ``last.pt`` keeps."""

    epoch: int = 0  # epochs done
    position: int = 0  # batches of the current epoch done
    step: int = 0  # optimizer steps in all
    best: float = math.inf  # the lowest validation top-1 error so far
    sums: dict = field(default_factory=_zero_sums)  # the epoch's training loss, errors, images and seconds

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "step": self.step, "best_top1": self.best,
                "sums": dict(self.sums)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainState":
        position = d["position"] if "position" in d else d["batch"]  # "batch" in checkpoints of format 1
        return cls(d["epoch"], position, d["step"], d["best_top1"], dict(d["sums"]))

    def next_epoch(self) -> None:
        self.epoch, self.position, self.sums = self.epoch + 1, 0, _zero_sums()


@dataclass
class Run:
    """What ``prepare`` builds: all that the loop reads, and the run's settings."""

    recipe: recipes.Recipe  # every training value, resolved and checked
    folder: RunFolder
    root: Path  # the data's folder or store
    dataset: object
    stats: Stats
    seed: int
    model: torch.nn.Module
    net: torch.nn.Module  # the model, or DDP around it
    opt: torch.optim.SGD
    sched: Schedule
    batches: Source
    train_step: TrainStep | WholeStep
    dev: torch.device
    world: World
    mode: str  # how the step runs (step.py)
    precision: str  # the forward pass's arithmetic: auto, float32 or bf16 (device.autocast)
    steps_per_epoch: int
    epochs: int
    max_steps: int | None
    progress: bool
    prefix: str  # before each line the run prints
    checkpoint_minutes: float
    until_top1_error: float | None
    until_train_error: float | None
    say_if_long: bool  # (until said: once, on a CPU, if the run would take more than an hour)
    first_step: int = 0  # where this process began, and when (for that estimate)
    started: float = 0.0

    @property
    def total(self) -> int:
        """The step the run ends at."""
        planned = self.epochs * self.steps_per_epoch
        return planned if self.max_steps is None else min(self.max_steps, planned)

    def reached(self, row: dict) -> bool:
        """Whether the epoch of metrics ``row`` met a target the run stops at."""
        return ((self.until_top1_error is not None and row["val_top1_error"] <= self.until_top1_error)
                or (self.until_train_error is not None and row["complete"] and row["train_error"] <= self.until_train_error))

    def at_max_steps(self, state: TrainState) -> bool:
        return self.max_steps is not None and state.step >= self.max_steps

    def checkpoint(self, state: TrainState) -> dict:
        """What ``best.pt`` and ``last.pt`` both hold."""
        return {"format": 2, "config": self.recipe.to_dict(), "data_root": str(self.root.resolve()), "seed": self.seed,
                "classes": self.dataset.classes, "stats": self.stats.to_dict(), "model": self.model.state_dict(),
                **_labels_and_names(self.dataset), **state.to_dict()}

    def diverged(self, state: TrainState, what: str) -> Diverged:
        last = self.folder.last
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written"
        return Diverged(f"training diverged by step {state.step}: {what} at learning rate {self.sched.lr():g}; {kept}; "
                        "lower the learning rate")

    def check_weights(self, state: TrainState) -> None:
        """Nothing of a diverged run is validated or saved: the loss read last
        can be finite while the update after it made the weights NaN."""
        if (key := ckpts.nonfinite(self.model.state_dict())) is not None:
            raise self.diverged(state, f"{key} holds NaN or infinite values")

    def leave(self) -> None:
        """End the process group, DDP first. Where DDP's reducer holds the
        group's last reference, freeing the run frees the group in the
        reducer's destructor, which holds the GIL while it waits for gloo's
        threads, one of them waiting for the GIL to free the last collective's
        tensors: torch 2.11's processes hung there at the end of a run, now
        and then (a torchrun test, under load). Ended by
        ``destroy_process_group``, the group is freed without the GIL."""
        if self.world.distributed:
            self.net, self.train_step = self.model, None  # the two holders of DDP
        leave(self.world)


def train(*args, **kwargs) -> dict:
    """Train ``recipe`` on the ImageFolder dataset ``data`` into run directory ``out``.

    ``overrides`` replace recipe values by name (``epochs=1``, ``lr=0.02``,
    ``lrn=False``, ``pca_lighting=0``, ``image_size=64``...). ``max_steps``
    stops after that many optimizer steps in all. ``data_loader`` is where
    batches come from: "resident", "stream", "workers" or "auto" (see
    ``data/sources.py``). ``compile``: how the training step runs
    (``step.py``): None picks (on a GPU, the whole step captured as CUDA
    graphs when the data is resident, else the compiled network; eager on
    the CPU), False is eager, True the best compiled mode, or a mode name
    ("eager", "default", "graph"). ``precision``: the forward pass's
    arithmetic, "auto" (bf16 autocast on a GPU, float32 on a CPU),
    "float32" or "bf16" (autocast on a CPU too: the GPU's arithmetic checked
    without a GPU). ``until_top1_error``: stop after the
    first validation whose top-1 error (percent) is at most this;
    ``until_train_error``: after the first whole epoch whose training error
    is at most this (AlexNet's Figure 1 counts the epochs to 25%). ``model``:
    another network of the recipe than its default (``resnet-110`` for
    ``resnet-cifar``). ``init_from``: a checkpoint whose weights start the
    model (VGG's deeper configurations from a trained A). ``preset``:
    "demo", the recipe's ``[demo]`` values (a run of minutes on a CPU) under
    the given overrides. Returns the last metrics row. The arguments are
    ``prepare``'s.
    """
    steps = training(*args, **kwargs)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def training(*args, stop=None, **kwargs):
    """``train`` one step at a time: a generator that yields ``(run, state)``
    once prepared, then after each optimizer step is issued, and returns the
    last metrics row (``StopIteration.value``), so that several runs can take
    turns in one process (``together.py``).
    ``stop``: a ``StopRequest`` shared by such runs (default: the run's own),
    which one Ctrl-C or SIGTERM sets for all of them."""
    run, state = prepare(*args, **kwargs)
    stop = StopRequest() if stop is None else stop  # (a StopRequest is falsy until it is set)
    row: dict = {}
    # one bar for the whole run: its time left is the run's (the epoch is in its description)
    bar = tqdm(total=run.total, initial=state.step, unit="step", disable=not run.progress, leave=False)
    try:
        yield run, state  # the first turn ends here: runs trained together may share one step (stacked.py)
        with stop:
            while state.epoch < run.epochs and not run.at_max_steps(state) and not stop:
                bar.set_description(f"epoch {state.epoch + 1}/{run.epochs}")
                yield from run_epoch(run, state, stop, bar)
                complete = state.position >= run.steps_per_epoch
                if stop and not complete:  # interrupted: keep the place, skip validation
                    run.check_weights(state)
                    save_last(run, state)
                    break
                row = end_epoch(run, state, complete)
                if run.reached(row):
                    break  # the target is reached (benchmarks/time_to_accuracy.py, AlexNet's Figure 1)
    finally:
        bar.close()
        run.folder.close()
        run.leave()
    if stop:
        raise Interrupted(f"interrupted at step {state.step}; {run.folder.last} holds the run, continue it with --resume")
    return row


def prepare(
    recipe: str = "alexnet",
    data=None,
    out="runs/alexnet",
    *,
    max_steps: int | None = None,
    device: str = "auto",
    workers: int | None = None,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    checkpoint_minutes: float = 10.0,
    data_loader: str = "auto",
    compile: bool | None = None,
    precision: str = "auto",
    until_top1_error: float | None = None,
    until_train_error: float | None = None,
    model: str | None = None,
    init_from=None,
    label: str | None = None,
    preset: str | None = None,
    val_labels=None,
    **overrides,
) -> tuple[Run, TrainState]:
    """Check every setting, then build the model, optimizer, schedule, batches
    and state (fresh, or from ``last.pt``) and open the run folder. (docs/architecture.md:
    a user error leaves the run folder as it was, so nothing is written before
    everything is checked.) ``label``: the run's name before its lines.
    ``val_labels``: the labels file of the data's flat ``val/`` (data/labels.py)."""
    folder = RunFolder(out)
    ckpt = folder.last_checkpoint() if resume else None
    if data_loader not in KINDS:
        raise UserError(f"--loader must be one of {', '.join(KINDS)}, not {data_loader!r}")
    if max_steps is not None and max_steps < 1:
        raise UserError(f"--max-steps must be positive, not {max_steps}")
    if preset is not None:
        overrides = recipes.preset(recipe, preset) | {k: v for k, v in overrides.items() if v is not None}
    plan = _plan(recipe, ckpt, overrides, model)  # typed and checked: recipes.Recipe
    seed = ckpt["seed"] if ckpt is not None else seed
    root, dataset = _open_data(data, val_labels, ckpt, folder)
    torch.manual_seed(seed)  # the initial weights (Sec. 5) follow the seed
    net = for_recipe(plan, len(dataset.classes))
    dev, world, mode = _placement(device, compile, precision)
    workers = default_workers(workers)
    bs = plan.optim.batch_size  # the global batch: each rank takes every world.size-th image of it
    if bs < world.size:
        raise UserError(f"the batch size {bs} is smaller than the number of processes {world.size}")
    progress = progress and world.main
    stats = Stats.from_dict(ckpt["stats"]) if ckpt else _statistics(dataset, plan.data.resize, world, workers, progress)
    transforms = _transforms(stats, plan.data)
    if init_from is not None and ckpt is None:
        _init_from(net, init_from, plan.network)
    net, opt, sched, state = _optimizer_and_state(net, plan, dev, world, ckpt, seed)
    steps_per_epoch = math.ceil(len(dataset.train) / bs)
    if sched.iterations is not None:  # the schedule says where the run ends (ResNet Sec. 4.2: 64k steps)
        max_steps = sched.iterations if max_steps is None else min(max_steps, sched.iterations)
    try:
        batches = source(data_loader, dataset, transforms, dev, bs, seed=seed, test_crops=plan.data.test_crops,
                         workers=workers, progress=progress, rank=world.rank, world=world.size)
    except ValueError as e:
        raise UserError(str(e)) from None
    model = net.module if world.distributed else net
    train_step = _train_step(model, net, opt, dev, mode, bs, batches, precision)
    run = Run(recipe=plan, folder=folder, root=root, dataset=dataset, stats=stats, seed=seed, model=model, net=net,
              opt=opt, sched=sched, batches=batches, train_step=train_step, dev=dev, world=world, mode=mode, precision=precision,
              steps_per_epoch=steps_per_epoch, epochs=sched.epochs(steps_per_epoch), max_steps=max_steps,
              progress=progress, prefix=f"{label}: " if label else "", checkpoint_minutes=checkpoint_minutes,
              until_top1_error=until_top1_error, until_train_error=until_train_error,
              say_if_long=dev.type == "cpu" and preset is None)
    if world.main:
        folder.open({"recipe": plan.to_dict(), "data_root": str(root.resolve()), **_labels_and_names(dataset, names=False),
                     "seed": seed, "classes": dataset.classes,
                     "processes": world.size, "loader": batches.kind,
                     "precision": "bf16" if uses_bf16(dev, precision) else "float32"}, resumed_step=None if ckpt is None else state.step)
        _say_plan(run, state)
    run.first_step, run.started = state.step, time.perf_counter()
    return run, state


def _labels_and_names(dataset, names: bool = True) -> dict:
    """What a checkpoint (and, without the names, config.json) keeps of the
    data beside its root: the labels file of a flat val/ (given again on
    resume and to eval) and the dataset's own class names (predict's)."""
    return ({"val_labels": str(dataset.val_labels)} if dataset.val_labels is not None else {}) | (
        {"names": dict(dataset.names)} if names and dataset.names else {})


def _open_data(data, val_labels, ckpt: dict | None, folder: RunFolder):
    """``(root, dataset)``: ``data`` (a dataset's name or a path), else the
    checkpoint's data (with its labels file, unless another is given), else
    the default; a fresh run's folder checked unused after the data (a bad
    --data is the news)."""
    data = data or (ckpt["data_root"] if ckpt is not None else None)
    root = find(data) if data else default_data()  # a dataset's name or a path
    dataset = open_dataset(root, val_labels=val_labels or checkpoint_labels(ckpt, root))
    if ckpt is None:
        folder.check_unused()
    elif dataset.classes != ckpt["classes"]:
        raise UserError(f"{root} has other classes than the checkpoint in {folder.path}")
    return root, dataset


def _train_step(model: torch.nn.Module, net: torch.nn.Module, opt: torch.optim.SGD, dev: torch.device, mode: str,
                batch_size: int, batches: Source, precision: str) -> TrainStep | WholeStep:
    """One SGD step as ``mode`` runs it (step.py): on a GPU the whole step as
    one CUDA graph, its batches made inside it where the data is resident."""
    aux_weight = getattr(model, "aux_weight", 0.0)  # GoogLeNet's auxiliary classifiers
    if mode == "graph":
        return WholeStep(model, opt, aux_weight, dev, batch_size, feed=batches.feed, precision=precision)
    return TrainStep(net, opt, aux_weight, dev, mode, precision=precision)


def _placement(device: str, compile, precision: str) -> tuple[torch.device, World, str]:
    """The device, the processes (one, or one of several under torchrun) and
    the step's mode (a bad compile or precision setting is reported before any work)."""
    check_precision(precision)
    dev = pick_device(device)
    world = join(dev)
    if dev.type == "cuda" and world.distributed:
        dev = torch.device("cuda", world.local_rank)
    return dev, world, pick_mode(compile, dev, world.distributed)


def _statistics(dataset, resize: int, world: World, workers: int, progress: bool) -> Stats:
    """The training set's mean image and RGB eigenvectors: rank 0 computes
    (or finds) them, the other ranks then read its cache."""
    if not world.main:
        world.barrier()
    stats = load_or_compute(dataset.train, resize, workers, progress)
    if world.main:
        world.barrier()
    return stats


def _optimizer_and_state(model: torch.nn.Module, plan: recipes.Recipe, dev: torch.device, world: World, ckpt: dict | None,
                         seed: int) -> tuple[torch.nn.Module, torch.optim.SGD, Schedule, TrainState]:
    """The model on its device (wrapped in DDP over several processes), SGD,
    the schedule and the state: fresh, or all four as ``ckpt`` left them."""
    o = plan.optim
    model = model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    sched = Schedule(opt, plan.schedule, o.lr, plan.network)
    if ckpt is None:
        state = TrainState()
        torch.manual_seed(seed + world.rank)  # dropout masks differ between ranks
    else:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["schedule"])
        state = TrainState.from_dict(ckpt)
        set_rng_state(ckpt["rng"][world.rank % len(ckpt["rng"])])
    if world.distributed:  # gradients averaged over the ranks; rank 0's weights to start
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    return model, opt, sched, state


def _say_plan(run: Run, state: TrainState) -> None:
    """The plan, before the first step (issue 16: what runs where, and how long it is)."""
    n, planned = run.epochs, run.epochs * run.steps_per_epoch
    tqdm.write(f"{run.prefix}{run.recipe.recipe} ({run.recipe.network}) on {run.root} ({len(run.dataset.train)} training,"
               f" {len(run.dataset.heldout)} held-out images), {run.dev}, {run.mode} step{_unusual(run)}, {run.batches.kind} batches"
               f"{f' ({run.batches.why})' if run.batches.why else ''}:"
               f" {n} epoch{'s' * (n != 1)} x {run.steps_per_epoch} step{'s' * (run.steps_per_epoch != 1)} of {run.recipe.optim.batch_size}"
               f"{f', stopping at step {run.total}' if run.total < planned else ''}"
               f"{f', from step {state.step}' if state.step else ''}, into {run.folder.path}")


def _unusual(run: Run) -> str:
    """The arithmetic, for the plan line, where it is not the device's own (bf16 on a GPU, float32 on a CPU)."""
    bf16 = uses_bf16(run.dev, run.precision)
    return "" if bf16 == (run.dev.type == "cuda") else f" in {'bf16' if bf16 else 'float32'}"


def run_epoch(run: Run, state: TrainState, stop: "StopRequest", bar: tqdm):
    """The epoch's steps from ``state.position`` on, yielding after each is
    issued and before its bookkeeping; it
    ends early at ``max_steps`` or when a stop is requested, and saves
    ``last.pt`` every ``checkpoint_minutes`` on the way."""
    run.net.train()
    sums = DeviceSums(run, state)
    saved = time.monotonic()
    for n in _steps(run, state):
        yield  # the step is issued; what follows reads what it did (a stacked step runs between the two)
        sums.images += n
        state.position += 1
        state.step += 1
        run.sched.after_step(state.step)
        bar.update(1)
        if state.step % LOG_EVERY == 0:
            sums.read()
            _show_progress(run, state, bar)
        due = time.monotonic() - saved > 60 * run.checkpoint_minutes and state.position < run.steps_per_epoch
        if run.world.distributed:  # every rank stops and saves at the same step: one exchange for both
            agreed = run.world.sum(torch.tensor([bool(stop), due], device=run.dev).int()).tolist()
            stop.requested, due = (bool(v) for v in agreed)
        if run.at_max_steps(state) or stop:
            break
        if due:
            sums.read()
            run.check_weights(state)
            save_last(run, state)
            saved = time.monotonic()
    sums.read()


def _steps(run: Run, state: TrainState):
    """Runs the epoch's steps from batch ``state.position`` on; yields each one's number of images."""
    feed = run.train_step.feed if run.mode == "graph" else None
    if feed is not None:  # the batches are made inside the step: nothing per step here
        feed.start(state.epoch, state.position)
        for b in range(state.position, run.steps_per_epoch):
            n = feed.size(b)
            run.train_step.next(n)
            yield n
        return
    dev, world = run.dev, run.world
    for batch in run.batches.train(state.epoch, state.position):
        warn_skipped(batch.skipped)
        n = len(batch.labels)
        if n or world.distributed:  # every rank joins every gradient exchange
            x = batch.images.to(dev, non_blocking=True)
            y = batch.labels.to(dev, non_blocking=True)
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            if world.distributed:  # the mean over the global batch: DDP averages over ranks, hence * world.size
                scale = world.size / world.sum(torch.tensor(float(n), device=dev)).clamp(min=1)
            else:
                scale = 1.0 / n
            run.train_step(x, y, scale)
        yield n


class DeviceSums:
    """The epoch's training loss and errors as the step leaves them: on the
    device (``train_step.totals``), added into ``state.sums`` with the images
    and the time only when ``read`` (each read waits for the device)."""

    def __init__(self, run: Run, state: TrainState):
        self.run, self.state = run, state
        self.totals = run.train_step.totals
        self.totals.zero_()
        self.images = 0  # this process's images since the last read
        self.since = time.perf_counter()

    def read(self) -> None:
        """Move the device-side sums (of all ranks) and the time since the last read into ``state.sums``."""
        run, sums = self.run, self.state.sums
        now = time.perf_counter()
        counts = torch.cat((self.totals, torch.tensor([self.images], dtype=torch.float64, device=run.dev)))
        loss, errors, seen = run.world.sum(counts).tolist()
        if not math.isfinite(loss):  # diverged: stop before anything of it is validated or saved
            raise run.diverged(self.state, f"the training loss is {loss}")
        if seen:
            run.sched.after_interval(100.0 * errors / seen)  # the end of a warm-up
        sums["seconds"] += now - self.since
        sums["loss"] += loss
        sums["errors"] += int(errors)
        sums["images"] += int(seen)
        self.totals.zero_()
        self.images, self.since = 0, now


def _show_progress(run: Run, state: TrainState, bar: tqdm) -> None:
    """The bar's loss and speed, TensorBoard's loss; once, early, a notice when the run would be long."""
    sums = state.sums
    if run.say_if_long and run.world.main:
        run.say_if_long = False
        per_step = (time.perf_counter() - run.started) / max(state.step - run.first_step, 1)
        _say_if_long(run.prefix, per_step * (run.total - state.step), run.recipe.recipe)
    mean_loss = sums["loss"] / max(sums["images"], 1)
    bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{sums['images'] / max(sums['seconds'], 1e-9):.0f}")
    if run.world.main:
        run.folder.add_scalar("step/train_loss", mean_loss, state.step)


def end_epoch(run: Run, state: TrainState, complete: bool) -> dict:
    """Validate, log one row, step the schedule and write the checkpoints;
    a ``complete`` epoch moves the state on to the next one. The row."""
    run.check_weights(state)
    started = time.perf_counter()
    val = evaluate_model(run.model, run.batches.test(), run.dev, progress=run.progress, world=run.world,
                         precision=run.precision)
    val_seconds = time.perf_counter() - started  # (the errors were read back: the device is done)
    sums = state.sums
    n = max(sums["images"], 1)
    row = {
        "epoch": state.epoch + 1,
        "step": state.step,
        "complete": complete,
        "train_loss": sums["loss"] / n,
        "train_error": 100.0 * sums["errors"] / n,
        "val_top1_error": val["top1_error"],
        "val_top5_error": val["top5_error"],
        "lr": run.sched.lr(),
        "images_per_s": sums["images"] / max(sums["seconds"], 1e-9),
        "epoch_time_s": sums["seconds"],  # the training steps'
        "val_time_s": val_seconds,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    # The row first, then the checkpoints: a run killed in between resumes
    # from the older last.pt, which drops rows after its step (RunFolder.open).
    if run.world.main:
        run.folder.append(row)
    if complete:
        run.sched.after_epoch(state.epoch + 1, val["top1_error"])  # e.g. divide by 10 when the validation error stops improving
        state.next_epoch()
    if val["top1_error"] < state.best:
        state.best = val["top1_error"]
        if run.world.main:
            ckpts.atomic_save(run.checkpoint(state) | {"val": val}, run.folder.best)
    save_last(run, state)
    if run.world.main:
        tqdm.write(
            f"{run.prefix}epoch {row['epoch']}{'' if complete else ' (stopped early)'}: train loss {row['train_loss']:.4f}"
            f" error {row['train_error']:.2f}% | val top-1 {row['val_top1_error']:.2f}% top-5 {row['val_top5_error']:.2f}%"
            f" | lr {row['lr']:.2g} | {row['images_per_s']:.0f} img/s"
        )
    return row


def save_last(run: Run, state: TrainState) -> None:
    """last.pt: everything a resumed run needs, at the current position (the
    caller has checked the weights)."""
    rng = run.world.gather(rng_state())  # every rank's, so that each resumes its own dropout stream
    if run.world.main:
        ckpts.atomic_save(run.checkpoint(state) | {"optimizer": run.opt.state_dict(), "schedule": run.sched.state_dict(),
                                                   "rng": rng}, run.folder.last)


def _plan(recipe: str, resume_ckpt: dict | None, overrides: dict, network: str | None) -> recipes.Recipe:
    """The resolved recipe: from the checkpoint when resuming, else from the recipe file."""
    if resume_ckpt is None:
        plan = recipes.resolve(recipe, network=network, **overrides)
        if network is not None:
            check_recipe(network, recipe)
        return plan
    plan = resume_ckpt["config"]
    if recipe != plan["recipe"]:
        raise UserError(f"the checkpoint was trained with recipe {plan['recipe']}, not {recipe}")
    if network is not None and network != plan["network"]:
        raise UserError(f"the checkpoint holds a {plan['network']}, not a {network}")
    for key, table in recipes.check_overrides(plan, plan["recipe"], overrides).items():
        if plan[table][key] != overrides[key] and key not in RESUMABLE:
            raise UserError(f"--resume continues the run as it was started: {key} is {plan[table][key]!r} in the"
                            f" checkpoint, not {overrides[key]!r}")
        plan[table][key] = overrides[key]
    return recipes.Recipe.from_dict(plan)


def _transforms(stats: Stats, data: recipes.DataTable) -> PaperTransforms:
    try:
        return PaperTransforms.from_recipe(stats, data.to_dict())
    except ValueError as e:
        raise UserError(str(e)) from None


def _init_from(model: torch.nn.Module, path, network: str) -> None:
    """Initialise ``model`` from a trained checkpoint (VGG Sec. 3.1: the deeper
    configurations start from a trained configuration A)."""
    if not hasattr(model, "init_from"):
        raise UserError(f"{network} cannot be initialised from another network's checkpoint")
    source = ckpts.load(path)
    try:
        model.init_from(source["model"])
    except (ValueError, KeyError) as e:
        raise UserError(f"cannot initialise {network} from {path}: {e}") from None


def rng_state() -> dict:
    """This process's random state (dropout draws from it)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _say_if_long(prefix: str, seconds: float, recipe: str) -> None:
    """Tell once, early, when a run on the CPU would take more than an hour."""
    if seconds > 3600:
        tqdm.write(f"{prefix}this run would take about {seconds / 3600:.0f} h on this CPU; the same network and pipeline"
                   f" at a demonstration's size, in minutes: ilsvrc train --recipe {recipe} --preset demo")


class StopRequest:
    """Turns the first SIGINT or SIGTERM into a request to stop after the
    current step (a second SIGINT interrupts at once). ``rounds``: runs take
    turns (together.py), and a signal counts from the next round of turns
    (``new_round``), so that every run stops after the same step."""

    def __init__(self, rounds: bool = False):
        self.requested = False
        self.rounds = rounds
        self._signalled = False
        self._old = {}
        self._depth = 0  # runs inside it: shared by runs taking turns, it is installed once

    def __bool__(self) -> bool:
        return self.requested

    def new_round(self) -> None:
        """A new round of turns: a signal received since the last one now counts."""
        self.requested = self._signalled

    def _handle(self, signum, frame):
        if self._signalled and signum == signal.SIGINT:  # the second Ctrl-C: stop at once, and only once
            self._restore()  # (atomic writes hold a Ctrl-C until the file is whole: raised inside torch.save it aborts)
            raise KeyboardInterrupt
        self._signalled = True
        self.requested = self.requested or not self.rounds
        tqdm.write("stopping after this step (Ctrl-C again to stop at once)")

    def __enter__(self):
        self._depth += 1
        if self._depth == 1 and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0:
            self._restore()
        return False

    def _restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}
