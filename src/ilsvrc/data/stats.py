"""Training-set statistics the paper's pipeline needs (AlexNet Sec. 2, 4.1).

- the mean image: the per-pixel mean over the training set of the rescaled
  ``size x size`` images (cuda-convnet's data mean), and its per-channel mean;
- the eigenvalues and eigenvectors of the 3x3 covariance of RGB values over
  all pixels of the training set, for PCA lighting (values scaled to [0, 1]).

They are computed once, in one pass over the training images, and cached in
``$ILSVRC_CACHE`` (default ``~/.cache/ilsvrc``) under a key made of the
dataset's path, its file list (names, sizes, times) and the image size, so a
changed dataset is never served stale statistics.
"""

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoint import atomic_save
from ..errors import UserError
from .folders import Rescaled, Split
from .images import warn_skipped


@dataclass
class Stats:
    """A training set's mean image, mean RGB and RGB eigenvectors (AlexNet Sec. 2 and 4.1)."""

    size: int  # side of the rescaled square images the statistics describe
    mean_image: torch.Tensor  # (3, size, size), 0-255
    mean_rgb: torch.Tensor  # (3,), 0-255
    eigval: torch.Tensor  # (3,), descending, of the covariance of RGB in [0, 1]
    eigvec: torch.Tensor  # (3, 3), column i is the eigenvector of eigval[i]
    count: int  # images that went in
    skipped: list[str] = field(default_factory=list)  # files that could not be decoded

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "Stats":
        return cls(**d)


def read(path: Path) -> Stats:
    """Statistics that ``to_dict`` wrote to ``path``; a ValueError saying what
    is wrong when the file holds anything else (damaged, or tampered with)."""
    try:
        with warnings.catch_warnings():  # torch's remarks on a file it then refuses: the error says enough
            warnings.simplefilter("ignore")
            d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"not readable ({type(e).__name__})") from None
    fields = set(Stats.__dataclass_fields__)
    if not isinstance(d, dict) or set(d) != fields or not isinstance(d["size"], int) or not isinstance(d["count"], int):
        raise ValueError(f"not a dict of the statistics' {', '.join(sorted(fields))}")
    size = d["size"]
    for key, shape in {"mean_image": (3, size, size), "mean_rgb": (3,), "eigval": (3,), "eigvec": (3, 3)}.items():
        t = d[key]
        if not (torch.is_tensor(t) and t.is_floating_point() and tuple(t.shape) == shape):
            raise ValueError(f"its {key} is not a floating-point tensor of shape {shape}")
    return Stats.from_dict(d)


def cache_dir() -> Path:
    return Path(os.environ.get("ILSVRC_CACHE") or Path.home() / ".cache" / "ilsvrc")


def cache_key(split: Split, size: int) -> str:
    return hashlib.sha256(f"{split.fingerprint()}|{size}".encode()).hexdigest()[:24]


class Contribution(NamedTuple):
    """One image's part of the sums, its products computed already (in a
    pack's loader worker, so that the main process only adds them up)."""

    image: np.ndarray  # uint8 (3, size, size)
    products: np.ndarray  # int64 (3, 3): rgb_products(image)


def rgb_products(img: torch.Tensor) -> torch.Tensor:
    """The 3x3 sums over ``img``'s pixels of the products of their 0-255 RGB
    values, int64. Computed in float64 (BLAS), and exact: every partial sum is
    a whole number below 255**2 * size**2 < 2**53 (size < 372,000), so no
    order of summation, thread count or library rounds it."""
    x = torch.as_tensor(img).reshape(3, -1).to(torch.float64)
    return (x @ x.T).to(torch.int64)


class Accumulator:
    """Running sums for the mean image and the RGB covariance, in whole
    numbers (pixel values and their products), so exact: the same images give
    the same sums, bit for bit, in any order or grouping. A pack resumed from
    a saved ``state_dict`` ends with the statistics of one never stopped."""

    def __init__(self, size: int):
        self.size = size
        self.total = torch.zeros(3, size, size, dtype=torch.float64)  # whole numbers below 2**53 (255 x 3.5e13 images): exact
        self.outer = torch.zeros(3, 3, dtype=torch.int64)  # sums of rgb_products
        self.count = 0
        self.skipped: list[str] = []

    def add(self, img: "torch.Tensor | Contribution") -> None:
        """Add one uint8 (3, size, size) image, or its ``Contribution``."""
        if isinstance(img, Contribution):
            img, products = torch.as_tensor(img.image), torch.as_tensor(img.products)
        else:
            products = rgb_products(img)
        self.total += img
        self.outer += products
        self.count += 1

    def state_dict(self) -> dict:
        return {"size": self.size, "total": self.total, "outer": self.outer, "count": self.count, "skipped": list(self.skipped)}

    def load_state_dict(self, state: dict) -> None:
        """The sums ``state_dict`` saved, exactly (checked: a state of another size is a ValueError)."""
        if state.get("size") != self.size or state["total"].shape != self.total.shape or state["outer"].dtype != torch.int64:
            raise ValueError(f"not the sums of {self.size}x{self.size} images")
        self.total, self.outer = state["total"].to(torch.float64), state["outer"].clone()
        self.count, self.skipped = int(state["count"]), list(state["skipped"])

    def result(self, where: str = "the training split") -> Stats:
        if self.count == 0:
            raise UserError(f"no readable images in {where}")
        size = self.size
        mean_image = self.total / self.count
        mean_rgb = mean_image.mean(dim=(1, 2))
        m = mean_rgb / 255.0
        cov = self.outer.to(torch.float64) / (255.0**2 * self.count * size * size) - torch.outer(m, m)
        eigval, eigvec = torch.linalg.eigh(cov)  # ascending
        order = eigval.argsort(descending=True)
        return Stats(
            size=size,
            mean_image=mean_image.float(),
            mean_rgb=mean_rgb.float(),
            eigval=eigval[order].clamp(min=0).float(),
            eigvec=eigvec[:, order].float(),
            count=self.count,
            skipped=list(self.skipped),
        )


def compute(split: Split, size: int, workers: int = 0, progress: bool = True) -> Stats:
    """One pass over ``split``'s images rescaled to ``size x size``."""
    loader = DataLoader(Rescaled(split, size), batch_size=None, num_workers=workers, generator=torch.Generator())
    acc = Accumulator(size)
    for img, name in tqdm(loader, desc="statistics", unit="img", disable=not progress, leave=False):
        if img is None:
            warn_skipped(name)
            acc.skipped.append(name)
        else:
            acc.add(img)
    return acc.result(str(split.root))


def cache_path(split: Split, size: int) -> Path:
    return cache_dir() / "stats" / f"{cache_key(split, size)}.pt"


def load_or_compute(split: Split, size: int, workers: int = 0, progress: bool = True) -> Stats:
    """The statistics of ``split`` at ``size``, from the cache when present."""
    stored = getattr(split, "stored_stats", lambda size: None)(size)
    if stored is not None:  # a packed store carries its own
        return stored
    path = cache_path(split, size)
    if path.exists():
        try:
            return read(path)
        except ValueError:  # a damaged cache entry is recomputed, not fatal
            pass
    stats = compute(split, size, workers, progress)
    atomic_save(stats.to_dict(), path)
    return stats
