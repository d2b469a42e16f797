"""Classify image files with a trained checkpoint: the five most probable
classes of each, by name (AlexNet Sec. 6.1, Figure 4)."""

from . import checkpoint as ckpts
from .data.classnames import display_name
from .data.images import decode_rgb, rescale
from .device import pick_device
from .errors import UserError
from .evaluate import model_from_checkpoint, predict_proba, transforms_from_checkpoint
from .metrics import TOP_K


def predict(checkpoint, images: list, *, top: int = TOP_K, ten_crop: bool = False, device: str = "auto") -> list[dict]:
    """For each image path: ``{"image", "top": [{"class", "name", "probability"}, ...]}``."""
    from pathlib import Path

    for path in images:
        if not Path(path).is_file():
            raise UserError(f"image {path} does not exist")
    ckpt = ckpts.load(checkpoint)
    dev = pick_device(device)
    model = model_from_checkpoint(ckpt).to(dev).eval()
    transforms = transforms_from_checkpoint(ckpt)
    classes = ckpt["classes"]
    results = []
    for path in images:
        img = decode_rgb(str(path))
        if img is None:
            raise UserError(f"{path} is not a readable image")
        views = transforms.test(rescale(img, transforms.stats.size), 10 if ten_crop else 1)
        probs = predict_proba(model, views.unsqueeze(0).to(dev))[0].cpu()
        p, idx = probs.topk(min(top, len(classes)))
        results.append(
            {
                "image": str(path),
                "top": [
                    {"class": classes[i], "name": display_name(classes[i], ckpt.get("names")), "probability": float(q)}
                    for q, i in zip(p.tolist(), idx.tolist())
                ],
            }
        )
    return results
