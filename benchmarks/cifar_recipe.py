"""The ResNet-20 paper recipe on CIFAR-10 (He et al. 2016, Sec. 4.2) end to
end, two ways in the same run, with the same network:

  stock   the loop a user writes from the tutorials: torchvision ImageFolder
          + RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor +
          Normalize (CIFAR mean and std) in a DataLoader with ``--workers``
          worker processes, fp32, eager, ``model(x)`` / ``loss.item()`` each
          step; SGD with the recipe's values (batch 128, lr 0.1, momentum
          0.9, weight decay 1e-4) divided by 10 at the recipe's milestones;
          ilsvrc's resnet-20 as the network (the loops differ, not the nets);
  ilsvrc  ``ilsvrc.train("resnet-cifar", DATA, ...)``: the recipe file
          unchanged but for the length (resident data and augmentation on
          the device, bf16 autocast, channels_last and torch.compile on a
          GPU; a validation of the test set after every epoch, as the
          trainer always does).

``--iterations N`` shortens the run (default: the paper's 64,000 steps); the
milestones keep their place (at 1/2 and 3/4 of the run). Printed for each:
images/s over the training steps, wall time (from the start of the loop,
data loading included, to the final test error), and the final test error on
the test split; then the ratios.

    python benchmarks/cifar_recipe.py                          # the paper's 64k steps, GPU
    python benchmarks/cifar_recipe.py --iterations 2000 --json cifar.json
    python benchmarks/cifar_recipe.py --iterations 20 --device cpu --workers 2   # a check on a CPU

Without ``--data`` the data is ``$ILSVRC_DATA/cifar10``, else
``../shared/datasets/cifar10`` beside the checkout: an ImageFolder root with
train/ and test/, or a packed store of it (``ilsvrc pack DIR OUT --size 32``,
53 MiB, what travels to a GPU machine), from which the stock loop reads the
same JPEG files through PIL as ImageFolder would. ``--stock-iterations``
shortens the stock loop alone (its images/s is a rate; its wall time and
test error are then those of the shorter run, and the wall ratio is left
out).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from PIL import Image
from torchvision import datasets
from torchvision import transforms as T
from tqdm import tqdm

import ilsvrc
from ilsvrc import recipes
from ilsvrc.data.store import PackedSplit, is_store, open_store
from ilsvrc.models import build
from ilsvrc.cli import parse_compile

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py, also when loaded by path
from common import default_data, machine, resolve_device, sync, write_json  # noqa: E402

RECIPE = "resnet-cifar"
# The tutorials' CIFAR-10 normalisation (torchvision / PyTorch examples): mean and std of [0, 1] RGB.
TUTORIAL_MEAN, TUTORIAL_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def schedule(iterations: int) -> dict:
    """The recipe's schedule over ``iterations`` steps: milestones at the same fractions."""
    s = recipes.load(RECIPE)["schedule"]
    milestones = [round(m * iterations / s["iterations"]) for m in s["milestones"]]
    return {"iterations": iterations, "milestones": milestones}


def heldout(root: Path) -> Path:
    return next(root / n for n in ("val", "test") if (root / n).is_dir())


class StoreFiles(torch.utils.data.Dataset):
    """A packed store's JPEG files decoded by PIL, as ImageFolder decodes
    the same files from folders: the tutorial loop's data from a store."""

    def __init__(self, split: PackedSplit, classes: list[str], transform):
        self.split, self.classes, self.transform = split, classes, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        img = Image.open(io.BytesIO(self.split.encoded(i).tobytes())).convert("RGB")
        return self.transform(img), self.split.labels[i]


def tutorial_sets(data: Path, train_transform, test_transform):
    """The train and test sets of the tutorial loop: ImageFolder, or a store's files."""
    if is_store(data):
        d = open_store(data)
        if d.train.encoding != "jpeg":
            raise SystemExit("cifar_recipe: the stock loop reads a store of JPEG files (ilsvrc pack --format jpeg)")
        return StoreFiles(d.train, d.classes, train_transform), StoreFiles(d.heldout, d.classes, test_transform)
    return datasets.ImageFolder(data / "train", train_transform), datasets.ImageFolder(heldout(data), test_transform)


def stock(data: Path, iterations: int, device: torch.device, workers: int, seed: int, progress: bool,
          network: str) -> dict:
    """The tutorial loop: returns images/s, wall seconds and the final test error."""
    r = recipes.load(RECIPE)
    o, s = r["optim"], schedule(iterations)
    torch.manual_seed(seed)
    start = time.perf_counter()
    normalise = T.Normalize(TUTORIAL_MEAN, TUTORIAL_STD)
    train_set, test_set = tutorial_sets(data, T.Compose(
        [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), normalise]), T.Compose([T.ToTensor(), normalise]))
    pin = device.type == "cuda"
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=o["batch_size"], shuffle=True, num_workers=workers,
                                               pin_memory=pin, persistent_workers=workers > 0)
    model = build(network, len(train_set.classes), 32).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, s["milestones"], gamma=r["schedule"]["factor"])
    step, images, train_seconds = 0, 0, 0.0
    bar = tqdm(total=iterations, desc="stock", unit="step", disable=not progress, leave=False)
    while step < iterations:
        model.train()
        tick = time.perf_counter()
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss.item()  # what the tutorials print
            step += 1
            images += len(y)
            bar.update(1)
            if step >= iterations:
                break
        sync(device)
        train_seconds += time.perf_counter() - tick
    bar.close()
    errors = total = 0
    model.eval()
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(test_set, batch_size=1000, num_workers=workers):
            errors += (model(x.to(device)).argmax(1).cpu() != y).sum().item()
            total += len(y)
    wall = time.perf_counter() - start
    return {"images_per_s": images / train_seconds, "wall_s": wall, "test_error": 100.0 * errors / total,
            "steps": step}


