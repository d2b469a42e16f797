"""Several training runs in one process, side by side on one device.

The papers' small networks leave most of a large GPU idle: a ResNet-20 step
at batch 128 is a few hundred small kernels that fill a fraction of an
H200's multiprocessors. ``train_together`` trains several runs at once: each
run is ``train.training`` (``train`` as a generator that yields after every
step), the runs take turns one step each, and on a GPU each run issues its
work on its own CUDA stream, so that one run's kernels (its captured step)
run beside the others' instead of after them.

Every run stays what it is alone: its own seed, data order and draws,
schedule (a plateau schedule per run), metrics, checkpoints, resume and run
directory. The one thing runs in one process would share, the process's
random number generators (dropout draws from them), is swapped in and out
at each turn, so a run trained together ends with the same weights, bit for
bit, as trained alone (``tests/test_together.py``). A resident dataset is
decoded and held once for all the runs that read it (``resident.shared``).

With ``stack=True``, runs of one network at the same place (seeds; a plain
network beside its residual twin) take their steps as one instead
(``stacked.py``: one compiled, captured step whose convolutions are grouped
over the runs), each stack taking its turn as one run does; each run keeps
its own loop, data, schedule, metrics and checkpoints, and its weights agree
with its weights alone to rounding rather than to the bit. Turns on streams
take any mix of networks (depths 20 to 110, dropout) and keep each run's
arithmetic exactly; stacks compile once for their runs and fill each kernel
with more work. Which fills the GPU better is for a measurement to say
(``benchmarks/together.py`` times both against the same runs one after
another); until one has, turns are the default. In either way the runs stop
after the same step when a Ctrl-C or SIGTERM comes (``StopRequest(rounds=True)``).

A run that fails (it diverges, its folder is in use) stops alone: the others
train on, and the failures are reported together at the end (a stacked run
dissolves its stack: the others go on, each with its own step). One Ctrl-C or
SIGTERM asks every run to stop after its current step and save its place.
"""

import contextlib
from pathlib import Path

import torch
from tqdm import tqdm

from .device import pick_device
from .errors import Interrupted, UserError
from .spread import Spread
from .stacked import StackedStep, stack_key
from .train import StopRequest, rng_state, set_rng_state, training


def train_together(jobs: list[dict], *, device: str = "auto", progress: bool = True, stack: bool = False) -> list[dict]:
    """Train the runs ``jobs`` (each a dict of ``train`` arguments: recipe,
    data, out, seed, overrides...) at once on ``device``; the last metrics row
    of each, in order. ``stack``: runs of one network at the same place take
    their steps as one (``stacked.py``) where they can; the others take
    turns. Raises ``UserError`` naming every run that failed after the others
    have ended, ``Interrupted`` if stopped by a signal."""
    dev = pick_device(device)
    if len({str(job.get("out")) for job in jobs}) < len(jobs):
        raise UserError("runs trained together need one --out each")
    allow_recompiles(len(jobs))
    stop = StopRequest(rounds=True)  # a Ctrl-C stops every run after the same step
    labels = [_label(job) for job in jobs]
    turns = _Turns([training(**{**job, "device": str(dev), "progress": False, "stop": stop, "label": label})
                    for job, label in zip(jobs, labels)], dev)
    bar = tqdm(desc=f"{len(jobs)} runs together", unit="step", disable=not progress)
    with stop:
        prepared = {i: turns.take(i) for i in list(turns.live)}  # each run's first turn: its (Run, TrainState)
        stacks = _stacks({i: p for i, p in prepared.items() if i in turns.live}) if stack else []
        if stack:
            tqdm.write(f"stacked: {'; '.join(' + '.join(labels[i] for i in m) for m, _ in stacks)}" if stacks else
                       "no runs stacked (a stack takes the whole step on resident data, --compile graph, and networks"
                       " without dropout): they take turns")
        for members, _ in stacks:  # a stack's runs issue their work on one stream, the stack's
            for i in members:
                turns.streams[i] = turns.streams[members[0]]
        while turns.live:
            stop.new_round()
            for i in list(turns.live):
                turns.take(i)
                bar.update(1)
            for members, stacked in stacks:
                turns.stacked_step(members, stacked, labels)
    bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    failed = turns.failed
    if any(isinstance(e, Interrupted) for e in failed.values()):
        raise Interrupted("interrupted; each run's last.pt holds its place, continue them with --resume")
    if failed:
        raise UserError("; ".join(f"{labels[i]}: {e}" for i, e in failed.items()))
    return turns.rows


