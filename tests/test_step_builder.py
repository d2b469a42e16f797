"""``ilsvrc.synthetic.build_step``: a recipe's step as the trainer builds it,
on random resident images with made-up statistics (what benchmarks/ time).

Every step here is Figure 1's small network, so that compiling its whole
step takes a few seconds on a CPU, under two kinds of training windows:
random 24-pixel windows of the 32-pixel squares with reflections (fixed
size: the whole step's feed makes its batches inside the step) and scale
jittering (windows rescaled, so of different sizes: the batches are made
outside the step), with weight decay, which Figure 1's recipe has not.
"""

from dataclasses import replace

import pytest
import torch

import ilsvrc.step
from ilsvrc import recipes, synthetic
from ilsvrc.errors import UserError
from ilsvrc.recipes import DataTable
from ilsvrc.step import TrainStep, WholeStep
from ilsvrc.synthetic import build_step
from test_whole_step import CountingBackend, Double, close

FIXED = recipes.resolve("alexnet-fig1", image_size=24, resize=32, flip=True, weight_decay=5e-4)
RESCALED = replace(FIXED, data=DataTable.from_dict(FIXED.data.to_dict() | {"crop": "scale", "scale": [24, 32]}))
SMALL = dict(device="cpu", images=10, classes=4, batch_size=4)  # 10 images: two full batches of 4 and a short one


def state(built) -> dict:
    return {k: v.detach().clone() for k, v in built.model.state_dict().items()}


@pytest.mark.parametrize("recipe, fed", [(FIXED, True), (RESCALED, False)], ids=["fixed-windows", "rescaled-windows"])
def test_the_built_graph_step_gives_the_built_eager_steps_weights(recipe, fed, monkeypatch):
    """In float64 (test_whole_step.py: the two differ by the rounding of
    the update, about 1e-16 relative per step, and ``close`` holds them to
    1e-9): the same seed gives the same weights, images, batches and draws,
    and one epoch's full batches (two; the short third is left out, so that
    a step has one shape) the same weights and running sums."""
    network = synthetic.for_recipe
    monkeypatch.setattr(synthetic, "for_recipe", lambda *a, **k: Double(network(*a, **k)))
    backend = CountingBackend()
    graph = build_step(recipe, "graph", **SMALL, seed=3, backend=backend)
    eager = build_step(recipe, "eager", **SMALL, seed=3)
    assert isinstance(graph.step, WholeStep) and isinstance(eager.step, TrainStep)
    assert (graph.feed is not None) == fed and eager.feed is None
    before = state(graph)
    for name, value in state(eager).items():
        assert value.dtype == torch.float64 and torch.equal(before[name], value), name
    assert torch.equal(graph.split.images, eager.split.images)
    assert [sum(1 for _ in built.steps(epoch=1)) for built in (graph, eager)] == [2, 2]
    assert backend.graphs > 0 and ilsvrc.step.BACKEND == "inductor"  # the backend given, no module global changed
    if fed:
        assert int(graph.feed.counter) == 2
    after = state(graph)
    assert any(not torch.equal(after[name], before[name]) for name in after)  # it trained
    for name, value in state(eager).items():
        close(after[name], value, name)
    close(graph.step.totals, eager.step.totals, "the running sums")


def test_the_seed_sets_the_weights_and_the_images_and_the_batch_is_the_recipes():
    a, b, c = (build_step(FIXED, "eager", device="cpu", images=128, classes=4, seed=s) for s in (0, 0, 1))
    assert a.batch_size == 128 == FIXED.optim.batch_size
    assert torch.equal(a.split.images, b.split.images) and not torch.equal(a.split.images, c.split.images)
    wa, wb, wc = state(a), state(b), state(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa) and not all(torch.equal(wa[k], wc[k]) for k in wa)
    lr, momentum, decay = (a.step.opt.param_groups[0][k] for k in ("lr", "momentum", "weight_decay"))
    assert (lr, momentum, decay) == (FIXED.optim.lr, FIXED.optim.momentum, 5e-4)


def test_the_compiled_network_mode_compiles_with_the_backend_given():
    backend = CountingBackend()
    built = build_step("alexnet-fig1", "default", **SMALL, backend=backend)
    assert built.step.mode == "default" and backend.graphs == 0
    built.run(1, epoch=0)
    assert backend.graphs > 0 and ilsvrc.step.BACKEND == "inductor"


@pytest.mark.parametrize("recipe, mode, sizes, words", [
    (FIXED, "fast", SMALL, "compile must be"),
    (FIXED, True, SMALL, "the step mode is a name"),
    ("no-such-recipe", "eager", SMALL, "unknown recipe"),
    (FIXED.to_dict(), "eager", SMALL, "a recipe is a recipe's name"),
    (FIXED, "eager", dict(SMALL, images=3), "no full batch"),
    (FIXED, "eager", dict(SMALL, classes=0), "at least 1"),
], ids=["unknown-mode", "mode-not-a-name", "unknown-recipe", "recipe-as-dict", "too-few-images", "no-classes"])
def test_a_bad_mode_recipe_or_size_is_a_user_error(recipe, mode, sizes, words):
    with pytest.raises(UserError, match=words):
        build_step(recipe, mode, **sizes)
