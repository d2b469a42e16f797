"""A resolved recipe as frozen, typed tables, checked once where they are built.

``recipes.resolve`` builds a ``Recipe`` from the TOML file and the user's
overrides; every setting the trainer follows is checked here, in one place,
before any work starts (docs/architecture.md: a user error costs the user nothing). The
``[model]`` table stays a dict: its switches differ from family to family and
each model's constructor checks its own. ``to_dict`` is what config.json and
checkpoints store (plain JSON, readable without ilsvrc); ``Recipe.from_dict``
reads it back and checks it again.

The lists of choices (``CROPS``, ``MEANS``, ``TEST_CROPS``, ``SCHEDULES``)
live here too, so the command line offers exactly what a recipe accepts.
"""

import math
from dataclasses import asdict, dataclass, fields

from ..data.transforms import CROPS, MEANS, TEST_CROPS, check_settings
from ..errors import UserError

SCHEDULES = ("plateau", "steps", "exponential")
# The keys each kind of schedule needs (schedule.py says what they mean).
NEEDS = {"plateau": ("factor", "patience", "max_reductions", "epochs"), "steps": ("factor", "milestones", "iterations"),
         "exponential": ("factor", "every", "epochs")}


class _Table:
    """A recipe table: built from its dict (unknown and missing keys refused
    in one line), written back as the recipe file has it (a setting it does
    not have is left out)."""

    NAME = ""  # the table's name in the recipe file

    @classmethod
    def from_dict(cls, values: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"[{cls.NAME}] has no setting {', '.join(unknown)}")
        try:
            return cls(**values)
        except TypeError:  # a setting every recipe has is missing
            missing = sorted(f.name for f in fields(cls) if f.name not in values)
            raise UserError(f"[{cls.NAME}] needs {', '.join(missing)}") from None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class DataTable(_Table):
    """How images become the network's inputs (the ``[data]`` table; its
    keys are described in ``recipes/__init__.py``)."""

    NAME = "data"

    resize: int
    image_size: int
    crop: str
    mean: str
    flip: bool
    pca_lighting: float
    photometric: float
    test_resize: int
    test_crops: int
    test_scales: list
    scale: list | None = None  # crop = "scale": [S_min, S_max]
    area: list | None = None  # crop = "area": [min, max] fractions of the square
    aspect: list | None = None  # crop = "area": [min, max] aspect ratios
    padding: int | None = None  # crop = "pad": pixels on each side

    def __post_init__(self):
        try:
            check_settings(self.image_size, self.resize, self.mean, self.test_crops, crop=self.crop, scale=self.scale,
                           area=self.area, aspect=self.aspect, padding=self.padding or 0, photometric=self.photometric,
                           test_resize=self.test_resize)
        except ValueError as e:
            raise UserError(str(e)) from None
        if self.pca_lighting < 0:
            raise UserError(f"pca_lighting must be at least 0, not {self.pca_lighting}")


@dataclass(frozen=True)
class OptimTable(_Table):
    """Stochastic gradient descent's settings (the ``[optim]`` table)."""

    NAME = "optim"

    batch_size: int
    lr: float
    momentum: float
    weight_decay: float

    def __post_init__(self):
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise UserError(f"batch_size must be a positive whole number, not {self.batch_size!r}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise UserError(f"the learning rate must be a positive number, not {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise UserError(f"momentum must be in [0, 1), not {self.momentum!r}")
        if not self.weight_decay >= 0:
            raise UserError(f"weight_decay must be at least 0, not {self.weight_decay!r}")


@dataclass(frozen=True)
class ScheduleTable(_Table):
    """The learning rate over the run (the ``[schedule]`` table; ``schedule.py``
    follows it). Which keys a kind needs: ``NEEDS``."""

    NAME = "schedule"

    kind: str
    factor: float | None = None
    patience: int | None = None  # plateau
    max_reductions: int | None = None  # plateau
    epochs: int | None = None  # plateau, exponential
    every: int | None = None  # exponential
    milestones: list | None = None  # steps
    iterations: int | None = None  # steps
    warmup_lr: float | None = None
    warmup_until_error: float | None = None
    warmup_models: list | None = None
    warmup_steps: int | None = None  # the warm-up ends here at the latest, whatever the error (0: no limit)

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise UserError(f"unknown schedule kind {self.kind!r}; known kinds: {', '.join(SCHEDULES)}")
        missing = [k for k in NEEDS[self.kind] if getattr(self, k) is None]
        if missing:
            raise UserError(f"a {self.kind} schedule needs {', '.join(missing)}")
        length = "iterations" if self.kind == "steps" else "epochs"
        if not isinstance(getattr(self, length), int) or getattr(self, length) < 1:
            raise UserError(f"{length} must be a positive whole number, not {getattr(self, length)!r}")
        if not self.factor > 0:
            raise UserError(f"the schedule's factor must be a positive number, not {self.factor!r}")
        if self.warmup_lr is not None and self.warmup_until_error is None:
            raise UserError("a warm-up (warmup_lr) needs warmup_until_error")
        if self.warmup_steps is not None and not (isinstance(self.warmup_steps, int) and self.warmup_steps >= 0):
            raise UserError(f"warmup_steps must be a whole number, at least 0 (no limit), not {self.warmup_steps!r}")


@dataclass(frozen=True)
class Recipe:
    """One recipe with its overrides: the run's every training value."""

    recipe: str  # its name (the TOML file's)
    title: str  # the paper
    network: str  # the model trained
    model: dict  # the model's switches, as its builder takes them
    data: DataTable
    optim: OptimTable
    schedule: ScheduleTable
    classes: int | None = None  # the paper's dataset's classes, when not ImageNet's 1000

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        """Build and check a recipe from the nested dict of a recipe file (or of config.json)."""
        if not isinstance(d.get("network"), str):
            raise UserError(f"network must be a model name, not {d.get('network')!r}")
        return cls(recipe=d["recipe"], title=d.get("title", d["recipe"]), network=d["network"], model=dict(d["model"]),
                   data=DataTable.from_dict(d["data"]), optim=OptimTable.from_dict(d["optim"]),
                   schedule=ScheduleTable.from_dict(d["schedule"]), classes=d.get("classes"))

    def to_dict(self) -> dict:
        out = {"recipe": self.recipe, "title": self.title, "network": self.network, "model": dict(self.model),
               "data": self.data.to_dict(), "optim": self.optim.to_dict(), "schedule": self.schedule.to_dict()}
        return out if self.classes is None else out | {"classes": self.classes}


__all__ = ["CROPS", "MEANS", "NEEDS", "SCHEDULES", "TEST_CROPS", "DataTable", "OptimTable", "Recipe", "ScheduleTable"]
