"""One image, read from a file: decoded to RGB, rescaled to the stored square.

The bottom of ``data/``: what every kind of dataset (an ImageFolder tree, a
packed store) and the prediction path do with a single image, and the one
warning for a file that nothing can decode.
"""

import warnings

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2 import functional as TF


def decode_rgb(path: str) -> torch.Tensor | None:
    """The image at ``path`` as a uint8 RGB tensor (3, H, W), or None if
    neither torchvision's decoders nor PIL can read it."""
    try:
        return decode_image(read_file(path), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError, OSError):
        pass
    try:  # PIL reads formats and corner cases torchvision's decoders do not
        with Image.open(path) as im:
            return TF.pil_to_tensor(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None


def rescale(img: torch.Tensor, size: int) -> torch.Tensor:
    """AlexNet Sec. 2: shorter side rescaled to ``size``, then the central square."""
    img = TF.resize(img, [size], antialias=True)
    return TF.center_crop(img, [size, size])


class SkippedImageWarning(UserWarning):
    """An image file that no decoder could read was left out."""


_warned: set[str] = set()


def warn_skipped(paths: list[str] | str) -> None:
    """One warning per unreadable file per process, however often it is met."""
    for path in [paths] if isinstance(paths, str) else paths:
        if path not in _warned:
            _warned.add(path)
            warnings.warn(f"skipped {path}: not a readable image", SkippedImageWarning, stacklevel=2)
