"""The paper's transforms (AlexNet Sec. 2 and 4.1), on uint8 tensors (3, H, W).

Pixels stay in the 0-255 range of cuda-convnet; the mean image is subtracted
from each 256x256 image before cropping, so a crop sees the matching crop of
the mean.

PCA lighting adds ``[p1 p2 p3][a1 l1, a2 l2, a3 l3]^T`` to every pixel. The
paper does not say in which units ``l_i`` are; in 0-255 units the largest
eigenvalue of natural images is about 10^4 and the offsets would swamp the
image, so we follow the usual reading (fb.resnet.torch, most Caffe forks):
eigenvalues of the covariance of RGB values scaled to [0, 1], and the offset
scaled back by 255.

The random draws of one presentation are an explicit ``Draw`` so that a
batched implementation can be checked against this one with the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torchvision.transforms.v2 import functional as TF

if TYPE_CHECKING:
    from .stats import Stats


def rescale(img: torch.Tensor, size: int) -> torch.Tensor:
    """Sec. 2: shorter side rescaled to ``size``, then the central square."""
    img = TF.resize(img, [size], antialias=True)
    return TF.center_crop(img, [size, size])


def check_settings(image_size: int, resize: int, mean: str, test_crops: int = 1) -> None:
    """Raise ValueError for settings the transforms cannot follow."""
    if mean not in ("image", "channel"):
        raise ValueError(f"mean must be 'image' or 'channel', not {mean!r}")
    if not 0 < image_size <= resize:
        raise ValueError(f"image size {image_size} must be positive and at most the rescaled size {resize}")
    if test_crops not in (1, 10):
        raise ValueError(f"test crops must be 1 or 10, not {test_crops}")


@dataclass
class Draw:
    """The random choices for one image in one presentation (Sec. 4.1)."""

    top: int
    left: int
    flip: bool
    alpha: torch.Tensor  # (3,), a_i ~ N(0, pca_lighting)


class PaperTransforms:
    """Mean subtraction, random crop and reflection, PCA lighting; centre and
    ten-crop views for testing."""

    def __init__(self, stats: Stats, image_size: int, mean: str, flip: bool, pca_lighting: float):
        check_settings(image_size, stats.size, mean)
        self.stats = stats
        self.image_size = image_size
        self.flip = flip
        self.pca_lighting = pca_lighting
        self.mean = stats.mean_image if mean == "image" else stats.mean_rgb.view(3, 1, 1)

    def subtract_mean(self, img: torch.Tensor) -> torch.Tensor:
        return img.float() - self.mean

    def draw(self, generator: torch.Generator) -> Draw:
        room = self.stats.size - self.image_size + 1
        top, left = torch.randint(room, (2,), generator=generator).tolist()
        flip = self.flip and bool(torch.randint(2, (1,), generator=generator))
        alpha = torch.randn(3, generator=generator) * self.pca_lighting
        return Draw(top, left, flip, alpha)

    def lighting_offset(self, alpha: torch.Tensor) -> torch.Tensor:
        """The RGB offset ``[p1 p2 p3][a1 l1, a2 l2, a3 l3]^T``, in 0-255 units."""
        return 255.0 * (self.stats.eigvec @ (alpha * self.stats.eigval))

    def apply(self, img: torch.Tensor, d: Draw) -> torch.Tensor:
        """The training view of a ``size x size`` uint8 image under draw ``d``."""
        s = self.image_size
        rows, cols = slice(d.top, d.top + s), slice(d.left, d.left + s)
        mean = self.mean if self.mean.shape[1] == 1 else self.mean[:, rows, cols]
        x = img[:, rows, cols].float() - mean  # the crop of (image - mean), computed on the crop only
        if d.flip:
            x = x.flip(-1)
        if self.pca_lighting:
            x = x + self.lighting_offset(d.alpha).view(3, 1, 1)
        return x

    def train(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(img, self.draw(generator))

    def test(self, img: torch.Tensor, crops: int = 1) -> torch.Tensor:
        """(crops, 3, S, S): the centre crop, or the ten crops of Sec. 4.1
        (four corners and centre, then their reflections)."""
        x = self.subtract_mean(img)
        s = [self.image_size, self.image_size]
        if crops == 1:
            return TF.center_crop(x, s).unsqueeze(0)
        if crops == 10:
            return torch.stack(TF.ten_crop(x, s))
        raise ValueError(f"test crops must be 1 or 10, not {crops}")
