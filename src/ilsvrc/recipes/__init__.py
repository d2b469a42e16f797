"""Recipes: each paper's training values as data, one TOML file per recipe.

Each value in a recipe file says which section of which paper it comes from
(or "ours", with the reason, where the paper is silent). ``load(name)``
returns the recipe file as nested dicts, ``resolve(name, **overrides)`` the
typed, checked ``Recipe`` a run follows (``tables.py``); ``names()`` lists them.

The format (``alexnet.toml`` is the example to copy):

top level  ``title`` (the paper), ``network`` (the registry name of the model
           trained by default; ``--model`` picks another of the same recipe),
           optionally ``classes`` (the classes of the paper's dataset when
           not ImageNet's 1000: parameter counts are given for it).
[model]    the paper value of every switch the family's builder takes.
[data]     ``resize``: side of the stored square (shorter side rescaled to it,
           central square kept; dataset statistics at this size);
           ``image_size``: the network input side;
           ``crop``: how a training view is cut from the stored square:
             "random": a random image_size patch (AlexNet);
             "scale": the square rescaled to a side S drawn uniformly from
               the integers in ``scale = [S_min, S_max]``, then a random
               image_size patch (VGG Sec. 3.1, ResNet Sec. 3.4); S_max <= resize;
             "area": a patch covering a fraction of the square's area drawn
               from ``area = [min, max]`` with aspect ratio from
               ``aspect = [min, max]`` (log-uniform), rescaled to image_size
               (GoogLeNet Sec. 6);
             "pad": the square padded with ``padding`` zero pixels on each
               side (after mean subtraction), then a random image_size patch
               (ResNet Sec. 4.2, CIFAR-10);
           ``mean``: "image" (per-pixel mean) or "channel" (mean RGB);
           ``flip``: random horizontal reflections;
           ``pca_lighting``: std of AlexNet's PCA lighting draws (0 = off);
           ``photometric``: strength p of random brightness, contrast and
             saturation changes, each a factor in [1 - p, 1 + p] (0 = off);
           ``test_resize``: side the stored square is rescaled to before
             the centre or ten test crops are cut;
           ``test_crops``: 1 or 10, the views validated during training;
           ``test_scales``: the test scales Q of dense evaluation ([] = test_resize).
[optim]    ``batch_size``, ``lr``, ``momentum``, ``weight_decay`` (SGD).
[schedule] ``kind``: "plateau" (``factor``, ``patience``, ``max_reductions``,
           ``epochs``: divide by 1/factor when the validation error stops
           improving), "steps" (``factor``, ``milestones`` and ``iterations``
           in optimizer steps: divide at each milestone, stop at
           ``iterations``), "exponential" (``factor``, ``every``, ``epochs``:
           multiply by factor every ``every`` epochs). Optional warm-up:
           ``warmup_lr`` until the training error (percent) is below
           ``warmup_until_error``, for the models in ``warmup_models``;
           ``warmup_steps`` ends it after that many steps at the latest.
"""

import copy
import sys
from functools import cache
from importlib import resources

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..errors import UserError
from .tables import CROPS, MEANS, SCHEDULES, TEST_CROPS, DataTable, OptimTable, Recipe, ScheduleTable  # noqa: F401


def toml_names(package: str, suffix: str = ".toml") -> list[str]:
    """The TOML files of ``package`` (recipes ``NAME.toml``, experiment plans
    ``NAME.plan.toml``), by name without ``suffix``."""
    return sorted(p.name.removesuffix(suffix) for p in resources.files(package).iterdir() if p.name.endswith(suffix))


@cache
def read_toml(package: str, name: str, suffix: str = ".toml") -> dict:
    """``package``'s file ``name`` + ``suffix``, parsed once (callers copy before changing it)."""
    return tomllib.loads(resources.files(package).joinpath(f"{name}{suffix}").read_text())


def names() -> list[str]:
    """The recipe names that ``load`` accepts."""
    return toml_names(__name__)


def load(name: str) -> dict:
    """The recipe ``name`` as a fresh dict of tables (model, data, optim, schedule)."""
    if name not in names():
        raise UserError(f"unknown recipe {name!r}; known recipes: {', '.join(names())}")
    return copy.deepcopy(read_toml(__name__, name))


TABLES = ("model", "data", "optim", "schedule")


# [data] keys that are sizes in pixels: they follow a changed image_size.
SIZES = ("resize", "scale", "test_resize", "test_scales", "padding")


