"""Export a trained checkpoint as a file that runs without ilsvrc.

``export(checkpoint, out, format)`` writes the network as a ``torch.export``
program (``pt2``, the default: load it with ``torch.export.load`` and call
``.module()``; needs only PyTorch, and it is where PyTorch's deployment
tools start: AOTInductor, ExecuTorch), ONNX (run it with onnxruntime: needs
no PyTorch at all), or TorchScript (``torch.jit.load``; deprecated by
PyTorch in favour of ``torch.export``, kept while torch ships it), and
beside it ``<out>.json``, a sidecar that says how to feed it and what comes
out.

The exported graph's convention:

- input ``images``: a float32 batch (B, 3, S, S) of RGB images in 0-255,
  channels first, already cut to the network input S (the recipe's
  ``image_size``) as this project's test view cuts it: the image's shorter
  side rescaled to ``resize`` (bilinear, antialiased), the central
  ``resize`` x ``resize`` square kept (AlexNet Sec. 2), rescaled to
  ``test_resize`` where the recipe has one that differs, and the central
  S x S crop taken (Sec. 4.1). The batch size is free; S is fixed.
- the mean subtraction happens inside the graph: the matching centre crop of
  the training set's mean image, or its mean RGB, as the checkpoint's recipe
  says (Sec. 2). A user sends raw pixels, never mean-subtracted ones.
- output ``probabilities``: (B, classes), the softmax of fc8 (the paper's
  output layer, Sec. 3.5), not the logits. Probabilities are what a user of
  a classifier wants, and what ten-crop testing averages (Sec. 4.1): run the
  ten crops as one batch and average the rows. (The logits, if wanted, are
  the log of the probabilities up to a constant per image.)

Both files are written atomically (a temporary file renamed into place).
"""

import importlib.util
import inspect
import json
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from . import __version__
from . import checkpoint as ckpts
from .data.classnames import display_name
from .errors import UserError
from .evaluate import model_from_checkpoint, transforms_from_checkpoint
from .models import entry

FORMATS = ("pt2", "onnx", "torchscript")
_SUFFIX = {"pt2": "pt2", "torchscript": "pt", "onnx": "onnx"}  # for the example file name in a message
INPUT_NAME, OUTPUT_NAME = "images", "probabilities"
ONNX_PACKAGES = ("onnx", "onnxscript")  # what torch.onnx.export's exporter imports
ONNX_INSTALL = "pip install 'ilsvrc[export]'  (or: pip install onnx onnxscript onnxruntime)"
# torch.export treats a dimension of size 1 as a constant; an example batch of
# two keeps the batch size free in the exported graph.
EXAMPLE_BATCH = 2
MAX_BATCH = 1 << 20  # the largest batch an exported program takes (far more than fits in memory at 224 px)


class Exported(nn.Module):
    """The network with its input convention built in: raw 0-255 RGB crops in,
    softmax probabilities out (the mean is subtracted inside)."""

    def __init__(self, model: nn.Module, mean: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean)  # (3, S, S): the mean of the pixels of a test crop

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.model(images - self.mean), dim=1)


def exportable(ckpt: dict) -> Exported:
    """The checkpoint's network wrapped in the exported convention, in eval
    mode on the CPU."""
    model = model_from_checkpoint(ckpt).eval()
    transforms = transforms_from_checkpoint(ckpt)
    # The test view of an all-zero square is minus the mean as that view
    # sees it (the matching crop of the mean image, rescaled as the square is),
    # whatever the recipe's test view does: it is linear in the image.
    square = ckpt["stats"]["mean_image"].shape[-1]
    zeros = torch.zeros(3, square, square, dtype=torch.uint8)
    mean = -transforms.test(zeros, 1)[0]
    return Exported(model, mean.float().contiguous()).eval()


def sidecar(ckpt: dict, checkpoint, model_file: Path, format: str) -> dict:
    """What ``<out>.json`` says: how to feed the exported model, what it returns."""
    plan, classes = ckpt["config"], ckpt["classes"]
    d = plan["data"]
    size, resize = d["image_size"], d["resize"]
    test_resize = d.get("test_resize") or resize
    steps = [
        "decode the image as RGB",
        f"rescale it so that its shorter side is {resize} pixels (bilinear, antialiased)",
        f"keep the central {resize}x{resize} square",
    ]
    if test_resize != resize:
        steps.append(f"rescale the square to {test_resize}x{test_resize} (bilinear, antialiased)")
    steps += [
        f"keep the central {size}x{size} crop",
        f"as float32 RGB values in 0-255, channels first: (3, {size}, {size}); stack crops into a batch",
        "do not subtract a mean or scale the values: the model does",
    ]
    stats = ckpt["stats"]
    return {
        "format": format,
        "model": model_file.name,
        "network": plan["network"],
        "recipe": plan.get("recipe"),
        "paper": entry(plan["network"]).paper,
        "classes": list(classes),
        "names": [display_name(c, ckpt.get("names")) for c in classes],
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 3, size, size],
            "dtype": "float32",
            "layout": "NCHW",
            "channels": "RGB",
            "range": [0, 255],
        },
        "preprocess": {"resize": resize, "test_resize": test_resize, "image_size": size, "steps": steps},
        "mean": {
            "kind": d["mean"],
            "subtracted": "inside the model",
            "rgb": [float(v) for v in stats["mean_rgb"]],
            "what": "the training set's mean image, its centre crop" if d["mean"] == "image"
            else "the training set's mean RGB value",
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", len(classes)],
            "kind": "softmax probabilities, one row per image, summing to 1",
            "ten_crop": "AlexNet Sec. 4.1: run the four corner crops, the centre crop and their horizontal"
            " reflections as one batch and average the ten rows",
        },
        "checkpoint": str(checkpoint),
        "step": ckpt.get("step"),
        "ilsvrc": __version__,
        "torch": torch.__version__,
    }


