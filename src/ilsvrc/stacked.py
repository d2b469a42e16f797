"""Runs of one network trained as one: their whole steps stacked into one.

Seeds of one network, and a plain network beside its residual twin, have
the same layers of the same shapes. ``StackedStep`` takes the step of N such
runs as one function: it holds the runs' weights, and stacks their batches,
along a new first dimension and runs one run's loss under ``torch.func.vmap``, so that
each convolution becomes one grouped convolution over the N runs (PyTorch's
batching rule for a convolution whose weights are batched), each batch norm
one over N times the channels, and so on: N times the work in each kernel,
for the kernels and launches of one run. It is compiled once for the N runs
and, on a GPU, captured as one CUDA graph (``step.CapturedStep``), where N
runs taking turns on streams (``together.py``) launch N graphs, and compile
once per network and batch shape (a seed's step reuses the code compiled
for the first).

Each run stays its own: its weights, momentum, batch-norm statistics and
running sums are rows of the stack's tensors (each run's tensor objects
become views of their rows, so its model, optimizer and loop read and write
them as before, and ``checkpoint.atomic_save`` writes each row alone); its
data order, draws and learning rate (a device tensor its own schedule
writes) are its own; nothing else of a run changes (its loop, metrics,
validation, checkpoints, resume, run folder). The runs share no
term of their losses, so the gradient of the summed loss with respect to run
i's stacked weights is the gradient of run i's own loss, and each run's
update is ``step.sgd_update``, as alone. What differs from a run alone is
the order of the sums inside the grouped convolutions: the weights agree to
rounding (float64 tests: ``tests/test_stacked.py``), not to the bit as runs
taking turns do.

A plain network stacked with its residual twin runs the residual network's
layers with each shortcut multiplied by a gate, 1 for the residual runs and
0 for the plain ones (``Gated``): ``F(x) + 0 * x`` is ``F(x)`` exactly, in
the forward and the backward pass. Networks with dropout are not stacked:
under vmap their masks would be drawn for all the runs at once, not as each
run draws them alone.
"""

import copy

import torch
from torch import nn

from .device import autocast
from .models.resnet import Block
from .step import CapturedStep, WholeStep, batch_totals, loss_and_logits, sgd_update


class Gated(nn.Module):
    """A shortcut times a gate (a buffer: 1 keeps it, 0 removes it), for a
    plain network stacked with its residual twin."""

    def __init__(self, shortcut: nn.Module, gate: torch.Tensor):
        super().__init__()
        self.shortcut = shortcut
        self.register_buffer("gate", gate, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate * self.shortcut(x)


def stack_key(step) -> tuple | None:
    """What runs whose steps stack have in common (the network's layers and
    tensors, batch size, device, precision, optimizer settings), or None if the step
    cannot join a stack: only the whole step on resident data (``WholeStep``
    with a feed), without dropout, can. (A plain network and its residual
    twin share a key; ``StackedStep`` gates their shortcuts.)"""
    if not isinstance(step, WholeStep) or step.feed is None:
        return None
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in step.model.modules()):
        return None
    shapes = tuple((k, tuple(v.shape), v.dtype) for k, v in step.model.state_dict().items())
    return (_layers(step.model), shapes, step.batch_size, str(step.device), tuple(step.hyper.items()), step.aux_weight,
            step.precision)


def _layers(model: nn.Module) -> tuple:
    """What makes two networks compute the same function of their weights:
    each module's name, class and settings (its plain attributes: ReLU
    against tanh, a pooling's window, a switch that changes its forward
    pass), but for the residual blocks' shortcuts, which ``Gated`` turns
    on and off."""
    found = []
    for name, m in model.named_modules():
        if ".shortcut" in f".{name}":  # (a shortcut with weights shows in the state dict's shapes)
            continue
        settings = sorted((k, v) for k, v in vars(m).items() if not k.startswith("_") and k != "training"
                          and not (isinstance(m, Block) and k == "residual")
                          and isinstance(v, (bool, int, float, str, tuple, type(None))))
        found.append((name, type(m).__qualname__, type(m).__module__, tuple(settings)))
    return tuple(found)


