"""A training run's folder: what is written where, and who may write there.

    config.json    the resolved recipe, data and seed
    metrics.jsonl  one JSON object per epoch (and one where a run stopped early)
    tb/            TensorBoard event files
    last.pt        model, optimizer, schedule, position and random state
    best.pt        the model at its best validation top-1 error
    .lock          held while a process trains here

Every file is written atomically (``checkpoint.py``) or appended a whole line
at a time, so a run killed at any moment leaves a folder it can resume from.
"""

import json
from pathlib import Path

try:
    import fcntl  # POSIX: the folder's lock
except ImportError:
    fcntl = None

from . import checkpoint as ckpts
from .errors import UserError


class RunFolder:
    """The folder ``out`` of one run: its files' paths, and (once ``open``) its
    lock, config.json and logs. Only the main process opens it."""

    def __init__(self, out):
        self.path = Path(out)
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out {self.path} is a file, not a folder")
        self.last, self.best = self.path / "last.pt", self.path / "best.pt"
        self.metrics = self.path / "metrics.jsonl"
        self._lock = self._writer = None

    def last_checkpoint(self) -> dict:
        """What ``--resume`` continues from."""
        if not self.last.exists():
            raise UserError(f"nothing to resume: {self.last} does not exist")
        return ckpts.load(self.last)

    def check_unused(self) -> None:
        """A fresh run never writes over another."""
        if self.last.exists() or self.best.exists():
            raise UserError(f"{self.path} already holds a run; pass --resume to continue it, or choose another --out")

    def open(self, config: dict, resumed_step: int | None) -> None:
        """Lock the folder, drop metrics rows newer than the checkpoint being
        resumed (``resumed_step``), write config.json, start the TensorBoard log."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.path)  # before anything in the folder is written
        if resumed_step is not None:
            self._keep_rows_until(resumed_step)
        ckpts.atomic_write(self.path / "config.json", lambda f: f.write(json.dumps(config, indent=2, allow_nan=False).encode()))
        from torch.utils.tensorboard import SummaryWriter  # (slow to import: only where a run starts)

        self._writer = SummaryWriter(str(self.path / "tb"))

    def append(self, row: dict) -> None:
        """One metrics row, to metrics.jsonl and TensorBoard."""
        with open(self.metrics, "a") as f:
            f.write(json.dumps(row, allow_nan=False) + "\n")  # a NaN is not JSON: training stops before one gets here
            f.flush()
        for key in ("train_loss", "train_error", "val_top1_error", "val_top5_error", "lr", "images_per_s"):
            self._writer.add_scalar(f"epoch/{key}", row[key], row["step"])
        self._writer.flush()

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._lock is not None:
            self._lock.close()

    def _keep_rows_until(self, step: int) -> None:
        if not self.metrics.exists():
            return
        rows = [line for line in self.metrics.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        ckpts.atomic_write(self.metrics, lambda f: f.write("".join(r + "\n" for r in rows).encode()))


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
