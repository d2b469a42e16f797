"""Top-1 and top-5 error (AlexNet Sec. 6), on the centre crop or ten crops.

With ten crops the network's softmax outputs over the four corner crops, the
centre crop and their reflections are averaged (Sec. 4.1) before ranking.
Errors are percentages, as the paper reports them.
"""

import torch
from torch.nn import functional as F
from tqdm import tqdm

from . import checkpoint as ckpts
from .data.folders import open_dataset, warn_skipped
from .data.loaders import Images, loader
from .data.stats import Stats
from .data.transforms import PaperTransforms
from .device import autocast, default_workers, pick_device
from .errors import UserError
from .models import build

TOP_K = 5  # Sec. 6: top-5 error, the fraction of images whose label is not among the five most probable


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """The network a checkpoint describes, with its trained weights."""
    plan = ckpt["config"]
    model = build(plan["network"], len(ckpt["classes"]), plan["data"]["image_size"], **plan["model"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"checkpoint does not match the {plan['network']} it names: {str(e).splitlines()[0]}") from None
    return model


def transforms_from_checkpoint(ckpt: dict) -> PaperTransforms:
    d = ckpt["config"]["data"]
    return PaperTransforms(Stats.from_dict(ckpt["stats"]), d["image_size"], d["mean"], d["flip"], d["pca_lighting"])


@torch.no_grad()
def predict_proba(model: torch.nn.Module, views: torch.Tensor) -> torch.Tensor:
    """(B, crops, 3, S, S) views -> (B, classes) softmax averaged over crops."""
    b, c = views.shape[:2]
    with autocast(views.device):
        logits = model(views.flatten(0, 1))
    return F.softmax(logits.float(), dim=1).view(b, c, -1).mean(1)


def count_errors(probs: torch.Tensor, labels: torch.Tensor, k: int = TOP_K) -> tuple[torch.Tensor, torch.Tensor]:
    """Numbers of top-1 and top-k misses, as device tensors."""
    top = probs.topk(min(k, probs.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return (~hit[:, 0]).sum(), (~hit.any(1)).sum()


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, batches, device: torch.device, progress: bool = False, world=None) -> dict:
    """Top-1/top-5 error (percent) of ``model`` over test ``batches``
    (with ``world``, each rank's share, summed over the ranks)."""
    model.eval()
    counts = torch.zeros(3, dtype=torch.long, device=device)  # top-1 misses, top-5 misses, images
    for batch in tqdm(batches, desc="evaluate", unit="batch", disable=not progress, leave=False):
        warn_skipped(batch.skipped)
        if not len(batch.labels):
            continue
        labels = batch.labels.to(device, non_blocking=True)
        m1, m5 = count_errors(predict_proba(model, batch.images.to(device, non_blocking=True)), labels)
        counts += torch.stack([m1, m5, torch.tensor(len(labels), device=device)])
    if world is not None:
        world.sum(counts)
    top1, top5, n = counts.tolist()
    if n == 0:
        raise UserError("no readable images to evaluate")
    return {"top1_error": 100.0 * top1 / n, "top5_error": 100.0 * top5 / n, "images": n}


def evaluate(
    checkpoint,
    data,
    *,
    ten_crop: bool = False,
    batch_size: int | None = None,
    device: str = "auto",
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Top-1 and top-5 error of a checkpoint on the held-out split of ``data``
    (default: the dataset the checkpoint was trained on)."""
    ckpt = ckpts.load(checkpoint)
    dataset = open_dataset(data or ckpt["data_root"], need_train=False)
    if dataset.classes != ckpt["classes"]:
        raise UserError(
            f"{dataset.heldout.root} has {len(dataset.classes)} classes that differ from the checkpoint's {len(ckpt['classes'])}"
        )
    dev = pick_device(device)
    model = model_from_checkpoint(ckpt).to(dev)
    crops = 10 if ten_crop else 1
    images = Images(dataset.heldout, transforms_from_checkpoint(ckpt), crops=crops)
    # the recipe's batch counts views: ten crops of 12 images are 120 views, not 1280
    bs = batch_size or max(1, ckpt["config"]["optim"]["batch_size"] // crops)
    batches = loader(images, bs, shuffle=False, workers=default_workers(workers), pin_memory=dev.type == "cuda")
    result = evaluate_model(model, batches, dev, progress)
    result.update(crops=crops, split=str(dataset.heldout.root), checkpoint=str(checkpoint))
    return result
