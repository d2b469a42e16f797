"""AlexNet's Figure 4 (Sec. 6.1): held-out images with their five most
probable labels, and query images with the six training images nearest to
them in the space of the last hidden layer (fc7, 4096 numbers per image)."""

import torch

from .. import checkpoint as ckpts
from ..data.classnames import display_name
from ..data.datasets import open_dataset
from ..data.loaders import Images, loader
from ..device import default_workers, pick_device
from ..evaluate import model_from_checkpoint, predict_proba, transforms_from_checkpoint
from ..figures import neighbours, predictions


@torch.no_grad()
def nearest(queries: torch.Tensor, chunks, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest rows (Euclidean) to each of ``queries`` (Q, D) among
    the rows of ``chunks``, an iterable of (N_i, D) tensors on the queries'
    device, kept as a running top-k so that all rows are never held at once:
    (distances, indices into the concatenated rows), each (Q, k), nearest first."""
    best_d = torch.full((len(queries), 0), float("inf"), device=queries.device)
    best_i = torch.empty((len(queries), 0), dtype=torch.long, device=queries.device)
    offset = 0
    for chunk in chunks:
        d = torch.cdist(queries.float(), chunk.float())
        idx = torch.arange(offset, offset + len(chunk), device=queries.device).expand(len(queries), -1)
        best_d, order = torch.cat((best_d, d), 1).topk(min(k, best_d.shape[1] + len(chunk)), dim=1, largest=False)
        best_i = torch.cat((best_i, idx), 1).gather(1, order)
        offset += len(chunk)
    return best_d, best_i


def _picks(n: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(n)`` (over every class of a sorted split)."""
    return sorted({round(i * (n - 1) / max(count - 1, 1)) for i in range(min(count, n))})


def _features(model, split, transforms, dev, workers: int, batch: int = 256):
    """(fc7 codes of a batch on the device, the split indices they belong to), batch by batch."""
    start = 0
    for b in loader(Images(split, transforms, crops=1), batch, shuffle=False, workers=workers):
        stop = min(start + batch, len(split))
        skipped = set(b.skipped)
        kept = [i for i in range(start, stop) if split.describe(i) not in skipped] if skipped else list(range(start, stop))
        start = stop
        if kept:
            yield model.forward_features(b.images.to(dev).flatten(0, 1)), kept


def _square(split, transforms, index: int):
    img, _, _ = Images(split, transforms, whole="square")[(index, 0)]
    return img.permute(1, 2, 0).numpy()


def run(ex) -> dict:
    fig = ex.plan["figure"]
    path = ex.trained("alexnet", "alexnet")
    ckpt = ckpts.load(path)
    dev = pick_device(ex.device)
    model = model_from_checkpoint(ckpt).to(dev).eval()
    transforms = transforms_from_checkpoint(ckpt)
    dataset = open_dataset(ex.data)
    classes = ckpt["classes"]
    held, train = dataset.heldout, dataset.train
    workers = default_workers(ex.workers)

    items, rows = [], []
    shown = _picks(len(held), fig["images"])
    test_views = Images(held, transforms, crops=1)
    for i in shown:
        x, label, _ = test_views[(i, 0)]
        probs = predict_proba(model, x.unsqueeze(0).to(dev))[0].cpu()
        p, top = probs.topk(min(5, len(classes)))
        top5 = [(display_name(classes[c]), float(q)) for q, c in zip(p.tolist(), top.tolist())]
        items.append({"image": _square(held, transforms, i), "label": display_name(classes[label]), "top5": top5})
        rows.append([display_name(classes[label]), top5[0][0], round(top5[0][1], 3), label in top.tolist()])
    left = predictions(ex.out / "figure4-predictions.png", items)

    queries = _picks(len(held), fig["queries"])
    q = torch.cat([model.forward_features(test_views[(i, 0)][0].to(dev)) for i in queries])
    searched: list[int] = []  # the training images in the order of their codes (undecodable ones left out)

    def codes():
        for c, kept in _features(model, train, transforms, dev, workers):
            searched.extend(kept)
            yield c

    dist, idx = nearest(q, codes(), fig["neighbours"])
    found = [[searched[j] for j in row] for row in idx.tolist()]
    right = neighbours(ex.out / "figure4-neighbours.png", [
        {"query": _square(held, transforms, i), "neighbours": [_square(train, transforms, j) for j in js],
         "label": display_name(classes[held.labels[i]])} for i, js in zip(queries, found)])
    same = [sum(train.labels[j] == held.labels[i] for j in js) for i, js in zip(queries, found)]
    return {
        "tables": [
            {"title": "Held-out images: the most probable label", "columns": [
                "true label", "most probable", "probability", "correct label in top 5"], "rows": rows},
            {"title": f"Nearest training images in fc7 space ({len(searched)} searched)", "columns": [
                "query label", "neighbours of the same class", "nearest distance"],
             "rows": [[display_name(classes[held.labels[i]]), f"{s}/{len(js)}", round(d[0], 2)]
                      for i, s, js, d in zip(queries, same, found, dist.tolist())]}],
        "figures": [
            {"file": left.name, "caption": "Figure 4 (left): held-out images and the five labels the network finds most "
                                           "probable; the correct label's bar is red"},
            {"file": right.name, "caption": f"Figure 4 (right): query images (first column) and the {fig['neighbours']} "
                                            "training images with the nearest fc7 codes"}],
    }
