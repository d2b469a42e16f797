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

Why turns on streams rather than stacking the runs into one wider network
(grouped convolutions, ``torch.func`` over stacked weights): any mix of
networks runs together (plain beside residual, depths 20 to 110, seeds), the
arithmetic of each run is the arithmetic it has alone, and nothing of
checkpoints or resume changes. Whether stacking same-shape runs would fill
the GPU better for the smallest networks is for a measurement to say
(``benchmarks/together.py`` compares runs together with the same runs one
after another).

A run that fails (it diverges, its folder is in use) stops alone: the others
train on, and the failures are reported together at the end. One Ctrl-C or
SIGTERM asks every run to stop after its current step and save its place.
"""

import contextlib
from pathlib import Path

import torch
from tqdm import tqdm

from .device import pick_device
from .errors import Interrupted, UserError
from .spread import Spread
from .train import StopRequest, rng_state, set_rng_state, training


def train_together(jobs: list[dict], *, device: str = "auto", progress: bool = True) -> list[dict]:
    """Train the runs ``jobs`` (each a dict of ``train`` arguments: recipe,
    data, out, seed, overrides...) at once on ``device``; the last metrics row
    of each, in order. Raises ``UserError`` naming every run that failed
    after the others have ended, ``Interrupted`` if stopped by a signal."""
    dev = pick_device(device)
    if len({str(job.get("out")) for job in jobs}) < len(jobs):
        raise UserError("runs trained together need one --out each")
    _allow_recompiles(len(jobs))
    stop = StopRequest()
    runs = [training(**{**job, "device": str(dev), "progress": False, "stop": stop, "label": _label(job)}) for job in jobs]
    streams = [torch.cuda.Stream(dev) if dev.type == "cuda" else None for _ in jobs]
    states: list[dict | None] = [None] * len(jobs)  # each run's random state between its turns
    rows: list[dict | None] = [None] * len(jobs)
    failed: dict[int, Exception] = {}
    live = list(range(len(jobs)))
    bar = tqdm(desc=f"{len(jobs)} runs together", unit="step", disable=not progress)
    with stop:
        while live:
            for i in list(live):
                try:
                    with _turn(states, i), (torch.cuda.stream(streams[i]) if streams[i] else contextlib.nullcontext()):
                        next(runs[i])
                    bar.update(1)
                except StopIteration as done:
                    rows[i] = done.value
                    live.remove(i)
                except (UserError, Interrupted) as e:
                    failed[i] = e
                    live.remove(i)
    bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    if any(isinstance(e, Interrupted) for e in failed.values()):
        raise Interrupted("interrupted; each run's last.pt holds its place, continue them with --resume")
    if failed:
        raise UserError("; ".join(f"{_label(jobs[i])}: {e}" for i, e in failed.items()))
    return rows


@contextlib.contextmanager
def _turn(states: list, i: int):
    """Run ``i``'s turn under its own random state."""
    if states[i] is not None:
        set_rng_state(states[i])
    try:
        yield
    finally:
        states[i] = rng_state()


def _label(job: dict) -> str:
    """A run's name in messages: its folder's."""
    return Path(job.get("out", "run")).name


def _allow_recompiles(runs: int) -> None:
    """Each run's compiled step is its own entry in torch.compile's cache (the
    same code, other tensors): let the cache hold them all instead of falling
    back to eager after the eighth (its default limit)."""
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"  # torch < 2.6: cache_size_limit
    setattr(cfg, name, max(getattr(cfg, name), 8 * runs))


def train_runs(runs: int, out, *, seed: int = 0, device: str = "auto", progress: bool = True, **job) -> dict:
    """``runs`` runs of one recipe that differ only in their seed (``seed``,
    ``seed + 1``, ...), trained together into ``out/seed<N>``; their last
    rows and, for each figure of the last row, its ``Spread`` over the runs:
    ``{"runs": [row, ...], "spread": {"val_top1_error": Spread, ...}}``."""
    if not isinstance(runs, int) or runs < 1:
        raise UserError(f"--runs must be a positive whole number, not {runs!r}")
    out = Path(out)
    jobs = [{**job, "seed": seed + k, "out": out / f"seed{seed + k}"} for k in range(runs)]
    if job.get("resume"):  # each run that has started goes on; one that has not starts
        jobs = [{**j, "resume": (j["out"] / "last.pt").exists()} for j in jobs]
    rows = train_together(jobs, device=device, progress=progress)
    done = [r for r in rows if r]
    figures = ("train_loss", "train_error", "val_top1_error", "val_top5_error")
    return {"runs": rows, "spread": {k: Spread([r[k] for r in done]) for k in figures} if done else {}}
