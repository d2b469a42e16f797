"""The CUDA-graph logic of step.CapturedStep, on the CPU: a stand-in for
torch.cuda's streams and graphs records what the step does with them.

``FakeGraph`` stands for ``torch.cuda.CUDAGraph`` and ``FakeCapture`` for
``torch.cuda.graph``: as a real capture, a call of the step inside the
capture is recorded and not run, and ``replay`` runs what was recorded (the
same function on the same tensors, read afresh: a real graph reads the
tensors at the addresses it captured). So the step's own numbers come out
as a real replay's would, and are compared with the step run without
capture: the first step of each batch size runs as it is (warm-up, on a
side stream), the second is captured and then replayed, every later one
replayed; a capture that fails warns once, runs the step as it is, and
that size is never captured again.
"""

import contextlib

import pytest
import torch
from torch import nn

from ilsvrc.data.batched import BatchTransforms
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.resident import ResidentFeed, ResidentSplit
from ilsvrc.data.transforms import PaperTransforms
from ilsvrc.step import WholeStep

from test_transforms import fake_stats

CPU = torch.device("cpu")
BATCH = 5  # 24 images an epoch: batches of 5, 5, 5, 5 and 4


class FakeStream:
    def __init__(self, device=None):
        self.waited = []

    def wait_stream(self, other):
        self.waited.append(other)


class FakeGraph:
    """torch.cuda.CUDAGraph's stand-in: the calls recorded while it captured."""

    def __init__(self):
        self.work, self.replays = [], 0

    def replay(self):
        self.replays += 1
        for call in self.work:
            call()


class Cuda:
    """The stand-ins in place of torch.cuda's, and what the step did with them:
    ``log`` holds ("run", fn, n, where) for each call of the step's functions,
    where is "side stream", "capture" or "as is"."""

    def __init__(self, monkeypatch, fail: Exception | None = None):
        self.log, self.graphs, self.pools, self.fail = [], [], [], fail
        self.capturing: FakeGraph | None = None
        self.on_side = False
        self.main = FakeStream()
        cuda = self

        class Graph(FakeGraph):
            def __init__(self):
                super().__init__()
                cuda.graphs.append(self)

        @contextlib.contextmanager
        def graph(g, pool=None):
            cuda.pools.append(pool)
            cuda.capturing = g
            try:
                yield
            finally:
                cuda.capturing = None

        @contextlib.contextmanager
        def stream(s):
            was, cuda.on_side = cuda.on_side, s is not None and s is not cuda.main
            try:
                yield
            finally:
                cuda.on_side = was

        for name, value in (("CUDAGraph", Graph), ("graph", graph), ("stream", stream), ("Stream", FakeStream),
                            ("current_stream", lambda device=None: cuda.main), ("graph_pool_handle", lambda: "pool")):
            monkeypatch.setattr(torch.cuda, name, value)

    def recorded(self, fn, name: str):
        """``fn`` as the step calls it under the stand-ins."""
        def call(n, *args):
            if self.capturing is not None:
                if self.fail is not None:
                    raise self.fail  # as a failed capture: nothing ran
                self.log.append(("run", name, n, "capture"))
                self.capturing.work.append(lambda: fn(n, *args))
                return None
            self.log.append(("run", name, n, "side stream" if self.on_side else "as is"))
            return fn(n, *args)
        return call


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3)).train()


@pytest.fixture(scope="module")
def split(tiny_data):
    return ResidentSplit(open_dataset(tiny_data).train, 20, CPU, progress=False)


def whole_step(split, capture: bool, with_feed: bool = True) -> WholeStep:
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    feed = None
    if with_feed:
        feed = ResidentFeed(split, BatchTransforms(PaperTransforms(fake_stats(20), 16, "image", True, 0.1), CPU),
                            BATCH, seed=3)
    step = WholeStep(model, opt, 0.0, CPU, BATCH, feed=feed, backend="eager", capture=capture)
    step.compiled = step.step  # the same function uncompiled: compiling it is test_whole_step.py's subject
    return step


def epochs(step: WholeStep, n: int = 2) -> None:
    """``n`` epochs of the feed's steps, as train._steps takes them."""
    for epoch in range(n):
        step.feed.start(epoch)
        for b in range(5):
            step.next(step.feed.size(b))


def assert_same(a: WholeStep, b: WholeStep) -> None:
    """The same weights, statistics, momentum and running sums: the same steps taken."""
    sa, sb = a.model.state_dict(), b.model.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    for ma, mb in zip(a.momentum, b.momentum, strict=True):
        assert torch.equal(ma, mb)
    assert torch.equal(a.totals, b.totals)