def _scaled(value, ratio: float):
    if isinstance(value, list):
        return [_scaled(v, ratio) for v in value]
    return max(1, round(value * ratio)) if value else value


def resolve(name: str, **overrides) -> Recipe:
    """Recipe ``name`` with ``overrides`` put into the table that holds each
    key, typed and checked (``Recipe``).

    ``None`` means "keep the recipe's value". Changing ``image_size`` scales
    the other sizes of ``[data]`` with it (``resize``, ``scale``,
    ``test_resize``, ``test_scales``, ``padding``: 256 of 224 in AlexNet)
    unless they are given too, so that small images run through the same
    pipeline scaled down. ``network`` picks another model of the recipe
    (``models.check_recipe`` checks that it is one).
    """
    recipe = load(name)
    network = overrides.pop("network", None)
    tables = check_overrides(recipe, name, overrides)  # before the sizes scale with a given image_size
    data = recipe["data"]
    if overrides.get("image_size") is not None:
        ratio = overrides["image_size"] / data["image_size"]
        for key in SIZES:
            if key in data and overrides.get(key) is None:
                data[key] = _scaled(data[key], ratio)
    for key, table in tables.items():
        recipe[table][key] = overrides[key]
    if network is not None:
        recipe["network"] = network
    recipe["recipe"] = name
    return Recipe.from_dict(recipe)


def check_overrides(recipe: dict, name: str, overrides: dict) -> dict[str, str]:
    """The table of ``recipe`` (a dict of tables, from the file or a
    checkpoint) that holds each given override (``None``: keep the recipe's
    value), each value checked against the kind of the recipe's
    (``check_type``): a UserError for a key the recipe does not have, or a
    value of the wrong kind."""
    where = {key: table for table in TABLES for key in recipe[table]}
    given = {key: value for key, value in overrides.items() if value is not None}
    unknown = sorted(key for key in given if key not in where)
    if unknown:
        raise UserError(f"recipe {name} has no setting {', '.join(unknown)}")
    for key, value in given.items():
        check_type(key, recipe[where[key]][key], value)
    return {key: where[key] for key in given}


FLOAT32_MAX = (2 - 2**-23) * 2**127  # the largest float32


def _kind(value) -> str:
    """The kind of a recipe value, as a user would name it."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a whole number" if isinstance(value, int) else "a number"
    if isinstance(value, str):
        return "a word"
    if isinstance(value, list):
        return f"a list of {'whole numbers' if value and isinstance(value[0], int) else 'values'} like the recipe's"
    return type(value).__name__


def check_type(key: str, paper, value) -> None:
    """Raise UserError when ``value`` is not of the kind of the recipe's
    ``paper`` value (a number where the recipe has a number, a list of
    numbers where it has one, ...): ``--set lr='0.1'`` is refused here
    rather than failing deep inside training. A whole number serves where
    the recipe has a number."""
    def fits(old, new) -> bool:
        if isinstance(old, bool) or isinstance(new, bool):
            return isinstance(old, bool) and isinstance(new, bool)
        if isinstance(old, float):
            return isinstance(new, (int, float))
        if isinstance(old, int):
            return isinstance(new, int)
        if isinstance(old, list):
            return isinstance(new, list) and (not old or all(fits(old[0], v) for v in new))
        return isinstance(new, type(old))

    if not fits(paper, value):
        raise UserError(f"{key} must be {_kind(paper)} (the recipe has {paper!r}), not {value!r}")
    # NaN trains nothing and is no JSON (config.json); training computes in float32, where a larger
    # number (--lr 1e300) is infinite
    if any(isinstance(v, float) and not abs(v) <= FLOAT32_MAX for v in (value if isinstance(value, list) else [value])):
        raise UserError(f"{key} must be a finite number (a float32: at most {FLOAT32_MAX:.3g} in size), not {value!r}")


def parse_setting(text: str) -> tuple[str, object]:
    """``"key=value"`` -> (key, value), the value read as TOML (numbers,
    booleans, lists, quoted strings) or else kept as a string."""
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise UserError(f"--set expects KEY=VALUE, not {text!r}")
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value.strip()


PRESETS = ("demo",)


def preset(name: str, which: str) -> dict:
    """Recipe ``name``'s preset ``which`` (its ``[demo]`` table): overrides
    for ``resolve``, which explicit settings replace."""
    if which not in PRESETS:
        raise UserError(f"--preset must be one of {', '.join(PRESETS)}, not {which!r}")
    return dict(load(name).get(which, {}))
