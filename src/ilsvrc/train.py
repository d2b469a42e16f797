"""Training, as Section 5 of the AlexNet paper describes it, for every recipe.

Stochastic gradient descent with momentum and weight decay on batches of the
paper's augmented images; the learning rate follows the recipe's schedule
(``schedule.py``: divided by 10 when the validation error stops improving,
at fixed steps, or every few epochs). A network with auxiliary classifiers
(GoogLeNet) returns their outputs too in training mode, and their losses are
added with the model's ``aux_weight``. Each epoch appends one row to ``metrics.jsonl`` and to
the TensorBoard log in ``tb/``, and writes ``last.pt`` (everything needed to
go on) and, when the validation top-1 error is the best so far, ``best.pt``.
``resume=True`` continues from ``last.pt`` exactly where the run stopped: the
same batches, the same dropout masks, the same weights at the end.

Run directory::

    config.json    the resolved recipe, data and seed
    metrics.jsonl  one JSON object per epoch (and one where a run stopped early)
    tb/            TensorBoard event files
    last.pt        model, optimizer, schedule, position and RNG state
    best.pt        the model at its best validation top-1 error
"""

import json
import math
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm import tqdm

try:
    import fcntl  # POSIX: the run folder's lock
except ImportError:
    fcntl = None

from . import checkpoint as ckpts
from . import recipes
from .data.datasets import open_dataset
from .data.default import default_data, find
from .data.images import warn_skipped
from .data.sources import KINDS, source
from .data.stats import Stats, load_or_compute
from .data.transforms import TEST_CROPS, PaperTransforms
from .device import default_workers, pick_device
from .distributed import join, leave
from .errors import Diverged, Interrupted, UserError
from .evaluate import evaluate_model
from .models import build, check_recipe
from .schedule import Schedule
from .schedule import check as check_schedule
from .step import TrainStep, WholeStep, pick_mode

# Settings that may change when a run is resumed: how long it goes on.
RESUMABLE = {"epochs", "iterations"}
LOG_EVERY = 10  # steps between progress-bar and TensorBoard updates (each one syncs with the device)


def _plan(recipe: str, resume_ckpt: dict | None, overrides: dict, network: str | None) -> dict:
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
    for key, value in overrides.items():
        if value is None:
            continue
        table = next((t for t in recipes.TABLES if key in plan[t]), None)
        if table is None:
            raise UserError(f"recipe {plan['recipe']} has no setting {key}")
        recipes.check_type(key, plan[table][key], value)
        if plan[table][key] != value and key not in RESUMABLE:
            raise UserError(
                f"--resume continues the run as it was started: {key} is {plan[table][key]!r} in the checkpoint, not {value!r}"
            )
        plan[table][key] = value
    return plan


def _validate(plan: dict, num_classes: int) -> torch.nn.Module:
    """Build the model and check the data settings before anything is written."""
    d = plan["data"]
    if d["test_crops"] not in TEST_CROPS:  # checked before the statistics pass; the rest with the transforms
        raise UserError(f"test crops must be one of {TEST_CROPS}, not {d['test_crops']}")
    check_schedule(plan["schedule"])
    bs = plan["optim"]["batch_size"]
    if not isinstance(bs, int) or bs < 1:
        raise UserError(f"batch_size must be a positive whole number, not {bs!r}")
    lr = plan["optim"]["lr"]  # a number: recipes.check_type saw to that
    if not math.isfinite(lr) or lr <= 0:
        raise UserError(f"the learning rate must be a positive number, not {lr!r}")
    return build(plan["network"], num_classes, d["image_size"], **plan["model"])


def _transforms(stats: Stats, data: dict) -> PaperTransforms:
    try:
        return PaperTransforms.from_recipe(stats, data)
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


def _append_row(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row, allow_nan=False) + "\n")  # a NaN is not JSON: it stops the run instead (fold)
        f.flush()


