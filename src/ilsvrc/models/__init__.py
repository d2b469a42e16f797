"""The model registry: every entry point takes a model by name.

``build("alexnet", num_classes=10, lrn=False)`` returns the paper's network
with one change; the paper values of every switch come from the model's
recipe file (``recipes/<name>.toml``, table ``[model]``), so that the numbers
live in one place with their sources.
"""

from typing import Callable

from torch import nn

from .. import recipes
from ..errors import UserError
from .alexnet import alexnet

# name -> (builder, recipe whose [model] table holds the paper's values)
_REGISTRY: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "alexnet": (alexnet, "alexnet"),
}


def names() -> list[str]:
    """The model names that ``build`` accepts."""
    return sorted(_REGISTRY)


def paper_variant(name: str) -> dict:
    """The paper's values of every switch of model ``name``."""
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(names())}")
    return recipes.load(_REGISTRY[name][1])["model"]


def build(name: str, num_classes: int = 1000, image_size: int = 224, **variant) -> nn.Module:
    """Model ``name`` for ``num_classes`` classes and square inputs of
    ``image_size`` pixels, with the paper's values except those in ``variant``."""
    settings = paper_variant(name)
    unknown = sorted(set(variant) - set(settings))
    if unknown:
        raise UserError(f"{name} has no switch {', '.join(unknown)}; its switches: {', '.join(sorted(settings))}")
    settings.update(variant)
    try:
        return _REGISTRY[name][0](num_classes, image_size=image_size, **settings)
    except ValueError as e:
        raise UserError(f"{name}: {e}") from None