class StackedStep(CapturedStep):
    """The whole steps of the runs of ``steps`` (their ``WholeStep``s, each
    with its feed) taken as one (see the module's docstring). ``members``:
    what each run's loop holds in place of its own step. Raises
    ``ValueError`` for runs that cannot be stacked."""

    def __init__(self, steps: list[WholeStep], backend=None):
        first = steps[0]
        keys = [stack_key(s) for s in steps]
        if len(steps) < 2 or None in keys:
            raise ValueError("a stack takes two or more whole steps on resident data, without dropout")
        if any(k != keys[0] for k in keys):
            raise ValueError("stacked runs need the same network, batch size, device, precision and optimizer settings")
        super().__init__(first.device, first.batch_size, first.capture)
        self.steps, self.aux_weight, self.hyper, self.precision = steps, first.aux_weight, first.hyper, first.precision
        self.base, self.gates = _base([s.model for s in steps], first.device)
        # Each run's weights, momentum, statistics and sums become views of the stack's tensors, so that the step
        # reads and writes each tensor once for all the runs, with no stacking and unstacking kernels of its own.
        self.params = _stacked([s.params for s in steps])
        self.buffers = _stacked([s.buffers for s in steps])
        self.momentum = list(_stacked([dict(enumerate(s.momentum)) for s in steps]).values())
        self.totals = _stacked([{"totals": s.totals} for s in steps])["totals"]
        self.asked: dict[int, int] = {}  # run -> the images of the step it asked for
        self.dissolved = False  # a run ended or failed: the others take their own steps (dissolve)
        self.members = [StackMember(self, i, s) for i, s in enumerate(steps)]
        self._compile(backend)

    def _one(self, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor, scale: float):
        """One run's scaled loss and (loss, logits): the function vmap stacks."""
        with autocast(self.device, self.precision):
            outputs = torch.func.functional_call(self.base, (params, buffers), (x,))
        loss, logits = loss_and_logits(outputs, y, self.aux_weight)
        return loss * scale, (loss.detach(), logits.detach())

    def _loss(self, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor, scale: float):
        scaled, aux = torch.vmap(self._one, in_dims=(0, 0, 0, 0, None), randomness="error")(params, buffers, x, y, scale)
        return scaled.sum(), aux

    def step(self, n: int) -> None:
        """Every run's step on its feed's next ``n`` images: what is compiled and captured."""
        batches = [s.feed.batch(n) for s in self.steps]
        x, y = torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])
        # (batch norm's running statistics are updated in place, in self.buffers; the dicts are
        # joined with ** rather than |, which torch 2.6's torch.compile cannot trace)
        grads, (loss, logits) = torch.func.grad(self._loss, has_aux=True)(self.params, {**self.buffers, **self.gates}, x, y,
                                                                          1.0 / n)
        with torch.no_grad():
            lr = torch.stack([s.lr for s in self.steps])  # each run's, as its schedule wrote it
            params = list(self.params.values())
            lrs = [lr.view(-1, *[1] * (p.dim() - 1)) for p in params]
            sgd_update(params, [grads[k] for k in self.params], self.momentum, lrs, **self.hyper)
            self.totals += torch.stack([batch_totals(loss[i], logits[i], y[i]) for i in range(len(self.steps))])

    def ask(self, run: int, n: int) -> None:
        self.asked[run] = n

    @property
    def ready(self) -> bool:
        """Every run has asked for its next step."""
        return len(self.asked) == len(self.steps)

    def take(self) -> None:
        """The step every run has asked for (all on the same number of images)."""
        sizes = set(self.asked.values())
        if not self.ready or len(sizes) != 1:
            raise RuntimeError(f"stacked runs out of step: asked {self.asked} of {len(self.steps)} runs")
        self.asked.clear()
        self.next(sizes.pop())

    def next(self, n: int) -> None:
        """Every run's next step, on its feed's next ``n`` images (what
        ``take`` runs; a benchmark that drives the runs itself calls it)."""
        self._run(n)

    def dissolve(self) -> dict[int, int]:
        """A run of the stack ended or failed: from now on each other run
        takes its own ``WholeStep`` (its tensors stay its rows of the stack's,
        so it goes on from where the stack left it, as alone). What had been
        asked, ``{run: images}``, is returned for the caller to take with
        each run's own step."""
        self.dissolved = True
        asked, self.asked = self.asked, {}
        return asked


class StackMember:
    """What a stacked run's loop holds in place of its ``WholeStep``: its own
    feed and running sums; ``next(n)`` asks for the step, which the stack
    takes once every run has asked (``StackedStep.take``), or, once the stack
    is dissolved, takes it with the run's own step."""

    def __init__(self, stack: StackedStep, index: int, own: WholeStep):
        self.stack, self.index, self.own, self.feed, self.totals = stack, index, own, own.feed, own.totals

    def next(self, n: int) -> None:
        if self.stack.dissolved:
            return self.own.next(n)
        self.stack.ask(self.index, n)

    @property
    def graphs(self) -> int:
        return self.stack.graphs + self.own.graphs


def _stacked(tensors: list[dict]) -> dict:
    """Each name's tensors of the runs ``tensors`` stacked into one, and each
    run's tensor made a view of its row (the same tensor object: the model,
    the optimizer and the loop hold it). torch.save writes a view with the
    whole tensor it views: ``checkpoint.atomic_save`` copies such views
    first."""
    stacked = {}
    for k in tensors[0]:
        stacked[k] = torch.stack([t[k].detach() for t in tensors])
        for i, t in enumerate(tensors):
            t[k].data = stacked[k][i]
    return stacked


def _base(models: list[nn.Module], device: torch.device) -> tuple[nn.Module, dict]:
    """The module whose layers the stacked runs run (weights on the meta
    device: ``functional_call`` gives it the runs' own), and the shortcut
    gates to pass beside the runs' buffers (none unless plain and residual
    networks are mixed)."""
    flags = [[b.residual for b in m.modules() if isinstance(b, Block)] for m in models]
    widest = max(range(len(models)), key=lambda i: sum(flags[i]))
    base = copy.deepcopy(models[widest]).to("meta").train()
    gates = {}
    if any(f != flags[widest] for f in flags):
        blocks = [(name, b) for name, b in base.named_modules() if isinstance(b, Block)]
        for j, (name, block) in enumerate(blocks):
            if not block.residual:
                if any(f[j] for f in flags):
                    raise ValueError("no run of the stack has every shortcut that the others have")
                continue
            if any(True for _ in block.shortcut.parameters()):
                raise ValueError("a plain network stacks only beside parameter-free shortcuts (option A)")
            block.shortcut = Gated(block.shortcut, torch.empty((), device="meta"))
            gates[f"{name}.shortcut.gate"] = torch.tensor([float(f[j]) for f in flags], device=device)
    return base, gates
