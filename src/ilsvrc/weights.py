"""Weights from elsewhere: a torchvision state dict, from a local file, in the
equivalent ilsvrc model.

Each family module that has torchvision twins declares ``TORCHVISION``
(torchvision name -> (our model name, the switch values that match
torchvision's layout)) and ``from_torchvision(state_dict) -> state_dict``
(the key renaming). ``load_torchvision("resnet50", "resnet50.pth")`` then
returns our ``resnet-50`` (with torchvision's stride placement) holding those
weights, giving torchvision's logits on torchvision's inputs (note that
torchvision's pretrained weights expect its own input normalisation, not the
0-255 mean-subtracted inputs of the papers' recipes).
"""

import importlib
import os

import torch
from torch import nn

from .checkpoint import mismatch
from .errors import UserError
from .models import build, entry, names


def torchvision_names() -> dict[str, tuple[str, dict, object]]:
    """torchvision name -> (our model name, switch values, converter)."""
    table = {}
    modules = {entry(n).builder.__module__ for n in names()}
    for module_name in sorted(modules):
        module = importlib.import_module(module_name)
        for tv_name, (ours, variant) in getattr(module, "TORCHVISION", {}).items():
            table[tv_name] = (ours, dict(variant), module.from_torchvision)
    return table


def load_torchvision(arch: str, path: str | os.PathLike, num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    """The ilsvrc twin of torchvision model ``arch`` with the state dict saved
    at ``path`` (``torch.save(model.state_dict(), path)``)."""
    table = torchvision_names()
    if arch not in table:
        raise UserError(f"no ilsvrc twin of torchvision's {arch!r}; known: {', '.join(sorted(table))}")
    ours, variant, convert = table[arch]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"weights file {path} does not exist") from None
    except Exception as e:
        raise UserError(f"{path} is not a readable state dict ({type(e).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        converted = convert(state)
    except (KeyError, ValueError) as e:
        raise UserError(f"{path} does not hold torchvision's {arch}: {e}") from None
    if "aux" in variant and any(k.startswith("aux1.") for k in converted):
        variant["aux"] = True  # saved with torchvision's aux_logits=True (its pretrained GoogLeNet drops them)
    model = build(ours, num_classes, image_size, **variant)
    try:
        model.load_state_dict(converted)
    except (RuntimeError, KeyError, ValueError) as e:
        raise UserError(f"{path} does not hold torchvision's {arch} with {num_classes} classes: {mismatch(e)}") from None
    return model
