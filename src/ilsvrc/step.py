"""One optimizer step (forward, loss, backward, update), eager or compiled.

Small networks at the papers' small batches (the CIFAR ResNets at 128, the
AlexNet Figure 1 network) are bound by kernel launches, not arithmetic: each
step is a few hundred tiny kernels. On a GPU with device-resident data the
trainer therefore compiles the whole step with
``torch.compile(mode="reduce-overhead")``, which records the forward and
backward pass and the SGD update as CUDA graphs and replays them, one launch
each. Three things keep a captured step exact:

- the learning rate is a 0-d tensor on the device that the schedule writes
  into (``set_lr``); a float would be baked into the graph, and changing it
  would recompile;
- the momentum buffers exist before the first step (zeros, which is what
  SGD's first step amounts to), so the update has one code path and its
  state is not allocated inside a graph;
- shapes are static (``dynamic=False``): a run has at most two batch shapes
  (full batches and the epoch's last, shorter one) and each gets its own graph.

Modes (``MODES``): ``eager``; ``default`` (``torch.compile`` of the network,
the choice under DDP or with data streamed from the host); ``reduce-overhead``
(the whole step, CUDA graphs on a GPU; on the CPU the same compiled step
without graphs, which the tests use to check it against the eager step).
"""

import torch
from torch.nn import functional as F

from .device import autocast
from .errors import UserError
from .evaluate import count_errors

MODES = ("eager", "default", "reduce-overhead")
BACKEND = "inductor"  # torch.compile's backend for the compiled modes


def parse_compile(text: str) -> bool | str:
    """A compile setting from the command line: a boolean or a mode name."""
    if text in MODES:
        return text
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true, false or one of {', '.join(MODES)}, not {text!r}")


def pick_mode(compile: bool | str | None, device: torch.device, resident: bool, distributed: bool) -> str:
    """The step mode for ``compile`` (None: automatic; True: the best compiled
    mode for this run; False: eager; or a mode name)."""
    if isinstance(compile, str):
        if compile not in MODES:
            raise UserError(f"compile must be true, false or one of {', '.join(MODES)}, not {compile!r}")
        if compile == "reduce-overhead" and distributed:
            raise UserError("compile mode reduce-overhead captures one process's step; under torchrun use default")
        return compile
    if compile is False or (compile is None and device.type != "cuda"):
        return "eager"
    return "reduce-overhead" if resident and not distributed and device.type == "cuda" else "default"


def loss_and_logits(outputs, y: torch.Tensor, aux_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed loss, main logits): cross-entropy of the class scores, plus
    ``aux_weight`` times that of each auxiliary classifier (GoogLeNet Sec. 5)."""
    if isinstance(outputs, (tuple, list)):
        logits, *aux = outputs
    else:
        logits, aux = outputs, []
    loss = F.cross_entropy(logits.float(), y, reduction="sum")
    for a in aux:
        loss = loss + aux_weight * F.cross_entropy(a.float(), y, reduction="sum")
    return loss, logits


def hold_lr(opt: torch.optim.Optimizer, as_tensor: bool, device: torch.device) -> None:
    """Make each group's learning rate a 0-d float32 tensor on ``device``
    (for a captured step), or a plain float."""
    for group in opt.param_groups:
        lr = float(group["lr"])
        group["lr"] = torch.tensor(lr, dtype=torch.float32, device=device) if as_tensor else lr


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate: in place where it is a tensor (the
    captured step reads it from there)."""
    for group in opt.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def start_momentum(opt: torch.optim.SGD) -> None:
    """Zero momentum buffers where there are none yet: the same first update
    as SGD's own (buffer = gradient) with one code path for every step."""
    for group in opt.param_groups:
        if group["momentum"] == 0:
            continue
        for p in group["params"]:
            state = opt.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


class TrainStep:
    """``step(x, y, scale)``: one SGD step on batch ``(x, y)`` with the loss
    summed over the batch times ``scale`` (1 / the global batch size, times
    the number of processes under DDP); returns the summed loss and the
    number of top-1 errors as one float64 device tensor of two, for the
    caller to add up (read from the device only now and then)."""

    def __init__(self, net: torch.nn.Module, opt: torch.optim.Optimizer, aux_weight: float, device: torch.device,
                 mode: str = "eager", backend=None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.net, self.opt, self.aux_weight, self.device, self.mode = net, opt, aux_weight, device, mode
        backend = backend or BACKEND
        hold_lr(opt, mode == "reduce-overhead", device)
        if mode == "reduce-overhead":
            start_momentum(opt)
            self._run = torch.compile(self._step, mode=mode, dynamic=False, backend=backend)
        else:
            if mode == "default":
                self.net = torch.compile(net, backend=backend)
            self._run = self._step

    def _step(self, x: torch.Tensor, y: torch.Tensor, scale) -> torch.Tensor:
        with autocast(self.device):
            loss, logits = loss_and_logits(self.net(x), y, self.aux_weight)
        (loss * scale).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return torch.stack((loss.detach(), count_errors(logits.detach(), y, k=1)[0])).double()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, scale) -> torch.Tensor:
        if self.mode == "reduce-overhead" and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's outputs have been read
        return self._run(x, y, scale)
