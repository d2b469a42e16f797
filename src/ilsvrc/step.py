"""One optimizer step (batch, forward, loss, backward, update), three ways.

Small networks at the papers' small batches (the CIFAR ResNets at 128, the
AlexNet Figure 1 network) are bound by the host, not the GPU: a step is a
few hundred tiny kernels, and launching them takes longer than running
them. So on a GPU the trainer runs the whole step as one CUDA graph:

- ``graph`` (``WholeStep``): one function does everything a step does: it
  assembles the batch (on resident data, from the epoch's order and draws
  made in one go at the epoch's start and a step counter on the device,
  ``data/resident.py``; else from static input buffers the batch is copied
  into), runs the network and its gradient with ``torch.func`` (so that the
  backward pass is part of the same traced function, with no autograd
  engine and no per-parameter work between the passes), applies the SGD
  update as ``torch.optim.SGD``'s foreach step computes it (weight decay,
  momentum, the learning rate read from a device tensor; ``sgd_update``),
  and adds the loss and error
  counts to device-side sums. ``torch.compile(fullgraph=True)`` traces it
  into one graph (a graph break is an error, and a test checks there is
  none), and on a GPU the compiled step is captured with
  ``torch.cuda.graph`` after one warm-up step for each batch shape and
  replayed: one launch per step. On the CPU the same compiled function runs
  without capture, which the tests compare with the eager step.
- ``default`` (``TrainStep``): the network compiled, the step around it
  eager; the choice under DDP (whose gradient hooks need the autograd
  engine).
- ``eager`` (``TrainStep``): plain PyTorch; the CPU's default.

Three things keep a captured step exact and its graph valid:

- the learning rate is a 0-d tensor on the device that the schedule writes
  in place (``schedule.set_lr``), only when it changes; a float would be baked into
  the graph;
- the momentum buffers exist before the first step (zeros, which is what
  SGD's first step amounts to), so the update has one code path;
- every tensor the graph touches keeps its address: parameters, buffers,
  momentum, the sums and the epoch's tables are written in place, never
  replaced (a checkpoint is loaded before the first step, and the epoch's
  tables are refilled, not reallocated).
"""

import warnings

import torch
from torch.nn import functional as F

from .device import autocast
from .errors import UserError, first_line
from .metrics import count_errors
from .schedule import lr_as_floats, lr_as_tensors

MODES = ("eager", "default", "graph")
ALIASES = {"reduce-overhead": "graph"}  # the name of the CUDA-graph mode before the whole step was one graph
BACKEND = "inductor"  # torch.compile's backend for the compiled modes


def pick_mode(compile: bool | str | None, device: torch.device, distributed: bool) -> str:
    """The step mode for ``compile`` (None: automatic; True: the best compiled
    mode for this run; False: eager; or a mode name)."""
    if isinstance(compile, str):
        compile = ALIASES.get(compile, compile)
        if compile not in MODES:
            raise UserError(f"compile must be true, false or one of {', '.join(MODES)}, not {compile!r}")
        if compile == "graph" and distributed:
            raise UserError("compile mode graph captures one process's step; under torchrun use default")
        return compile
    if compile is False or (compile is None and device.type != "cuda"):
        return "eager"
    return "default" if distributed else "graph"


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


def batch_totals(loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(summed loss, top-1 errors) of a batch, float64, for the running sums."""
    return torch.stack((loss.detach(), count_errors(logits.detach(), y, k=1)[0])).double()


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


def sgd_update(params: list, grads: list, bufs: list, lr: torch.Tensor | list, *, weight_decay: float, momentum: float,
               dampening: float, nesterov: bool) -> None:
    """SGD with weight decay and momentum, in place, as ``torch.optim.SGD``'s
    foreach step computes it for a tensor learning rate under torch.compile
    (``lr``: a 0-d tensor, or one tensor per parameter that broadcasts to it:
    stacked runs each have their own, ``stacked.py``).
    Written out because torch.optim's own functional step reads a tensor
    learning rate with ``.item()`` outside torch.compile, which a CUDA graph
    cannot capture (the epoch's short batch runs uncompiled)."""
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if momentum:
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads, alpha=1 - dampening)
        grads = torch._foreach_add(grads, bufs, alpha=momentum) if nesterov else bufs
    torch._foreach_add_(params, torch._foreach_mul(grads, -lr if torch.is_tensor(lr) else [-r for r in lr]))


class TrainStep:
    """``step(x, y, scale)``: one SGD step on batch ``(x, y)`` with the loss
    summed over the batch times ``scale`` (1 / the global batch size, times
    the number of processes under DDP). The summed loss and the number of
    top-1 errors are added to ``totals`` (float64, on the device), which the
    caller reads now and then and zeroes. ``precision``: the forward pass's
    arithmetic (``device.autocast``: "auto", "float32" or "bf16")."""

    def __init__(self, net: torch.nn.Module, opt: torch.optim.Optimizer, aux_weight: float, device: torch.device,
                 mode: str = "eager", backend=None, precision: str = "auto"):
        if mode not in ("eager", "default"):
            raise ValueError(f"TrainStep runs the eager and default modes, not {mode!r} (WholeStep: graph)")
        self.net, self.opt, self.aux_weight, self.device, self.mode = net, opt, aux_weight, device, mode
        self.precision = precision
        self.totals = torch.zeros(2, dtype=torch.float64, device=device)
        lr_as_floats(opt)
        if mode == "default":
            self.net = torch.compile(net, backend=backend or BACKEND)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, scale) -> None:
        with autocast(self.device, self.precision):
            loss, logits = loss_and_logits(self.net(x), y, self.aux_weight)
        (loss * scale).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.totals += batch_totals(loss, logits, y)


