"""The default dataset: Imagenette, ten ImageNet classes of real ILSVRC photos.

``$ILSVRC_DATA/imagenette`` when ``ILSVRC_DATA`` is set; else Imagenette
(320 px) in the cache (``$ILSVRC_CACHE/datasets``), downloaded with
torchvision's ``Imagenette`` dataset the first time.
"""

import os
from pathlib import Path

from ..errors import UserError
from .stats import cache_dir

HINT = "pass --data DIR (a folder with train/<class>/<image> and val/<class>/<image>) or set ILSVRC_DATA"


def download_imagenette(root: Path) -> Path:
    """Download and unpack Imagenette (320 px) under ``root``; its folder."""
    from torchvision.datasets import Imagenette

    Imagenette(str(root), split="train", size="320px", download=True)
    return root / "imagenette2-320"


def default_data(download=None) -> Path:
    """The folder ``ilsvrc train`` uses when no ``--data`` is given."""
    download = download or download_imagenette
    env = os.environ.get("ILSVRC_DATA")
    if env:
        folder = Path(env).expanduser() / "imagenette"
        if not folder.is_dir():
            raise UserError(f"ILSVRC_DATA is set but {folder} does not exist; {HINT}")
        return folder
    root = cache_dir() / "datasets"
    folder = root / "imagenette2-320"
    if (folder / "train").is_dir() and (folder / "val").is_dir():
        return folder
    try:
        return download(root)
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"no data: Imagenette is not in {root} and could not be downloaded ({reason}); {HINT}") from None
