"""The papers' transforms of one image: a stored uint8 square (3, R, R) -> views.

Every image is stored as the central R x R square of the image rescaled so
that its shorter side is R (AlexNet Sec. 2). A training view is a window of
that square (``crop``: "random" for AlexNet, "scale" for VGG and ResNet,
"area" for GoogLeNet, "pad" for ResNet-CIFAR), rescaled to the network input
S where its side differs, then reflected, photometrically distorted and lit
(PCA lighting); test views are crops of the square rescaled to
``test_resize``. Pixels stay in 0-255, minus the mean (image or RGB) of the
same window. An image's random draws (``Draw``) come from a counter-based
generator (``uniforms``) keyed by its seed, so that ``batched.py`` makes the
same draws for a whole batch on the device. The choices the papers leave
open are in docs/models.md ("The data pipeline") and docs/alexnet.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF

from .images import rescale  # noqa: F401 (also imported from here)

if TYPE_CHECKING:
    from .stats import Stats

CROPS = ("random", "scale", "area", "pad")
TEST_CROPS = (1, 10)
MEANS = ("image", "channel")  # the per-pixel mean image, or the mean RGB
# Which of an image's random numbers each choice uses (``uniforms`` columns).
U_TOP, U_LEFT, U_FLIP, U_NORMAL, U_PHOTO, U_SCALE, U_AREA = 0, 1, 2, 3, 7, 10, 11
_AREA_TRIES = 10  # draws of an area window before falling back to the whole square (as torchvision's RandomResizedCrop)
U_COUNT = U_AREA + 2 * _AREA_TRIES
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 luma, torchvision's greyscale


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for 32-bit ``x`` and ``c``, in int64 without overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (Wellons' "lowbias32") of int64 values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def uniforms(seeds: torch.Tensor, count: int = U_COUNT) -> torch.Tensor:
    """(B, count) float64 numbers uniform in (0, 1): column k of row i a hash
    of (``seeds[i]``, k). ``seeds``: int64, non-negative, on any device."""
    key = _hash32(_hash32(seeds & 0xFFFFFFFF) ^ ((seeds >> 32) & 0x7FFFFFFF))
    counter = _hash32(torch.arange(count, device=seeds.device) * 0x9E3779B9 & 0xFFFFFFFF)
    u = _hash32(key[:, None] ^ counter[None, :])
    return (u.double() + 0.5) / 2.0**32


def normals(u: torch.Tensor) -> torch.Tensor:
    """(B, 3) standard normal numbers from (B, 4) uniforms (Box-Muller)."""
    r1, r2 = torch.sqrt(-2.0 * torch.log(u[:, 0])), torch.sqrt(-2.0 * torch.log(u[:, 2]))
    t1, t2 = 2.0 * math.pi * u[:, 1], 2.0 * math.pi * u[:, 3]
    return torch.stack([r1 * torch.cos(t1), r1 * torch.sin(t1), r2 * torch.cos(t2)], 1)


def starts(u: torch.Tensor, room: int) -> torch.Tensor:
    """Window starts from uniforms ``u``: each of ``room`` places equally
    likely (the one rule of ``PaperTransforms.draw`` and the batched path)."""
    return (u * room).long().clamp(max=room - 1)


def resize_float(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """A float image or batch rescaled to ``size`` (antialiased bilinear)."""
    size = (size, size) if isinstance(size, int) else size
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    batch = x if x.dim() == 4 else x.unsqueeze(0)
    out = F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out if x.dim() == 4 else out[0]


def check_settings(image_size: int, resize: int, mean: str, test_crops: int = 1, *, crop: str = "random",
                   scale=None, area=None, aspect=None, padding: int = 0, photometric: float = 0.0,
                   test_resize: int | None = None) -> None:
    """Raise ValueError for settings the transforms cannot follow."""
    if mean not in MEANS:
        raise ValueError(f"mean must be 'image' or 'channel', not {mean!r}")
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {', '.join(CROPS)}, not {crop!r}")
    if image_size < 1:
        raise ValueError(f"image size must be positive, not {image_size}")
    if crop == "random" and image_size > resize:
        raise ValueError(f"image size {image_size} must be at most the rescaled size {resize}")
    if crop == "scale":
        if not (scale and len(scale) == 2 and image_size <= scale[0] <= scale[1] <= resize):
            raise ValueError(f"scale must be [S_min, S_max] with image size {image_size} <= S_min <= S_max <= rescaled size {resize}, not {scale}")
    if crop == "area":
        if not (area and len(area) == 2 and 0 < area[0] <= area[1] <= 1):
            raise ValueError(f"area must be [min, max] fractions in (0, 1], not {area}")
        if not (aspect and len(aspect) == 2 and 0 < aspect[0] <= aspect[1]):
            raise ValueError(f"aspect must be [min, max] positive ratios, not {aspect}")
    if crop == "pad" and not (0 <= padding and image_size <= resize + 2 * padding):
        raise ValueError(f"padding {padding} must be >= 0 and leave room for the image size {image_size}")
    if photometric < 0 or photometric >= 1:
        raise ValueError(f"photometric must be in [0, 1), not {photometric}")
    if test_resize is not None and not image_size <= test_resize:
        raise ValueError(f"test_resize {test_resize} must be at least the image size {image_size}")
    if test_crops not in TEST_CROPS:
        raise ValueError(f"test crops must be 1 or 10, not {test_crops}")


def crop_places(side: int, size: int, crops: int) -> list[tuple[int, int, bool]]:
    """(top, left, reflected) of each ``size`` x ``size`` test crop of a square
    of side ``side``: the centre crop (``crops`` 1), or the ten crops of
    AlexNet Sec. 4.1 (``crops`` 10) in torchvision's ``ten_crop`` order: the
    four corners and the centre, then the same five of the reflected square.
    Places are in the unreflected square (a reflected crop is the crop there,
    flipped), so the reflected centre crop sits at ``room - centre`` from the
    left when the room is odd."""
    room = side - size
    centre = int(round(room / 2.0))  # torchvision's center_crop
    if crops == 1:
        return [(centre, centre, False)]
    if crops == 10:
        corners = [(0, 0), (0, room), (room, 0), (room, room), (centre, centre)]
        mirrored = [(0, room), (0, 0), (room, room), (room, 0), (centre, room - centre)]
        return [(t, l, False) for t, l in corners] + [(t, l, True) for t, l in mirrored]
    raise ValueError(f"test crops must be 1 or 10, not {crops}")


@dataclass
class Draw:
    """The random choices for one image in one presentation."""

    top: int  # the window in the stored square (negative or beyond R: padding)
    left: int
    flip: bool
    alpha: torch.Tensor  # (3,), a_i ~ N(0, pca_lighting)
    height: int = 0  # the window's size; 0: the network input size (no rescaling)
    width: int = 0
    photo: torch.Tensor | None = None  # (3,): brightness, contrast, saturation factors


def window(x: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """``x[..., top:top+height, left:left+width]``, zeros where the window
    lies outside ``x``."""
    h, w = x.shape[-2:]
    pads = (max(0, -left), max(0, left + width - w), max(0, -top), max(0, top + height - h))
    inner = x[..., max(top, 0) : min(top + height, h), max(left, 0) : min(left + width, w)]
    return F.pad(inner, pads) if any(pads) else inner


def distort(x: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast and saturation factors ``photo`` applied to a
    float RGB window in 0-255 (torchvision's definitions, without clamping)."""
    b, c, s = photo.tolist()
    luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(3, 1, 1)
    x = x * b
    grey = (x * luma).sum(0, keepdim=True)
    x = (x - grey.mean()) * c + grey.mean()
    grey = (x * luma).sum(0, keepdim=True)
    return (x - grey) * s + grey