def ours(data: Path, iterations: int, device: torch.device, workers: int, seed: int, progress: bool,
         compile: bool | str | None, network: str) -> dict:
    """``ilsvrc.train`` on the recipe: images/s, wall seconds, final test error."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        row = ilsvrc.train(RECIPE, data, Path(tmp) / "run", device=str(device), workers=workers, seed=seed,
                           progress=progress, compile=compile, model=network, **schedule(iterations))
        wall = time.perf_counter() - start
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    images = sum(r["images_per_s"] * r["epoch_time_s"] for r in rows)
    seconds = sum(r["epoch_time_s"] for r in rows)
    # after the first epoch (compilation, capture): the rate the run settles at
    later = sorted(r["images_per_s"] for r in rows[1:] if r["complete"])
    return {"images_per_s": images / seconds, "wall_s": wall, "test_error": row["val_top1_error"], "steps": row["step"],
            "first_epoch_s": rows[0]["epoch_time_s"], "median_epoch_images_per_s": later[len(later) // 2] if later else None,
            # where the wall time went: the steps, the validations, and the rest (start-up, checkpoints, logs)
            "steps_s": seconds, "validation_s": sum(r.get("val_time_s", 0.0) for r in rows)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="CIFAR-10 as an ImageFolder root (train/, test/)")
    p.add_argument("--iterations", type=int, default=recipes.load(RECIPE)["schedule"]["iterations"])
    p.add_argument("--stock-iterations", type=int, default=None, help="the stock loop's steps (default: --iterations)")
    p.add_argument("--model", default=None, help="another network of the recipe (resnet-56, resnet-110; default resnet-20)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--workers", type=int, default=8, help="stock DataLoader workers (default: 8, as measured in the issue)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", type=parse_compile, default=None, metavar="MODE",
                   help="ilsvrc's step: true, false, eager, default or graph (default: as ilsvrc train picks:"
                   " graph on a GPU)")
    p.add_argument("--only", choices=("stock", "ilsvrc"), help="run one side only")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    resolve_device(p, a)
    data = a.data or default_data("cifar10")
    if data is None or not ((data / "train").is_dir() or is_store(data)):
        p.error("no CIFAR-10 folder: pass --data (an ImageFolder root with train/ and test/, or a packed store)")
    stock_iterations = a.stock_iterations or a.iterations
    if min(a.iterations, stock_iterations) < 1:
        p.error("--iterations and --stock-iterations must be positive")
    network = a.model or recipes.load(RECIPE)["network"]
    device = torch.device(a.device)
    result = {"machine": machine(device), "recipe": RECIPE, "iterations": a.iterations, "data": str(data),
              "schedule": schedule(a.iterations), "stock_workers": a.workers, "network": network,
              "stock_iterations": stock_iterations}
    if a.only != "ilsvrc":
        result["stock"] = stock(data, stock_iterations, device, a.workers, a.seed, not a.no_progress, network)
    if a.only != "stock":
        result["ilsvrc"] = ours(data, a.iterations, device, a.workers, a.seed, not a.no_progress, a.compile, network)
    m = result["machine"]
    print(f"{network}, CIFAR-10, {a.iterations} steps of 128 (milestones {result['schedule']['milestones']}); "
          f"{m['device']}, torch {m['torch']}, {m['date']}")
    print(f"{'':8s} {'steps':>6s} {'images/s':>10s} {'wall s':>9s} {'test error %':>13s}")
    for side in ("stock", "ilsvrc"):
        if side in result:
            r = result[side]
            print(f"{side:8s} {r['steps']:6d} {r['images_per_s']:10.0f} {r['wall_s']:9.1f} {r['test_error']:13.2f}")
    if "ilsvrc" in result and result["ilsvrc"]["median_epoch_images_per_s"]:
        o = result["ilsvrc"]
        print(f"ilsvrc: first epoch (compilation, capture) {o['first_epoch_s']:.1f} s, then a median epoch at "
              f"{o['median_epoch_images_per_s']:.0f} images/s")
    if "ilsvrc" in result:
        o = result["ilsvrc"]
        print(f"ilsvrc: wall {o['wall_s']:.1f} s = steps {o['steps_s']:.1f} s + validation {o['validation_s']:.1f} s"
              f" + the rest {o['wall_s'] - o['steps_s'] - o['validation_s']:.1f} s (start-up, checkpoints, logs)")
    if "stock" in result and "ilsvrc" in result:
        s, o = result["stock"], result["ilsvrc"]
        result["ratios"] = {"images_per_s": o["images_per_s"] / s["images_per_s"]}
        line = f"ilsvrc / stock: {result['ratios']['images_per_s']:.2f}x images/s"
        if stock_iterations == a.iterations:
            result["ratios"]["wall"] = s["wall_s"] / o["wall_s"]
            line += f", {result['ratios']['wall']:.2f}x less wall time"
        print(line)
    write_json(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