def export(checkpoint, out, format: str = "pt2", force: bool = False) -> Path:
    """Write the network of ``checkpoint`` (a file or a run directory) to
    ``out`` as ``format`` ("pt2", "onnx" or "torchscript"), and ``<out>.json`` beside
    it; returns the model file's path. An existing ``out`` or ``<out>.json``
    is replaced only with ``force``. See the module docstring for the
    exported graph's input (0-255 RGB crops, mean subtracted inside) and
    output (softmax probabilities)."""
    if format not in FORMATS:
        raise UserError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out} is a folder; give the file to write, such as {out / ('model.' + _SUFFIX[format])}")
    if not out.parent.is_dir():
        raise UserError(f"output folder {out.parent} does not exist")
    existing = next((p for p in (out, _sidecar_path(out)) if p.exists()), None)
    if existing is not None and not force:
        raise UserError(f"{existing} exists; pass --force to overwrite it, or choose another file")
    if format == "onnx":
        missing = [p for p in ONNX_PACKAGES if importlib.util.find_spec(p) is None]
        if missing:
            raise UserError(f"ONNX export needs {' and '.join(missing)}: {ONNX_INSTALL}")
        if "dynamo" not in inspect.signature(torch.onnx.export).parameters:  # torch.export-based exporter: torch 2.5+
            raise UserError(f"ONNX export needs torch 2.5 or later, not {torch.__version__}")
    ckpt = ckpts.load(checkpoint)
    wrapped = exportable(ckpt)
    size = ckpt["config"]["data"]["image_size"]
    example = wrapped.mean.expand(EXAMPLE_BATCH, 3, size, size).clone()
    with torch.no_grad():
        {"pt2": _pt2, "torchscript": _torchscript, "onnx": _onnx}[format](wrapped, example, out)
    info = sidecar(ckpt, checkpoint, out, format)
    ckpts.atomic_write(_sidecar_path(out), lambda f: f.write(json.dumps(info, indent=2).encode()))
    return out


def _sidecar_path(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _batch() -> torch.export.Dim:
    """The exported programs' free batch size, up to ``MAX_BATCH``: unbounded,
    torch 2.6 and 2.7 refuse to export (a guard that it is not 2**63 - 1)."""
    return torch.export.Dim("batch", max=MAX_BATCH)


def _pt2(wrapped: Exported, example: torch.Tensor, out: Path) -> None:
    """A ``torch.export`` program with a free batch size (``torch.export.save``'s file)."""
    program = torch.export.export(wrapped, (example,), dynamic_shapes={INPUT_NAME: {0: _batch()}})
    ckpts.atomic_write(out, lambda f: torch.export.save(program, f))


def _torchscript(wrapped: Exported, example: torch.Tensor, out: Path) -> None:
    with warnings.catch_warnings():
        # torch 2.14 marks TorchScript as deprecated in favour of torch.export;
        # it still works, and torch.jit.load is what a user without ilsvrc has.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        # F.local_response_norm asks whether its input is empty; an exported
        # model is never run on an empty batch.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapped, example, check_trace=False)
        ckpts.atomic_write(out, lambda f: torch.jit.save(traced, f))


def _onnx(wrapped: Exported, example: torch.Tensor, out: Path) -> None:
    batch = _batch()
    try:
        program = torch.onnx.export(
            wrapped, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes={INPUT_NAME: {0: batch}}, verbose=False,
        )
    except ImportError as e:  # a package the exporter needs beyond those checked above
        raise UserError(f"ONNX export needs {e.name or 'a missing package'}: {ONNX_INSTALL}") from None
    # One self-contained file (weights inside, no .data file beside it):
    # the project's largest networks are far below protobuf's 2 GB limit.
    proto = program.model_proto
    ckpts.atomic_write(out, lambda f: f.write(proto.SerializeToString()))
