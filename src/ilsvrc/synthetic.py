"""The trainer's step on synthetic data: what the benchmarks time.

``build_step`` makes a recipe's step as ``ilsvrc train`` makes it (the
network from the seed, SGD with the recipe's values, the paper's batch
transforms, the step of ``step.py`` in the mode asked for: on a GPU
channels_last and cuDNN's search) on a resident split of random images
with made-up statistics, so that no data set is needed and nothing is read
from disk. ``benchmarks/step_profile.py``, ``together.py`` and
``compile_time.py`` time it; ``tests/test_step_builder.py`` checks it.
"""

from dataclasses import dataclass

import torch

from . import recipes
from .data.batched import BatchTransforms
from .data.resident import ResidentFeed, ResidentSplit
from .data.stats import Stats
from .data.transforms import PaperTransforms
from .errors import UserError
from .models import for_recipe
from .step import TrainStep, WholeStep, pick_mode

# ImageNet's RGB eigenvalues and eigenvectors (columns) as fb.resnet.torch's
# transforms give them (docs/alexnet.md), and a flat grey mean: statistics of
# the right shapes and sizes, so that the lighting offsets are of the size a
# real data set gives.
EIGVAL = (0.2175, 0.0188, 0.0045)
EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
GREY = 118.0


def made_up_stats(size: int) -> Stats:
    """Statistics of the right shapes: a flat mean image, ImageNet's RGB eigenvectors."""
    return Stats(size, torch.full((3, size, size), GREY), torch.full((3,), GREY), torch.tensor(EIGVAL),
                 torch.tensor(EIGVEC), 0)


def random_split(n: int, size: int, classes: int, device: torch.device, seed: int = 0) -> ResidentSplit:
    """A ResidentSplit of ``n`` random uint8 squares (what ``ResidentSplit``
    holds after decoding a data set), without a data set. Made without
    ``ResidentSplit.__init__``, which decodes a split's files."""
    g = torch.Generator().manual_seed(seed)
    split = ResidentSplit.__new__(ResidentSplit)
    split.split, split.device, split.skipped = None, device, []
    split.images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8).to(device)
    split.labels = torch.randint(0, classes, (n,), generator=g).to(device)
    split.valid = [True] * n
    return split


@dataclass
class SyntheticStep:
    """A built step: ``step`` (a ``TrainStep``, or a ``WholeStep`` whose
    ``feed`` makes its batches inside it where the recipe's windows have a
    fixed size) training ``model``, the split and transforms its batches
    come from, and the seed of their order and draws."""

    batch_size: int
    step: TrainStep | WholeStep
    model: torch.nn.Module
    split: ResidentSplit
    transforms: BatchTransforms
    seed: int

    @property
    def feed(self) -> ResidentFeed | None:
        return getattr(self.step, "feed", None)

    def steps(self, epoch: int):
        """The full batches of epoch ``epoch`` (no partial batch: one shape), one step per item."""
        bs, feed = self.batch_size, self.feed
        if feed is not None:
            feed.start(epoch)
            for _ in range(len(self.split) // bs):
                self.step.next(bs)
                yield
            return
        cuda = self.split.device.type == "cuda"
        for batch in self.split.batches(self.transforms, bs, shuffle=True, seed=self.seed, epoch=epoch):
            if len(batch.labels) < bs:
                return
            x = batch.images.contiguous(memory_format=torch.channels_last) if cuda else batch.images
            self.step(x, batch.labels, 1.0 / len(batch.labels))
            yield

    def run(self, count: int, epoch: int) -> None:
        """``count`` steps of epoch ``epoch`` (fewer if the epoch has fewer)."""
        for _ in zip(range(count), self.steps(epoch)):
            pass


def _recipe(recipe) -> recipes.Recipe:
    if isinstance(recipe, recipes.Recipe):
        return recipe
    if isinstance(recipe, str):
        return recipes.resolve(recipe)
    raise UserError(f"a recipe is a recipe's name or a resolved recipe (recipes.resolve), not {type(recipe).__name__}")


def build_step(recipe: str | recipes.Recipe, mode: str = "graph", *, device: torch.device | str, images: int, classes: int,
               batch_size: int | None = None, seed: int = 0, backend=None) -> SyntheticStep:
    """The step of ``recipe`` (a name, or a ``recipes.resolve`` result) in
    ``mode`` (``step.MODES``: graph, default, eager) for ``classes`` classes
    on ``images`` random images, batches of ``batch_size`` (default: the
    recipe's); ``seed`` sets the weights, the images and the batches' order
    and draws; ``backend``: torch.compile's (default ``step.BACKEND``)."""
    plan = _recipe(recipe)
    if not isinstance(mode, str):
        raise UserError(f"the step mode is a name, not {mode!r}")
    mode = pick_mode(mode, torch.device("cpu"), distributed=False)  # checks the name (a UserError)
    device = torch.device(device)
    d, o = plan.data, plan.optim
    bs = batch_size or o.batch_size
    if classes < 1 or bs < 1:
        raise UserError(f"classes and the batch size must be at least 1, not {classes} and {bs}")
    if images < bs:
        raise UserError(f"{images} images give no full batch of {bs}")
    torch.manual_seed(seed)
    model = for_recipe(plan, classes).to(device)
    if device.type == "cuda":  # as the trainer runs it (train._optimizer_and_state)
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    aux = getattr(model, "aux_weight", 0.0)
    transforms = BatchTransforms(PaperTransforms.from_recipe(made_up_stats(d.resize), d.to_dict()), device)
    split = random_split(images, d.resize, classes, device, seed)
    model.train()
    if mode == "graph":
        feed = ResidentFeed(split, transforms, bs, seed) if transforms.fixed_windows else None
        step = WholeStep(model, opt, aux, device, bs, feed=feed, backend=backend)
    else:
        step = TrainStep(model, opt, aux, device, mode, backend=backend)
    return SyntheticStep(bs, step, model, split, transforms, seed)
