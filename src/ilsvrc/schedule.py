"""The learning rate over a run, as each paper's recipe states it.

- ``plateau`` (AlexNet Sec. 5, VGG Sec. 3.1, ResNet Sec. 3.4): divided by 10
  when the validation error stops improving, a given number of times;
- ``steps`` (ResNet Sec. 4.2): multiplied by ``factor`` at fixed optimizer
  steps (``milestones``), the run ending at ``iterations``;
- ``exponential`` (GoogLeNet Sec. 6): multiplied by ``factor`` every
  ``every`` epochs ("decreasing the learning rate by 4% every 8 epochs").

An optional warm-up (ResNet Sec. 4.2, the 110-layer network) trains at
``warmup_lr`` until the training error is below ``warmup_until_error``
percent (or, where ``warmup_steps`` is set, until that many steps are done,
whichever comes first), then goes back to the schedule.

The learning rate is a function of the position (step, epoch) and of the
schedule's own state, which ``state_dict`` holds so that a resumed run
continues it exactly.
"""

import bisect
import math

import torch

from .recipes import ScheduleTable


def check(table: dict) -> None:
    """Raise UserError for a schedule table the trainer cannot follow."""
    ScheduleTable.from_dict(table)


class Schedule:
    """Sets the optimizer's learning rate from the recipe's [schedule] table."""

    def __init__(self, opt: torch.optim.Optimizer, table: ScheduleTable | dict, lr: float, network: str):
        table = table if isinstance(table, ScheduleTable) else ScheduleTable.from_dict(table)  # (checked)
        self.opt, self.table, self.base = opt, table, lr
        self.kind = table.kind
        self.warming = network in (table.warmup_models or []) and table.warmup_lr is not None
        self.reductions = 0  # plateau: divisions so far
        self.best = math.inf  # plateau: best validation error
        self.bad_epochs = 0  # plateau: epochs since the best
        self.epoch = 0
        self.step_count = 0
        self._applied = None  # the learning rate last written to the optimizer
        self._apply()

    def epochs(self, steps_per_epoch: int) -> int:
        """How many epochs the run lasts."""
        if self.kind == "steps":
            return math.ceil(self.table.iterations / steps_per_epoch)
        return self.table.epochs

    @property
    def iterations(self) -> int | None:
        """The optimizer step at which the run ends, if the schedule says."""
        return self.table.iterations if self.kind == "steps" else None

    def lr(self) -> float:
        t = self.table
        if self.warming:
            return t.warmup_lr
        if self.kind == "plateau":
            return self.base * t.factor ** self.reductions
        if self.kind == "steps":
            return self.base * t.factor ** bisect.bisect_right(t.milestones, self.step_count)
        return self.base * t.factor ** (self.epoch // t.every)

    def _apply(self) -> None:
        """Write the learning rate to the optimizer when it changes (a tensor
        learning rate is written in place: a kernel launch on a GPU)."""
        lr = self.lr()
        if lr != self._applied:
            set_lr(self.opt, lr)
            self._applied = lr

    def after_step(self, step: int) -> None:
        """Called after optimizer step number ``step`` (1-based)."""
        self.step_count = step
        if self.warming and self.table.warmup_steps and step >= self.table.warmup_steps:
            self.warming = False
        self._apply()  # writes only a changed rate

    def after_interval(self, train_error: float) -> None:
        """Called with the training error (percent) of the last few steps."""
        if self.warming and train_error < self.table.warmup_until_error:
            self.warming = False
            self._apply()

    def after_epoch(self, epoch: int, val_top1_error: float) -> None:
        """Called after each complete epoch (``epoch`` epochs done) with its validation error."""
        self.epoch = epoch
        if self.kind == "plateau" and not self.warming:
            if val_top1_error < self.best:
                self.best, self.bad_epochs = val_top1_error, 0
            else:
                self.bad_epochs += 1
                if self.bad_epochs > self.table.patience and self.reductions < self.table.max_reductions:
                    self.reductions += 1
                    self.bad_epochs = 0
        self._apply()

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("warming", "reductions", "best", "bad_epochs", "epoch", "step_count")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._applied = None
        self._apply()


def lr_as_tensors(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Make each group's learning rate a 0-d tensor on ``device`` in its
    parameters' dtype: a captured step reads it from there (``set_lr``
    writes it in place)."""
    for group in opt.param_groups:
        dtype = group["params"][0].dtype if group["params"] else torch.float32
        group["lr"] = torch.tensor(float(group["lr"]), dtype=dtype, device=device)


def lr_as_floats(opt: torch.optim.Optimizer) -> None:
    """Make each group's learning rate a plain float again (the eager and compiled steps)."""
    for group in opt.param_groups:
        group["lr"] = float(group["lr"])


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate: in place where it is a tensor (the
    captured step reads it from there)."""
    for group in opt.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
