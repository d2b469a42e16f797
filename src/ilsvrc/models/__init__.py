"""The model registry: every entry point takes a model by name.

``build("alexnet", num_classes=10, lrn=False)`` returns the paper's network
with one change. Each family module (alexnet.py, vgg.py, ...) declares its
models in a ``MODELS`` table: name -> (builder, recipe, fixed arguments). The
paper values of every switch come from that recipe's ``[model]`` table
(``recipes/<recipe>.toml``), so that the numbers live in one place with their
sources; the fixed arguments are what the name itself says (VGG's
configuration letter, a ResNet's depth). A model whose recipe is ``None``
(weights imported from elsewhere) has no switches and no training recipe.
"""

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
from typing import Callable

import torch
from torch import nn

from .. import recipes
from ..errors import UserError


@dataclass(frozen=True)
class Entry:
    """One model of the registry: its builder, recipe, fixed arguments and paper."""

    name: str
    builder: Callable[..., nn.Module]
    recipe: str | None  # the recipe that trains it and holds its switches' paper values
    fixed: dict  # arguments the name fixes
    paper: str  # the paper it comes from


@cache
def _registry() -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, (builder, recipe, fixed) in getattr(module, "MODELS", {}).items():
            assert name not in entries, f"model {name} is declared twice"
            entries[name] = Entry(name, builder, recipe, dict(fixed), module.PAPER)
    return entries


def names() -> list[str]:
    """The model names that ``build`` accepts."""
    return sorted(_registry())


def entry(name: str) -> Entry:
    if name not in _registry():
        raise UserError(f"unknown model {name!r}; known models: {', '.join(names())}")
    return _registry()[name]


def check_recipe(name: str, recipe: str) -> None:
    """A UserError unless model ``name`` trains with ``recipe`` (the check
    on ``recipes.resolve(recipe, network=name)``)."""
    trained_by = entry(name).recipe
    if trained_by != recipe:
        how = f"its recipe is {trained_by}" if trained_by else "it has no training recipe"
        raise UserError(f"model {name} does not train with recipe {recipe}: {how}")


def paper_variant(name: str) -> dict:
    """The paper's values of every switch of model ``name``."""
    e = entry(name)
    return recipes.load(e.recipe)["model"] if e.recipe else {}


def build(name: str, num_classes: int = 1000, image_size: int = 224, **variant) -> nn.Module:
    """Model ``name`` for ``num_classes`` classes and square inputs of
    ``image_size`` pixels, with the paper's values except those in ``variant``."""
    e = entry(name)
    settings = paper_variant(name)
    unknown = sorted(set(variant) - set(settings))
    if unknown:
        switches = ", ".join(sorted(settings)) or "none"
        raise UserError(f"{name} has no switch {', '.join(unknown)}; its switches: {switches}")
    settings.update(variant)
    return _construct(e, num_classes, image_size, settings)


def for_recipe(recipe: recipes.Recipe, num_classes: int) -> nn.Module:
    """The network a resolved recipe trains. Its ``[model]`` table already
    holds every switch (the paper's values with the run's overrides, checked
    by ``recipes.resolve``), so the recipe file is not read a second time."""
    return _construct(entry(recipe.network), num_classes, recipe.data.image_size, recipe.model)


def _construct(e: Entry, num_classes: int, image_size: int, settings: dict) -> nn.Module:
    try:
        return e.builder(num_classes, image_size=image_size, **e.fixed, **settings)
    except ValueError as err:
        raise UserError(f"{e.name}: {err}") from None


def parameter_count(name: str, num_classes: int = 1000, image_size: int | None = None, **variant) -> int:
    """Parameters of model ``name``, counted without allocating its weights."""
    if image_size is None:
        e = entry(name)
        image_size = recipes.load(e.recipe)["data"]["image_size"] if e.recipe else 224
    with torch.device("meta"):
        model = build(name, num_classes, image_size, **variant)
    return sum(p.numel() for p in model.parameters())


def catalogue() -> list[dict]:
    """Every model: name, parameters (for the classes of its paper's dataset,
    at its recipe's input size), recipe and paper."""
    rows = []
    for n in names():
        e = entry(n)
        classes = recipes.load(e.recipe).get("classes", 1000) if e.recipe else 1000
        rows.append({"name": n, "parameters": parameter_count(n, classes), "classes": classes, "recipe": e.recipe,
                     "paper": e.paper})
    return rows
