"""Top-1 and top-5 error (AlexNet Sec. 6) under each paper's test protocol.

Views (``VIEWS``), each averaging the network's softmax outputs over them:

- ``centre``: the centre crop of the square rescaled to ``test_resize``;
- ``ten-crop``: the four corner crops, the centre crop and their
  reflections (AlexNet Sec. 4.1; ResNet Sec. 3.4's "standard 10-crop");
- ``dense``: the whole square rescaled to each test scale Q, the network
  applied fully convolutionally (fully connected layers as convolutions),
  the class score map averaged, and the same for the reflected image (VGG
  Sec. 3.2; ResNet Sec. 3.4, multi-scale);
- ``multi-crop``: a 5 x 5 grid of crops and their reflections at each test
  scale (VGG Sec. 3.2 / 4.3: 150 crops over three scales);
- ``144-crop``: GoogLeNet Sec. 7's 144 crops of the whole image.

Dense and multi-crop views are cut from the stored square of each image (the
papers use the whole rescaled image; the square gives batches of one shape
and works from a packed store), 144-crop from the original files.
Errors are percentages, as the papers report them.
"""

from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm

from . import checkpoint as ckpts
from .data.datasets import open_dataset
from .data.default import find
from .data.images import warn_skipped
from .data.loaders import Images, loader
from .data.sources import test_batch_size, test_source
from .data.stats import Stats
from .data.transforms import PaperTransforms, resize_float
from .device import autocast, default_workers, pick_device
from .errors import UserError
from .metrics import count_errors
from .models import build

VIEWS = ("centre", "ten-crop", "dense", "multi-crop", "144-crop")
GRID = 5  # VGG Sec. 3.2 multi-crop: a 5 x 5 grid of crops per scale


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """The network a checkpoint describes, with its trained weights."""
    plan = ckpt["config"]
    model = build(plan["network"], len(ckpt["classes"]), plan["data"]["image_size"], **plan["model"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"checkpoint does not match the {plan['network']} it names: {ckpts.mismatch(e)}") from None
    return model


def transforms_from_checkpoint(ckpt: dict) -> PaperTransforms:
    return PaperTransforms.from_recipe(Stats.from_dict(ckpt["stats"]), ckpt["config"]["data"])


def test_scales(data: dict, scales: list[int] | None = None) -> list[int]:
    """The test scales Q: given, else the recipe's, else its test_resize."""
    return list(scales or data.get("test_scales") or [data.get("test_resize", data["resize"])])


@torch.no_grad()
def predict_proba(model: torch.nn.Module, views: torch.Tensor, precision: str = "auto") -> torch.Tensor:
    """(B, crops, 3, S, S) views -> (B, classes) softmax averaged over crops
    (``precision``: ``device.autocast``'s)."""
    b, c = views.shape[:2]
    with autocast(views.device, precision):
        logits = model(views.flatten(0, 1))
    return F.softmax(logits.float(), dim=1).view(b, c, -1).mean(1)


@torch.no_grad()
def dense_proba(model: torch.nn.Module, squares: torch.Tensor, scales: list[int]) -> torch.Tensor:
    """(B, 3, Q, Q) mean-subtracted squares -> (B, classes): dense evaluation
    at each scale and of the reflection, softmax averaged."""
    dense = getattr(model, "dense", model)
    total = 0.0
    for q in scales:
        x = resize_float(squares, q)
        for view in (x, x.flip(-1)):
            with autocast(view.device):
                total = total + F.softmax(dense(view).float(), dim=1)
    return total / (2 * len(scales))


@torch.no_grad()
def grid_proba(model: torch.nn.Module, squares: torch.Tensor, scales: list[int], transforms: PaperTransforms) -> torch.Tensor:
    """(B, 3, R, R) mean-subtracted squares -> (B, classes): multi-crop
    evaluation, a grid of crops and reflections at each scale."""
    total = 0.0
    for q in scales:
        x = resize_float(squares, q)
        views = torch.stack([transforms.grid(square, GRID) for square in x])
        total = total + predict_proba(model, views)
    return total / len(scales)


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, batches, device: torch.device, progress: bool = False, world=None,
                   proba=None, precision: str = "auto") -> dict:
    """Top-1/top-5 error (percent) of ``model`` over test ``batches``
    (with ``world``, each rank's share, summed over the ranks); ``proba``
    turns a batch's images on the device into class probabilities (default:
    ``predict_proba`` in ``precision``)."""
    proba = proba or (lambda m, x: predict_proba(m, x, precision))
    model.eval()
    counts = torch.zeros(3, dtype=torch.long, device=device)  # top-1 misses, top-5 misses, images
    for batch in tqdm(batches, desc="evaluate", unit="batch", disable=not progress, leave=False):
        warn_skipped(batch.skipped)
        if not len(batch.labels):
            continue
        labels = batch.labels.to(device, non_blocking=True)
        m1, m5 = count_errors(proba(model, batch.images.to(device, non_blocking=True)), labels)
        counts += torch.stack([m1, m5, torch.tensor(len(labels), device=device)])
    if world is not None:
        world.sum(counts)
    top1, top5, n = counts.tolist()
    if n == 0:
        raise UserError("no readable images to evaluate")
    return {"top1_error": 100.0 * top1 / n, "top5_error": 100.0 * top5 / n, "images": n}