class CapturedStep:
    """A step function run as compiled code for full batches and replayed as
    CUDA graphs: what ``WholeStep`` and ``stacked.StackedStep`` share.

    ``_run(n, *args)`` calls ``self.compiled`` (batches of ``batch_size``) or
    ``self.step`` (a batch of another size, the epoch's one short last
    batch: the same function uncompiled, captured all the same; compiling a
    second shape would cost as long as the first compilation, about 40 s on
    an H200, for one step in hundreds). With ``capture`` (default: on a GPU)
    the first step of each size runs as it is and the second is recorded as
    a CUDA graph, which every later step of that size replays. A subclass
    defines ``step(n, *args)``, the function compiled and captured, and calls
    ``_compile``.
    """

    def __init__(self, device: torch.device, batch_size: int, capture: bool | None):
        self.device, self.batch_size = device, batch_size
        self.capture = device.type == "cuda" if capture is None else capture
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._warm: set[int] = set()  # sizes whose first (uncaptured) step is done
        self._uncaptured: set[int] = set()  # sizes whose capture failed
        self._pool = None

    def _compile(self, backend) -> None:
        self.compiled = torch.compile(self.step, fullgraph=True, dynamic=False, backend=backend or BACKEND)

    def _run(self, n: int, *args) -> None:
        fn = self.compiled if n == self.batch_size else self.step
        if not self.capture or n in self._uncaptured:
            return fn(n, *args)
        graph = self._graphs.get(n)
        if graph is not None:
            return graph.replay()
        if n not in self._warm:
            # The first step of each shape runs uncaptured, on a side stream as
            # PyTorch's whole-network capture does: it compiles, lets cuDNN and
            # Triton pick their kernels, and is a real step of the run.
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                fn(n, *args)
            torch.cuda.current_stream(self.device).wait_stream(side)
            self._warm.add(n)
            return
        graph = torch.cuda.CUDAGraph()
        self._pool = self._pool or torch.cuda.graph_pool_handle()  # the shapes' graphs never run at once: one pool
        try:
            with torch.cuda.graph(graph, pool=self._pool):
                fn(n, *args)
        except RuntimeError as e:  # a capture that fails executes nothing: run the step as it is
            warnings.warn(f"the training step on {n} images could not be captured as a CUDA graph "
                          f"({first_line(e)}); it runs uncaptured, slower")
            self._uncaptured.add(n)
            return fn(n, *args)
        self._graphs[n] = graph
        graph.replay()

    @property
    def graphs(self) -> int:
        """CUDA graphs captured so far (one per batch shape)."""
        return len(self._graphs)


class WholeStep(CapturedStep):
    """The whole SGD step as one compiled function, replayed on a GPU as one
    CUDA graph per batch shape (see the module's docstring).

    ``next(n)`` takes the next step on the ``n`` images that ``feed`` (a
    ``data.resident.ResidentFeed``) assembles inside the step; without a
    feed, ``step(x, y, scale)`` takes one on a batch that is already on the
    device (copied into static buffers first). ``totals`` as ``TrainStep``'s.
    ``capture``: record and replay CUDA graphs (default: on a GPU;
    ``CapturedStep``). ``precision`` as ``TrainStep``'s.
    """

    def __init__(self, model: torch.nn.Module, opt: torch.optim.SGD, aux_weight: float, device: torch.device,
                 batch_size: int, feed=None, backend=None, capture: bool | None = None, precision: str = "auto"):
        if len(opt.param_groups) != 1:
            raise ValueError("the whole step takes an optimizer with one parameter group")
        super().__init__(device, batch_size, capture)
        self.model, self.opt, self.aux_weight, self.feed, self.precision = model, opt, aux_weight, feed, precision
        lr_as_tensors(opt, device)
        start_momentum(opt)
        group = opt.param_groups[0]
        if group["maximize"]:
            raise ValueError("the whole step descends (maximize=False)")
        self.hyper = {k: group[k] for k in ("weight_decay", "momentum", "dampening", "nesterov")}
        self.lr = group["lr"]  # the device tensor that set_lr writes in place
        self.params = dict(model.named_parameters())
        self.buffers = dict(model.named_buffers())
        self.momentum = [opt.state[p]["momentum_buffer"] for p in self.params.values()] if group["momentum"] else []
        self.totals = torch.zeros(2, dtype=torch.float64, device=device)
        self._compile(backend)
        self._inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # static batches by size (no feed)

    def _loss(self, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor, scale: float):
        with autocast(self.device, self.precision):
            outputs = torch.func.functional_call(self.model, (params, buffers), (x,))
        loss, logits = loss_and_logits(outputs, y, self.aux_weight)
        return loss * scale, (loss.detach(), logits.detach())

    def step(self, n: int, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """The step itself, on the feed's next ``n`` images or on ``(x, y)``:
        what is traced, compiled and captured."""
        if x is None:
            x, y = self.feed.batch(n)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        grads, (loss, logits) = torch.func.grad(self._loss, has_aux=True)(self.params, self.buffers, x, y, 1.0 / n)
        with torch.no_grad():
            sgd_update(list(self.params.values()), [grads[k] for k in self.params], self.momentum, self.lr, **self.hyper)
            self.totals += batch_totals(loss, logits, y)

    def next(self, n: int) -> None:
        """The next step of the feed's epoch, on its next ``n`` images."""
        self._run(n)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, scale) -> None:
        n = len(y)
        if abs(scale * n - 1.0) > 1e-12:
            raise ValueError("the whole step averages over its own batch (scale 1 / n)")
        if not self.capture:
            return self._run(n, x, y)
        if n not in self._inputs:
            self._inputs[n] = (torch.empty_like(x), torch.empty_like(y))
        sx, sy = self._inputs[n]
        sx.copy_(x)
        sy.copy_(y)
        self._run(n, sx, sy)

