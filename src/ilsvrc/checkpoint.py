"""Checkpoints and other run files, written atomically.

A file is written to a temporary name in the same folder, flushed to disk and
renamed over the old one, so a crash or a kill at any moment leaves either
the old file or the new one, never half of one. An error the operating
system reports while writing (no space left, read-only folder) is raised as
an ``OSError`` naming the file, with the old file still in place.
"""

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path

import torch

from .errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _sigint_held():
    """A Ctrl-C that comes inside the block takes effect at its end. Raised
    inside torch.save, whose writer calls back into Python from C++, a
    KeyboardInterrupt breaks the writer: a RuntimeError traceback, or the
    whole process aborted ("terminate called after throwing an instance of
    'pybind11::error_already_set'")."""
    handler = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or handler is None:  # not ours to hold
        yield
        return
    held = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        for _ in held:  # each to the handler that was there before (a second one may stop at once)
            signal.raise_signal(signal.SIGINT)


def _os_error(e: BaseException) -> OSError | None:
    """The operating system's error behind a failed write: torch.save reports
    one from its writer as a RuntimeError raised while handling it."""
    cause = e.__context__ if isinstance(e, RuntimeError) else e
    return cause if isinstance(cause, OSError) and cause.errno is not None else None


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(file)`` on a temporary file, then rename it to ``path``
    (with the permissions an ordinary new file gets, not mkstemp's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    with _sigint_held():
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            if (error := _os_error(e)) is not None:  # named by the file it was to be, not the temporary one
                raise OSError(error.errno, error.strerror, str(path)) from e
            raise


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, atomically, each tensor saved as itself
    (``compact``)."""
    obj = compact(obj)
    atomic_write(path, lambda f: torch.save(obj, f))


def compact(obj):
    """``obj`` (tensors in dicts, lists and tuples) with every tensor that
    views part of a larger one copied to its own memory: torch.save writes a
    tensor's whole storage, and the weights of runs trained stacked are rows
    of their stack's tensors (``stacked.py``)."""
    if torch.is_tensor(obj):
        return obj.clone() if obj.untyped_storage().nbytes() > obj.numel() * obj.element_size() else obj
    if isinstance(obj, dict):
        out = type(obj)((k, compact(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):  # a state dict's module versions (load_state_dict reads them)
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(compact(v) for v in obj)
    return obj


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
    require_finite(ckpt["model"], path)
    return ckpt


def nonfinite(state: dict) -> str | None:
    """The first entry of the state dict ``state`` that holds a NaN or an
    infinity, or None; one read from the device for all of them. A tensor's
    sum is NaN or infinite when one of its values is, and a sum is one pass
    over the weights without the boolean copy ``isfinite(v).all()`` makes; a
    sum can overflow only when the weights near float32's limit, 3e38,
    which is divergence too."""
    floats = {k: v for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()}
    if not floats:
        return None
    finite = torch.stack([v.sum(dtype=torch.float32) for v in floats.values()]).isfinite().tolist()
    return next((k for k, ok in zip(floats, finite) if not ok), None)


def require_finite(state: dict, path) -> None:
    """Refuse the weights of a run that diverged before they give NaN
    probabilities or a meaningless error rate (eval, predict, export, resume)."""
    if (key := nonfinite(state)) is not None:
        raise UserError(f"{path} holds NaN or infinite weights ({key}): the run that wrote it diverged")


def mismatch(error: RuntimeError, most: int = 300) -> str:
    """What ``load_state_dict``'s error says is wrong, in one line: its first
    missing, unexpected or mis-sized entry (the line after the error's
    "Error(s) in loading state_dict for X:" heading), at most ``most``
    characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
    return detail if len(detail) <= most else detail[: most - 3] + "..."
