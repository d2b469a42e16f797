"""One image, read from a file or from an archive's bytes: decoded to RGB,
rescaled to the stored square.

The bottom of ``data/``: what every kind of dataset (an ImageFolder tree, a
packed store) and the prediction path do with a single image, and the one
warning for a file that nothing can decode.
"""

import io
import warnings

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, encode_jpeg, read_file
from torchvision.transforms.v2 import functional as TF


def decode_rgb(source: str | bytes) -> torch.Tensor | None:
    """The image at the path ``source``, or in the bytes ``source`` (a member
    of an archive, ``archives.py``), as a uint8 RGB tensor (3, H, W), or None
    if neither torchvision's decoders nor PIL can read it."""
    in_memory = isinstance(source, bytes | bytearray)
    try:
        data = torch.frombuffer(bytearray(source), dtype=torch.uint8) if in_memory else read_file(source)
        return decode_image(data, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError, OSError):
        pass
    try:  # PIL reads formats and corner cases torchvision's decoders do not
        with Image.open(io.BytesIO(source) if in_memory else source) as im:
            return TF.pil_to_tensor(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None


def for_store(img: torch.Tensor, data: bytes, size: int, encoding: str, quality: int) -> tuple[torch.Tensor, np.ndarray]:
    """``(the image at size x size, what a store keeps of it)`` for ``img``
    decoded from the file bytes ``data``: its raw CHW pixels, or a JPEG file,
    the source's own bytes when it is a JPEG of that geometry already (no
    second compression). The rule of ``store.pack``'s encoder, for images
    read from memory (``archives.py``)."""
    if img.shape[1:] == (size, size) and encoding == "jpeg" and data[:3] == b"\xff\xd8\xff":
        try:
            again = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except RuntimeError:
            again = None
        if again is not None and torch.equal(again, img):
            return img, np.frombuffer(bytearray(data), dtype=np.uint8)
    img = rescale(img, size)
    if encoding == "raw":
        return img, img.contiguous().numpy().reshape(-1)
    return img, encode_jpeg(img, quality=quality).numpy()


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