class PaperTransforms:
    """Training views (crop, reflection, lighting, distortions) and test views
    (centre or ten crops of the square rescaled to ``test_resize``; the whole
    rescaled square for dense evaluation)."""

    def __init__(self, stats: Stats, image_size: int, mean: str, flip: bool, pca_lighting: float, *,
                 crop: str = "random", scale=None, area=None, aspect=None, padding: int = 0,
                 photometric: float = 0.0, test_resize: int | None = None):
        check_settings(image_size, stats.size, mean, crop=crop, scale=scale, area=area, aspect=aspect,
                       padding=padding, photometric=photometric, test_resize=test_resize)
        self.stats = stats
        self.image_size = image_size
        self.flip = flip
        self.pca_lighting = pca_lighting
        self.crop, self.scale, self.area, self.aspect = crop, scale, area, aspect
        self.padding = padding if crop == "pad" else 0
        self.photometric = photometric
        self.test_resize = test_resize or stats.size
        self.mean = stats.mean_image if mean == "image" else stats.mean_rgb.view(3, 1, 1)

    @classmethod
    def from_recipe(cls, stats: Stats, data: dict) -> PaperTransforms:
        """The transforms of a recipe's ``[data]`` table."""
        return cls(stats, data["image_size"], data["mean"], data["flip"], data["pca_lighting"],
                   crop=data.get("crop", "random"), scale=data.get("scale"), area=data.get("area"),
                   aspect=data.get("aspect"), padding=data.get("padding", 0), photometric=data.get("photometric", 0.0),
                   test_resize=data.get("test_resize"))

    @property
    def resizes(self) -> bool:
        """Whether training windows are rescaled (so differ in size)."""
        return self.crop in ("scale", "area")

    def subtract_mean(self, img: torch.Tensor) -> torch.Tensor:
        return img.float() - self.mean

    def _window_size(self, u: list[float]) -> tuple[int, int]:
        r, s = self.stats.size, self.image_size
        if self.crop == "scale":
            t = min(self.scale[1], self.scale[0] + int(u[U_SCALE] * (self.scale[1] - self.scale[0] + 1)))
            side = min(r, max(1, round(s * r / t)))
            return side, side
        if self.crop == "area":
            log_lo, log_hi = math.log(self.aspect[0]), math.log(self.aspect[1])
            for i in range(_AREA_TRIES):
                a, b = u[U_AREA + 2 * i], u[U_AREA + 2 * i + 1]
                target = r * r * (self.area[0] + a * (self.area[1] - self.area[0]))
                ratio = math.exp(log_lo + b * (log_hi - log_lo))
                w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
                if 0 < w <= r and 0 < h <= r:
                    return h, w
            return r, r
        return s, s

    def draw(self, seed: int) -> Draw:
        """The draws of the image whose seed (run, epoch, image) is ``seed``."""
        row = uniforms(torch.tensor([seed], dtype=torch.long))[0]
        u = row.tolist()
        r, p = self.stats.size, self.padding
        height, width = self._window_size(u)
        top = int(starts(row[U_TOP], r + 2 * p - height + 1)) - p
        left = int(starts(row[U_LEFT], r + 2 * p - width + 1)) - p
        flip = self.flip and u[U_FLIP] < 0.5
        alpha = normals(row[None, U_NORMAL : U_NORMAL + 4])[0].float() * self.pca_lighting
        photo = None
        if self.photometric:
            photo = 1.0 + (2.0 * row[U_PHOTO : U_PHOTO + 3].float() - 1.0) * self.photometric
        return Draw(top, left, flip, alpha, height, width, photo)

    def lighting_offset(self, alpha: torch.Tensor) -> torch.Tensor:
        """The RGB offset ``[p1 p2 p3][a1 l1, a2 l2, a3 l3]^T``, in 0-255 units."""
        return 255.0 * (self.stats.eigvec @ (alpha * self.stats.eigval))

    def apply(self, img: torch.Tensor, d: Draw, mean: torch.Tensor | None = None) -> torch.Tensor:
        """The training view of a stored uint8 square under draw ``d`` (on the
        image's device; ``mean``: the mean on that device, if not the CPU)."""
        s = self.image_size
        h, w = d.height or s, d.width or s
        mean = self.mean if mean is None else mean
        x = window(img, d.top, d.left, h, w).float()
        if d.photo is not None:
            x = distort(x, d.photo)
        # the window of (image - mean), computed on the window only; zero in the padding
        if mean.shape[1] == 1:  # the mean RGB: subtracted inside the image only
            x = x - mean
            if self.padding:
                x = x * window(torch.ones_like(img[:1], dtype=x.dtype), d.top, d.left, h, w)
        else:  # the mean image, padded with zeros like the image
            x = x - window(mean, d.top, d.left, h, w)
        x = resize_float(x, s)
        if d.flip:
            x = x.flip(-1)
        if self.pca_lighting:
            x = x + self.lighting_offset(d.alpha).to(x.device).view(3, 1, 1)
        return x

    def train(self, img: torch.Tensor, seed: int) -> torch.Tensor:
        return self.apply(img, self.draw(seed))

    def square(self, img: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """The mean-subtracted square rescaled to ``size`` (default: test_resize):
        what test crops are cut from, and what dense evaluation sees whole."""
        return resize_float(self.subtract_mean(img), size or self.test_resize)

    def test(self, img: torch.Tensor, crops: int = 1) -> torch.Tensor:
        """(crops, 3, S, S): the centre crop, or the ten crops of AlexNet
        Sec. 4.1 (four corners and centre, then their reflections), of the
        square rescaled to ``test_resize``."""
        x, s = self.square(img), self.image_size
        views = []
        for top, left, flip in crop_places(x.shape[-1], s, crops):
            view = x[:, top : top + s, left : left + s]
            views.append(view.flip(-1) if flip else view)
        return torch.stack(views)

    def grid(self, square: torch.Tensor, per_side: int) -> torch.Tensor:
        """(2 * per_side**2, 3, S, S): crops of a mean-subtracted square on a
        regular per_side x per_side grid, and their reflections (VGG Sec. 3.2
        multi-crop: 5 x 5 crops and 2 flips per scale)."""
        room = square.shape[-1] - self.image_size
        places = torch.linspace(0, room, per_side).round().int().tolist()
        s = self.image_size
        crops = torch.stack([square[:, t : t + s, l : l + s] for t in places for l in places])
        return torch.cat([crops, crops.flip(-1)])

    def crops144(self, img: torch.Tensor, scales: list[int]) -> torch.Tensor:
        """(len(scales) * 36, 3, S, S): GoogLeNet Sec. 7 test crops of a whole
        uint8 image (not the stored square): the shorter side rescaled to each
        scale; the left, centre and right squares (top, centre and bottom for
        portrait images); of each square the four corner and the centre crops
        and the square rescaled to S; and their reflections. With four scales,
        4 x 3 x 6 x 2 = 144 crops. The mean RGB is subtracted (a mean image
        of the stored square has no meaning for whole images of other shapes)."""
        s = self.image_size
        x = img.float() - self.stats.mean_rgb.view(3, 1, 1)
        views = []
        for q in scales:
            y = TF.resize(x, [q], antialias=True)
            h, w = y.shape[-2:]
            long_room = max(h, w) - q
            five = crop_places(q, s, 10)[:5]  # the four corners and the centre
            for offset in (0, long_room // 2, long_room):
                square = y[:, offset : offset + q, :q] if h > w else y[:, :q, offset : offset + q]
                views.extend([square[:, t : t + s, l : l + s] for t, l, _ in five])
                views.append(resize_float(square, s))
        views = torch.stack(views)
        return torch.cat([views, views.flip(-1)])
