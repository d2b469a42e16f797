"""Checkpoints and other run files, written atomically.

A file is written to a temporary name in the same folder, flushed to disk and
renamed over the old one, so a crash or a kill at any moment leaves either
the old file or the new one, never half of one.
"""

import os
import tempfile
from pathlib import Path

import torch

from .errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(file)`` on a temporary file, then rename it to ``path``
    (with the permissions an ordinary new file gets, not mkstemp's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load(path: str | os.PathLike) -> dict:
    """A checkpoint written by ``ilsvrc train``, on the CPU."""
    path = Path(path)
    if path.is_dir():  # a run directory: its best checkpoint, else its last
        path = next((path / n for n in ("best.pt", "last.pt") if (path / n).exists()), path / "last.pt")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise UserError(f"{path} is not an ilsvrc checkpoint")
    return ckpt


def mismatch(error: RuntimeError, most: int = 300) -> str:
    """What ``load_state_dict``'s error says is wrong, in one line: its first
    missing, unexpected or mis-sized entry (the line after the error's
    "Error(s) in loading state_dict for X:" heading), at most ``most``
    characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
    return detail if len(detail) <= most else detail[: most - 3] + "..."
