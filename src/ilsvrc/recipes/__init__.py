"""Recipes: each paper's training values as data, one TOML file per recipe.

Each value in a recipe file says which section of which paper it comes from.
``load(name)`` returns the recipe as nested dicts; ``names()`` lists them.
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
