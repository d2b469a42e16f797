"""Where the work runs: the device, its number format and the loader workers."""

import contextlib
import os

import torch

from .errors import UserError


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name} asked for, but this machine has no CUDA GPU")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"device {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return dev


PRECISIONS = ("auto", "float32", "bf16")  # how the forward pass computes (--precision)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def uses_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether ``precision`` on ``device`` means bf16 autocast ("auto": on a GPU only)."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast where ``precision`` says so (``"auto"``: on CUDA, plain
    float32 elsewhere; ``"bf16"`` on a CPU too, to check the GPU's arithmetic
    without a GPU); a context that does nothing for float32."""
    if uses_bf16(device, precision):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def default_workers(workers: int | None = None, cap: int | None = 8) -> int:
    """Loader worker processes: as asked, else one per core up to ``cap``
    (8 feed a training step; None: every core, for ``pack``, whose workers
    do all of its work while its main process only writes)."""
    if workers is not None:
        if workers < 0:
            raise UserError(f"--workers must be 0 or more, not {workers}")
        return workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores if cap is None else min(cap, cores)