def _keep_rows_until(path: Path, step: int) -> None:
    """Drop metrics rows written after the checkpoint being resumed from."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    ckpts.atomic_write(path, lambda f: f.write("".join(r + "\n" for r in rows).encode()))


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
    ("eager", "default", "graph"). ``until_top1_error``: stop after the
    first validation whose top-1 error (percent) is at most this. ``model``:
    another network of the recipe than its default (``resnet-110`` for
    ``resnet-cifar``). ``init_from``: a checkpoint whose weights start the
    model (VGG's deeper configurations from a trained A). Returns the last
    metrics row. The arguments are ``training``'s.
    """
    steps = training(*args, **kwargs)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def training(
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
    until_top1_error: float | None = None,
    model: str | None = None,
    init_from=None,
    stop=None,
    label: str | None = None,
    preset: str | None = None,
    **overrides,
):
    """``train`` one step at a time: a generator that yields after each
    optimizer step and returns the last metrics row (``StopIteration.value``),
    so that several runs can take turns in one process (``together.py``).
    ``stop``: a ``StopRequest`` shared by such runs (default: the run's own),
    which one Ctrl-C or SIGTERM sets for all of them; ``label``: the run's
    name before its lines. ``preset``: "demo", the recipe's ``[demo]``
    values (a run of minutes on a CPU) under the given overrides."""
    out = Path(out)
    last_path, best_path, metrics_path = out / "last.pt", out / "best.pt", out / "metrics.jsonl"
    prefix = f"{label}: " if label else ""  # before each line the run prints

    # Everything is checked before anything is written (DESIGN.md: a user
    # error leaves the run directory as it was).
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if resume:
        if not last_path.exists():
            raise UserError(f"nothing to resume: {last_path} does not exist")
        ckpt = ckpts.load(last_path)
    else:
        ckpt = None
    if data_loader not in KINDS:
        raise UserError(f"--loader must be one of {', '.join(KINDS)}, not {data_loader!r}")
    if max_steps is not None and max_steps < 1:
        raise UserError(f"--max-steps must be positive, not {max_steps}")
    if preset is not None:
        overrides = recipes.preset(recipe, preset) | {k: v for k, v in overrides.items() if v is not None}
    plan = _plan(recipe, ckpt, overrides, model)
    if ckpt is not None:
        seed = ckpt["seed"]
        data = data or ckpt["data_root"]
    root = find(data) if data else default_data()  # a dataset's name or a path
    dataset = open_dataset(root)
    if ckpt is None and (last_path.exists() or best_path.exists()):  # after the data: a bad --data is the news
        raise UserError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    if ckpt is not None and dataset.classes != ckpt["classes"]:
        raise UserError(f"{root} has other classes than the checkpoint in {out}")
    torch.manual_seed(seed)  # the initial weights (Sec. 5) follow the seed
    net_name = plan["network"]
    model = _validate(plan, len(dataset.classes))
    aux_weight = getattr(model, "aux_weight", 0.0)
    dev = pick_device(device)
    world = join(dev)  # one process, or one of several under torchrun
    if dev.type == "cuda" and world.distributed:
        dev = torch.device("cuda", world.local_rank)
    main = world.main
    progress = progress and main
    mode = pick_mode(compile, dev, world.distributed)  # a bad compile setting is reported before any work
    workers = default_workers(workers)
    d, o, s = plan["data"], plan["optim"], plan["schedule"]
    bs = o["batch_size"]  # the global batch: each rank takes every world.size-th image of it
    if bs < world.size:
        raise UserError(f"the batch size {bs} is smaller than the number of processes {world.size}")

    if ckpt:
        stats = Stats.from_dict(ckpt["stats"])
    else:  # rank 0 computes (or finds) the statistics, the others then read its cache
        if not main:
            world.barrier()
        stats = load_or_compute(dataset.train, d["resize"], workers, progress)
        if main:
            world.barrier()
    transforms = _transforms(stats, d)
    if init_from is not None and ckpt is None:
        _init_from(model, init_from, net_name)

    model = model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    opt = torch.optim.SGD(model.parameters(), lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
    sched = Schedule(opt, s, o["lr"], net_name)
    steps_per_epoch = math.ceil(len(dataset.train) / bs)
    epochs = sched.epochs(steps_per_epoch)
    if sched.iterations is not None:  # the schedule says where the run ends (ResNet Sec. 4.2: 64k steps)
        max_steps = sched.iterations if max_steps is None else min(max_steps, sched.iterations)
    epoch, position, step, best = 0, 0, 0, math.inf
    sums = _zero_sums()
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["schedule"])
        epoch, position, step, best, sums = ckpt["epoch"], ckpt["batch"], ckpt["step"], ckpt["best_top1"], ckpt["sums"]
        set_rng_state(ckpt["rng"][world.rank % len(ckpt["rng"])])
    else:
        torch.manual_seed(seed + world.rank)  # dropout masks differ between ranks
    net = model
    if world.distributed:  # gradients averaged over the ranks; rank 0's weights to start
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    try:
        batches = source(data_loader, dataset, transforms, dev, bs, seed=seed, test_crops=d["test_crops"],
                         workers=workers, progress=progress, rank=world.rank, world=world.size)
    except ValueError as e:
        raise UserError(str(e)) from None
    # on a GPU the whole step as one CUDA graph, its batches made inside it where the data is resident (step.py)
    if mode == "graph":
        train_step = WholeStep(model, opt, aux_weight, dev, bs, feed=batches.feed)
    else:
        train_step = TrainStep(net, opt, aux_weight, dev, mode)
    feed = train_step.feed if mode == "graph" else None

    def take_steps(epoch: int, position: int):
        """Runs the epoch's steps from batch ``position`` on; yields each one's number of images."""
        if feed is not None:  # the batches are made inside the step: nothing per step here
            feed.start(epoch, position)
            for b in range(position, steps_per_epoch):
                n = feed.size(b)
                train_step.next(n)
                yield n
            return
        for batch in batches.train(epoch, position):
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
                train_step(x, y, scale)
            yield n

    writer = lock = None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        lock = _lock(out)  # before anything in the folder is written
        if ckpt is not None:
            _keep_rows_until(metrics_path, step)
        config = {"recipe": plan, "data_root": str(root.resolve()), "seed": seed, "classes": dataset.classes,
                  "processes": world.size, "loader": batches.kind}
        ckpts.atomic_write(out / "config.json", lambda f: f.write(json.dumps(config, indent=2, allow_nan=False).encode()))
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))

    def diverged(what: str) -> Diverged:
        kept = f"the last good checkpoint is {last_path}" if last_path.exists() else "no checkpoint was written"
        return Diverged(f"training diverged by step {step}: {what} at learning rate {sched.lr():g}; {kept}; "
                        "lower the learning rate")

    def check_weights() -> None:
        """Nothing of a diverged run is validated or saved: the loss read last
        can be finite while the update after it made the weights NaN."""
        if (key := ckpts.nonfinite(model.state_dict())) is not None:
            raise diverged(f"{key} holds NaN or infinite values")

    def save_last(complete: bool) -> None:
        """last.pt: everything a resumed run needs, at the current position."""
        check_weights()
        rng = world.gather(rng_state())  # every rank's, so that each resumes its own dropout stream
        if main:
            ckpts.atomic_save(_state(complete) | {"optimizer": opt.state_dict(), "schedule": sched.state_dict(),
                                                  "best_top1": best, "rng": rng}, last_path)

    def _state(complete: bool) -> dict:
        return {
            "format": 1, "config": plan, "data_root": str(root.resolve()), "seed": seed, "classes": dataset.classes,
            "stats": stats.to_dict(), "model": model.state_dict(),
            "epoch": epoch + 1 if complete else epoch, "batch": 0 if complete else position, "step": step,
            "sums": _zero_sums() if complete else dict(sums),
        }

    def finish_epoch(complete: bool) -> dict:
        """Validate, log one row, step the schedule and write checkpoints."""
        nonlocal best
        check_weights()
        val = evaluate_model(model, batches.test(), dev, progress=progress, world=world)
        n = max(sums["images"], 1)
        row = {
            "epoch": epoch + 1,
            "step": step,
            "complete": complete,
            "train_loss": sums["loss"] / n,
            "train_error": 100.0 * sums["errors"] / n,
            "val_top1_error": val["top1_error"],
            "val_top5_error": val["top5_error"],
            "lr": sched.lr(),
            "images_per_s": sums["images"] / max(sums["seconds"], 1e-9),
            "epoch_time_s": sums["seconds"],
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        # The row first, then the checkpoints: a run killed in between resumes
        # from the older last.pt, which drops rows after its step (_keep_rows_until).
        if main:
            _append_row(metrics_path, row)
            for key in ("train_loss", "train_error", "val_top1_error", "val_top5_error", "lr", "images_per_s"):
                writer.add_scalar(f"epoch/{key}", row[key], step)
            writer.flush()
        if complete:
            sched.after_epoch(epoch + 1, val["top1_error"])  # e.g. divide by 10 when the validation error stops improving
        if val["top1_error"] < best:
            best = val["top1_error"]
            if main:
                ckpts.atomic_save(_state(complete) | {"val": val}, best_path)
        save_last(complete)
        if main:
            tqdm.write(
                f"{prefix}epoch {row['epoch']}{'' if complete else ' (stopped early)'}: train loss {row['train_loss']:.4f}"
                f" error {row['train_error']:.2f}% | val top-1 {row['val_top1_error']:.2f}% top-5 {row['val_top5_error']:.2f}%"
                f" | lr {row['lr']:.2g} | {row['images_per_s']:.0f} img/s"
            )
        return row

    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    if main:  # the plan, before the first step (issue 16: what runs where, and how long it is)
        tqdm.write(f"{prefix}{plan['recipe']} ({net_name}) on {root} ({len(dataset.train)} training, {len(dataset.heldout)}"
                   f" held-out images), {dev}, {mode} step, {batches.kind} batches: {epochs} epoch{'s' * (epochs != 1)} x {steps_per_epoch}"
                   f" steps of {bs}{f', stopping at step {total}' if total < epochs * steps_per_epoch else ''}"
                   f"{f', from step {step}' if step else ''}, into {out}")
    row: dict = {}
    stop = StopRequest() if stop is None else stop  # (a StopRequest is falsy until it is set)
    last_save = time.monotonic()
    # one bar for the whole run: its time left is the run's (the epoch is in its description)
    bar = tqdm(total=total, initial=step, unit="step", disable=not progress, leave=False)
    first_step, started = step, time.perf_counter()
    try:
        with stop:
            while epoch < epochs and (max_steps is None or step < max_steps) and not stop:
                net.train()
                bar.set_description(f"epoch {epoch + 1}/{epochs}")
                # Loss and errors stay on the device; they are read every LOG_EVERY steps.
                totals = train_step.totals
                totals.zero_()
                images = 0  # this process's images since the last fold
                tick = time.perf_counter()

                def fold() -> None:
                    """Move the device-side sums (of all ranks) and the elapsed time into ``sums``."""
                    nonlocal tick, images
                    now = time.perf_counter()
                    counts = torch.cat((totals, torch.tensor([images], dtype=torch.float64, device=dev)))
                    loss, errors, seen = world.sum(counts).tolist()
                    if not math.isfinite(loss):  # diverged: stop before anything of it is validated or saved
                        raise diverged(f"the training loss is {loss}")
                    if seen:
                        sched.after_interval(100.0 * errors / seen)  # the end of a warm-up
                    sums["seconds"] += now - tick
                    sums["loss"] += loss
                    sums["errors"] += int(errors)
                    sums["images"] += int(seen)
                    totals.zero_()
                    images, tick = 0, now

                for n in take_steps(epoch, position):
                    images += n
                    position += 1
                    step += 1
                    sched.after_step(step)
                    bar.update(1)
                    if step % LOG_EVERY == 0:
                        fold()
                        if step - first_step == LOG_EVERY and dev.type == "cpu" and main and preset is None:
                            _say_if_long(prefix, (time.perf_counter() - started) / LOG_EVERY * (total - step), recipe)
                        mean_loss = sums["loss"] / max(sums["images"], 1)
                        bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{sums['images'] / max(sums['seconds'], 1e-9):.0f}")
                        if main:
                            writer.add_scalar("step/train_loss", mean_loss, step)
                    due = time.monotonic() - last_save > 60 * checkpoint_minutes and position < steps_per_epoch
                    if world.distributed:  # every rank stops and saves at the same step: one exchange for both
                        stop.requested, due = (bool(v) for v in world.sum(torch.tensor([bool(stop), due], device=dev).int()).tolist())
                    if (max_steps is not None and step >= max_steps) or stop:
                        break
                    if due:
                        fold()
                        save_last(complete=False)
                        last_save = time.monotonic()
                    yield
                fold()
                complete = position >= steps_per_epoch
                if stop and not complete:  # interrupted: keep the place, skip validation
                    save_last(complete=False)
                    break
                row = finish_epoch(complete)
                last_save = time.monotonic()
                if complete:
                    epoch, position = epoch + 1, 0
                    sums = _zero_sums()
                if until_top1_error is not None and row["val_top1_error"] <= until_top1_error:
                    break  # the target is reached (benchmarks/time_to_accuracy.py)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if lock is not None:
            lock.close()
        leave(world)
    if stop:
        raise Interrupted(f"interrupted at step {step}; {last_path} holds the run, continue it with --resume")
    return row


def _say_if_long(prefix: str, seconds: float, recipe: str) -> None:
    """Tell once, early, when a run on the CPU would take more than an hour."""
    if seconds > 3600:
        tqdm.write(f"{prefix}this run would take about {seconds / 3600:.0f} h on this CPU; the same network and pipeline"
                   f" at a demonstration's size, in minutes: ilsvrc train --recipe {recipe} --preset demo")


def _lock(out: Path):
    """An exclusive lock on run folder ``out`` while this process trains in
    it (``out/.lock``, released when the file closes, also when the process
    dies): a second ``train`` into the same folder, a fresh run or a
    ``--resume`` while the first still runs, is refused instead of mixing its
    rows and checkpoints into the first's. (Without ``fcntl``: no lock.)"""
    f = open(out / ".lock", "a")
    if fcntl is not None:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise UserError(f"another ilsvrc train is writing to {out}; wait for it to end, or choose another --out") from None
    return f


def _zero_sums() -> dict:
    return {"loss": 0.0, "errors": 0, "images": 0, "seconds": 0.0}


class StopRequest:
    """Turns the first SIGINT or SIGTERM into a request to stop after the
    current step (a second SIGINT interrupts at once)."""

    def __init__(self):
        self.requested = False
        self._old = {}
        self._depth = 0  # runs inside it: shared by runs taking turns, it is installed once

    def __bool__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:  # the second Ctrl-C: stop at once, and only once
            self._restore()  # (atomic writes hold a Ctrl-C until the file is whole: raised inside torch.save it aborts)
            raise KeyboardInterrupt
        self.requested = True
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
