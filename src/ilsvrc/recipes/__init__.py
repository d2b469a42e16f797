"""Recipes: each paper's training values as data, one TOML file per recipe.

Each value in a recipe file says which section of which paper it comes from
(or "ours", with the reason, where the paper is silent). ``load(name)``
returns the recipe as nested dicts; ``names()`` lists them.

The format (``alexnet.toml`` is the example to copy):

top level  ``title`` (the paper), ``network`` (the registry name of the model
           trained by default; ``--model`` picks another of the same recipe).
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
           ``warmup_until_error``, for the models in ``warmup_models``.
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


def names() -> list[str]:
    """The recipe names that ``load`` accepts."""
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".toml"))


@cache
def _read(name: str) -> dict:
    return tomllib.loads(resources.files(__name__).joinpath(f"{name}.toml").read_text())


def load(name: str) -> dict:
    """The recipe ``name`` as a fresh dict of tables (model, data, optim, schedule)."""
    if name not in names():
        raise UserError(f"unknown recipe {name!r}; known recipes: {', '.join(names())}")
    return copy.deepcopy(_read(name))


TABLES = ("model", "data", "optim", "schedule")


def resolve(name: str, **overrides) -> dict:
    """Recipe ``name`` with ``overrides`` put into the table that holds each key.

    ``None`` means "keep the recipe's value". Changing ``image_size`` alone
    scales ``resize`` with it (224 of 256 in AlexNet), so that small images
    run through the same pipeline scaled down.
    """
    recipe = load(name)
    where = {key: table for table in TABLES for key in recipe[table]}
    unknown = sorted(k for k, v in overrides.items() if v is not None and k not in where)
    if unknown:
        raise UserError(f"recipe {name} has no setting {', '.join(unknown)}")
    data = recipe["data"]
    if overrides.get("image_size") is not None and overrides.get("resize") is None:
        data["resize"] = round(overrides["image_size"] * data["resize"] / data["image_size"])
    for key, value in overrides.items():
        if value is not None:
            recipe[where[key]][key] = value
    recipe["recipe"] = name
    return recipe