def checkpoint_labels(ckpt: dict | None, root) -> str | None:
    """The labels file of a flat val/ that the checkpoint's run was given,
    where ``root`` is the data it was trained on (data/labels.py)."""
    if ckpt is None or Path(root).resolve() != Path(ckpt["data_root"]):
        return None
    return ckpt.get("val_labels")


def evaluate(
    checkpoint,
    data,
    *,
    ten_crop: bool = False,
    views: str | None = None,
    scales: list[int] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    workers: int | None = None,
    progress: bool = True,
    data_loader: str = "auto",
    val_labels=None,
) -> dict:
    """Top-1 and top-5 error of a checkpoint on the held-out split of ``data``
    (default: the dataset the checkpoint was trained on, with the labels file
    of its flat val/; ``val_labels``: another's, data/labels.py), under ``views``
    (one of ``VIEWS``; default centre, or ten-crop with ``ten_crop``) at the
    test ``scales`` (default: the recipe's). Centre and ten-crop views come
    from the batch sources training validates with (``data_loader``:
    "resident", "stream", "workers" or "auto", ``data/sources.py``); the
    views of whole squares and originals from loader workers."""
    views = views or ("ten-crop" if ten_crop else "centre")
    if views not in VIEWS:
        raise UserError(f"views must be one of {', '.join(VIEWS)}, not {views!r}")
    ckpt = ckpts.load(checkpoint)
    root = find(data or ckpt["data_root"])
    dataset = open_dataset(root, need_train=False, val_labels=val_labels or checkpoint_labels(ckpt, root))
    if dataset.classes != ckpt["classes"]:
        raise UserError(
            f"{dataset.heldout.root} has {len(dataset.classes)} classes that differ from the checkpoint's {len(ckpt['classes'])}"
        )
    dev = pick_device(device)
    model = model_from_checkpoint(ckpt).to(dev)
    recipe_data = ckpt["config"]["data"]
    transforms = transforms_from_checkpoint(ckpt)
    qs = test_scales(recipe_data, scales)
    if any(q < recipe_data["image_size"] for q in qs):
        raise UserError(f"test scales {qs} must be at least the network input size {recipe_data['image_size']}")
    proba, whole = predict_proba, {"dense": "square", "multi-crop": "square", "144-crop": "144"}.get(views)
    mean = transforms.mean.to(dev)  # dense and multi-crop: uint8 squares, the mean subtracted on the device
    if views == "dense":
        proba = lambda m, x: dense_proba(m, x.float() - mean, qs)  # noqa: E731
    elif views == "multi-crop":
        proba = lambda m, x: grid_proba(m, x.float() - mean, qs, transforms)  # noqa: E731
    per_image = {"centre": 1, "ten-crop": 10, "dense": 2 * len(qs), "multi-crop": 2 * GRID * GRID * len(qs),
                 "144-crop": 36 * len(qs)}[views]
    # the rule training validates with: a training batch's pixels, counted in views
    bs = batch_size or test_batch_size(ckpt["config"]["optim"]["batch_size"], recipe_data["image_size"], per_image, dev)
    workers = default_workers(workers)
    try:
        if views in ("centre", "ten-crop"):
            _, make = test_source(data_loader, dataset.heldout, transforms, dev, bs, crops=per_image, workers=workers,
                                  progress=progress)
            batches = make()
        else:
            images = Images(dataset.heldout, transforms, whole=whole, scales=qs)
            batches = loader(images, bs, shuffle=False, workers=workers, pin_memory=dev.type == "cuda")
    except ValueError as e:
        raise UserError(str(e)) from None
    result = evaluate_model(model, batches, dev, progress, proba=proba)
    result.update(views=views, crops=per_image, split=str(dataset.heldout.root), checkpoint=str(checkpoint))
    if views in ("dense", "multi-crop", "144-crop"):
        result["scales"] = qs
    return result