class _Turns:
    """The runs' generators (``train.training``) and what each turn needs:
    the run's stream and random state; which runs are live, ended (their
    last rows) or failed."""

    def __init__(self, runs: list, dev: torch.device):
        self.runs = runs
        self.streams = [torch.cuda.Stream(dev) if dev.type == "cuda" else None for _ in runs]
        self.states: list[dict | None] = [None] * len(runs)  # each run's random state between its turns
        self.rows: list[dict | None] = [None] * len(runs)
        self.failed: dict[int, Exception] = {}
        self.live = list(range(len(runs)))

    def take(self, i: int, action=next):
        """Run ``i``'s turn (``action`` on its generator): what it yields;
        its end or failure is recorded."""
        try:
            with self.turn(i):
                return action(self.runs[i])
        except StopIteration as done:
            self.rows[i] = done.value
            self.live.remove(i)
        except (UserError, Interrupted) as e:
            self.failed[i] = e
            self.live.remove(i)

    @contextlib.contextmanager
    def turn(self, i: int):
        """Run ``i``'s turn: under its own random state, its work issued on
        its stream (``torch.cuda.stream(None)``, off a GPU, does nothing)."""
        if self.states[i] is not None:
            set_rng_state(self.states[i])
        try:
            with torch.cuda.stream(self.streams[i]):
                yield
        finally:
            self.states[i] = rng_state()

    def stacked_step(self, members: list[int], stacked: StackedStep, labels: list[str]) -> None:
        """The step the stack's runs asked for in this round; if a run of the
        stack ended or failed instead, the stack dissolves: the others take
        this step, and the rest, each with its own whole step. ``labels``:
        every run's name."""
        if not stacked.asked:
            return
        if stacked.ready:
            with torch.cuda.stream(self.streams[members[0]]):
                stacked.take()
            return
        gone = ", ".join(labels[i] for i in members if i not in self.live)
        asked = stacked.dissolve()
        tqdm.write(f"{', '.join(labels[members[k]] for k in asked)}: train on alone ({gone}, stacked with them, ended)")
        for k, n in asked.items():
            with self.turn(members[k]):
                stacked.steps[k].next(n)


def _stacks(prepared: dict) -> list[tuple[list[int], StackedStep]]:
    """Stacks of the prepared runs ``{run: (Run, TrainState)}`` that can take
    their steps as one: the same network's layers, batches and length, at
    the same place. Each stacked run's loop gets its ``StackMember``."""
    groups: dict[tuple, list[int]] = {}
    for i, (run, state) in prepared.items():
        key = stack_key(run.train_step)
        if key is not None and run.until_top1_error is None and run.until_train_error is None:  # (stops alone)
            place = (run.recipe.data.image_size, run.steps_per_epoch, run.total, state.epoch, state.position)
            groups.setdefault((key, place), []).append(i)
    stacks = []
    for members in groups.values():
        if len(members) > 1:
            try:
                stacked = StackedStep([prepared[i][0].train_step for i in members])
            except ValueError:  # e.g. a plain network beside one with projection shortcuts: they take turns
                continue
            for i, member in zip(members, stacked.members):
                prepared[i][0].train_step = member
            stacks.append((members, stacked))
    return stacks


def _label(job: dict) -> str:
    """A run's name in messages: its folder's."""
    return Path(job.get("out", "run")).name


def allow_recompiles(runs: int) -> None:
    """Each run's compiled step is its own entry in torch.compile's cache (the
    same code, other tensors): let the cache hold them all instead of falling
    back to eager after the eighth (its default limit)."""
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"  # torch < 2.6: cache_size_limit
    setattr(cfg, name, max(getattr(cfg, name), 8 * runs))


def train_runs(runs: int, out, *, seed: int = 0, device: str = "auto", progress: bool = True, stack: bool = False,
               **job) -> dict:
    """``runs`` runs of one recipe that differ only in their seed (``seed``,
    ``seed + 1``, ...), trained together into ``out/seed<N>`` (``stack``: as
    one stacked step, where they can be); their last rows and, for each
    figure of the last row, its ``Spread`` over the runs:
    ``{"runs": [row, ...], "spread": {"val_top1_error": Spread, ...}}``."""
    if not isinstance(runs, int) or runs < 1:
        raise UserError(f"--runs must be a positive whole number, not {runs!r}")
    out = Path(out)
    jobs = [{**job, "seed": seed + k, "out": out / f"seed{seed + k}"} for k in range(runs)]
    if job.get("resume"):  # each run that has started goes on; one that has not starts
        jobs = [{**j, "resume": (j["out"] / "last.pt").exists()} for j in jobs]
    rows = train_together(jobs, device=device, progress=progress, stack=stack)
    done = [r for r in rows if r]
    figures = ("train_loss", "train_error", "val_top1_error", "val_top5_error")
    return {"runs": rows, "spread": {k: Spread([r[k] for r in done]) for k in figures} if done else {}}