def staged(step: WholeStep, cuda: Cuda) -> None:
    """The step's functions called through ``cuda``'s recorder (the compiled one by its name)."""
    step.compiled, step.step = cuda.recorded(step.step, "compiled"), cuda.recorded(step.step, "step")


def test_warm_up_then_capture_then_replays_and_the_eager_steps_results(split, monkeypatch):
    eager = whole_step(split, capture=False)
    epochs(eager)
    cuda = Cuda(monkeypatch)
    graphed = whole_step(split, capture=True)
    staged(graphed, cuda)
    epochs(graphed)
    assert_same(graphed, eager)
    assert cuda.log == [
        ("run", "compiled", 5, "side stream"),  # epoch 1, batch 1: the warm-up, a real step, uncaptured
        ("run", "compiled", 5, "capture"),  # batch 2: recorded, then replayed
        ("run", "step", 4, "side stream"),  # the short last batch: the uncompiled function, its own warm-up
        ("run", "step", 4, "capture"),  # epoch 2's short batch: captured; every other batch a replay
    ]
    g5, g4 = cuda.graphs
    assert (g5.replays, g4.replays) == (1 + 2 + 4, 1)  # batches 2-4 of epoch 1, all four of epoch 2
    assert cuda.pools == ["pool", "pool"] and graphed.graphs == 2  # one memory pool for both shapes
    assert len(cuda.main.waited) == 2  # after each warm-up the main stream waits for the side stream


def test_a_failed_capture_warns_runs_the_step_as_it_is_and_is_not_tried_again(split, monkeypatch):
    eager = whole_step(split, capture=False)
    epochs(eager)
    cuda = Cuda(monkeypatch, fail=RuntimeError("operation not permitted when stream is capturing\nCUDA error: more"))
    graphed = whole_step(split, capture=True)
    staged(graphed, cuda)
    with pytest.warns(UserWarning) as caught:
        epochs(graphed)
    messages = [str(w.message) for w in caught if "CUDA graph" in str(w.message)]
    reason = "operation not permitted when stream is capturing"  # the first line of the error's message
    assert messages == [  # once per size: its capture is not tried again
        f"the training step on {n} images could not be captured as a CUDA graph ({reason}); it runs uncaptured, slower"
        for n in (5, 4)]
    assert_same(graphed, eager)  # no step lost or taken twice
    assert graphed.graphs == 0 and len(cuda.graphs) == 2  # two tries, no graph kept
    assert [where for *_, where in cuda.log] == ["side stream"] + ["as is"] * 3 + ["side stream"] + ["as is"] * 5


def test_a_failure_without_a_message_is_named_by_its_type(split, monkeypatch):
    cuda = Cuda(monkeypatch, fail=RuntimeError())
    graphed = whole_step(split, capture=True)
    staged(graphed, cuda)
    graphed.feed.start(0)
    graphed.next(BATCH)
    with pytest.warns(UserWarning, match=r"as a CUDA graph \(RuntimeError\); it runs uncaptured"):
        graphed.next(BATCH)


def test_replays_read_the_static_batch_the_new_batch_is_copied_into(split, monkeypatch):
    """Without a feed the batch is copied into one static tensor per size,
    which the captured step reads: every replay sees the new batch."""
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in (5, 5, 5, 4, 5, 4)]
    eager = whole_step(split, capture=False, with_feed=False)
    for x, y in batches:
        eager(x, y, 1.0 / len(y))
    cuda = Cuda(monkeypatch)
    graphed = whole_step(split, capture=True, with_feed=False)
    staged(graphed, cuda)
    for x, y in batches:
        graphed(x.clone(), y.clone(), 1.0 / len(y))
    assert_same(graphed, eager)
    assert [g.replays for g in cuda.graphs] == [3, 1]  # size 5: captured at its second batch, then two replays more
    with pytest.raises(ValueError, match="averages over its own batch"):
        graphed(*batches[0], 1.0 / 128)


def test_without_capture_the_stand_ins_are_never_touched(split, monkeypatch):
    cuda = Cuda(monkeypatch)
    plain = whole_step(split, capture=False)
    staged(plain, cuda)
    epochs(plain, 1)
    assert not cuda.graphs and {where for *_, where in cuda.log} == {"as is"} and not cuda.main.waited
    assert plain.graphs == 0
