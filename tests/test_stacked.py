"""Runs of one network stacked into one step (stacked.py) end as each does alone.

A stacked step runs each convolution as one grouped convolution over the
runs, whose sums may be taken in another order than a run's own
convolution: the weights agree to rounding, not to the bit. So, as in
test_whole_step.py, the comparison is in float64, where one rounding is
1e-16 relative and a few steps of ResNet-20 amplify such differences by
about 1e5 (measured there, in float32): RTOL = 1e-9 leaves four orders of
magnitude to spare, where float32 would leave none. An element near zero
holds no relative precision of its own (its value is the difference of
larger terms): each element is held to RTOL of itself or of its tensor's
largest magnitude (``close``). The loss itself is
computed in float32 in every step (``step.loss_and_logits`` casts the
logits), and the vmapped cross-entropy may sum a batch's terms in another
order: the summed losses agree to a few float32 roundings (6e-8 relative
each), and ``LOSS_RTOL`` = 1e-6 allows sixteen.
"""

import json
import sys

import pytest
import torch

from conftest import REPO
from ilsvrc import UserError, train
from ilsvrc.models import build
from ilsvrc.schedule import Schedule
from ilsvrc.stacked import StackedStep
from ilsvrc.step import WholeStep
from ilsvrc.together import train_together

sys.path.insert(0, str(REPO / "tests"))
from test_whole_step import RTOL, Double, close, feed_for  # noqa: E402

LOSS_RTOL = 1e-6  # a float32 sum; see the module's docstring
CPU = torch.device("cpu")



def whole_step(network: str, seed: int, batch_size: int, compiled: bool = True) -> tuple[WholeStep, Schedule]:
    """A float64 network's whole step on its own feed (seeded by ``seed``), and
    its schedule; ``compiled`` False: the same step uncompiled (an alone run's
    reference: test_whole_step.py holds the compiled step to it, and each
    compilation of ResNet-20's step costs about 8 s of a CPU)."""
    torch.manual_seed(seed)
    model = Double(build(network, 10, 32)).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = Schedule(opt, {"kind": "steps", "factor": 0.1, "milestones": [3], "iterations": 6}, 0.1, network)
    feed = feed_for("resnet-cifar", 32, 32, batch_size, images=22)  # batches of 6: 6, 6, 6, 4
    feed.seed = seed  # the run's own order and draws
    step = WholeStep(model, opt, 0.0, CPU, batch_size, feed=feed, backend="aot_eager")
    if not compiled:
        step.compiled = step.step
    return step, sched


def train_steps(runs: list[tuple[WholeStep, Schedule]], stacked: StackedStep | None) -> list[dict]:
    """Six steps (an epoch of batches 6, 6, 6, 4, then two more; the drop after
    step 3) of each run, stacked or each alone; each run's weights."""
    for step, sched in runs:
        step.feed.start(epoch=0)
    for i in range(1, 7):
        if i == 5:
            for step, _ in runs:
                step.feed.start(epoch=1)
        n = runs[0][0].feed.size((i - 1) % 4)
        if stacked is None:
            for step, _ in runs:
                step.next(n)
        else:
            for member in stacked.members:
                member.next(n)
            stacked.take()
        for _, sched in runs:
            sched.after_step(i)
    return [{k: v.clone() for k, v in step.model.state_dict().items()} for step, _ in runs]


@pytest.mark.parametrize("networks", [("resnet-20", "plain-20", "resnet-20")])
def test_a_stacked_step_gives_each_runs_own_weights(networks):
    """A plain network stacked between two seeds of ResNet-20 (its shortcuts
    gated off), across an lr drop, an epoch's short batch and a new epoch:
    each run's weights, BN statistics and sums as alone. (Two seeds of
    ResNet-20 alone, a case of its own until 2026-12-06, are runs 0 and 2 of
    this one: 26 s of the suite for nothing this one does not check.)"""
    alone = [whole_step(name, seed, 6, compiled=False) for seed, name in enumerate(networks)]
    expected = train_steps(alone, None)
    runs = [whole_step(name, seed, 6) for seed, name in enumerate(networks)]
    stacked = StackedStep([step for step, _ in runs], backend="aot_eager")
    got = train_steps(runs, stacked)
    for r, (a, b) in enumerate(zip(expected, got)):
        assert a.keys() == b.keys()
        for name in a:
            close(b[name], a[name], f"run {r}, {name}")
        (loss, errors), (alone_loss, alone_errors) = runs[r][0].totals.tolist(), alone[r][0].totals.tolist()
        assert errors == alone_errors and loss == pytest.approx(alone_loss, rel=LOSS_RTOL)
    assert [float(s.opt.param_groups[0]["lr"]) for s, _ in runs] == pytest.approx([0.01] * len(networks))
    assert expected[0]["net.conv1.conv.weight"].ne(expected[-1]["net.conv1.conv.weight"]).any()  # the seeds differ


def test_runs_that_cannot_be_stacked_are_refused():
    a, _ = whole_step("resnet-20", 0, 6)
    b, _ = whole_step("resnet-32", 1, 6)
    with pytest.raises(ValueError, match="same network"):
        StackedStep([a, b], backend="aot_eager")
    c, _ = whole_step("resnet-20", 1, 4)
    with pytest.raises(ValueError, match="same network"):
        StackedStep([a, c], backend="aot_eager")
    model = build("nin-cifar", 10, 32).train()  # dropout: its masks would not be its own
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    nin = WholeStep(model, opt, 0.0, CPU, 6, feed=a.feed, backend="aot_eager")
    with pytest.raises(ValueError, match="without dropout"):
        StackedStep([nin, nin], backend="aot_eager")


def weights(run):
    return torch.load(run / "last.pt", map_location="cpu", weights_only=True)["model"]


def rows(run):
    timing = ("time", "images_per_s", "epoch_time_s", "val_time_s")
    return [{k: v for k, v in json.loads(line).items() if k not in timing} for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def float64_graph_runs(monkeypatch):
    """ilsvrc.train's networks in float64, the whole step traced by dynamo in
    one graph and run as traced (backend "eager": no AOTAutograd and no C++,
    half the time of aot_eager; these tests are of how runs are stacked,
    resumed and unstacked: the stacked step through AOTAutograd is
    test_a_stacked_step_gives_each_runs_own_weights)."""
    import ilsvrc.step

    trainer = sys.modules["ilsvrc.train"]
    monkeypatch.setattr(ilsvrc.step, "BACKEND", "eager")
    build_ = trainer.for_recipe
    monkeypatch.setattr(trainer, "for_recipe", lambda *a, **k: Double(build_(*a, **k)))
    # 24 images in batches of 5 (5, 5, 5, 5, 4): an lr drop after step 3, an epoch's short batch, validations
    return dict(recipe="resnet-cifar", device="cpu", workers=0, data_loader="resident", compile="graph", batch_size=5,
                iterations=8, milestones=[3])


def assert_close_runs(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        close(wa[k], wb[k], k)
    for ra, rb in zip(rows(a), rows(b), strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], rel=LOSS_RTOL if k == "train_loss" else RTOL), k


def test_runs_stacked_through_the_trainer_end_as_alone_and_resume(tiny_data, tmp_path, float64_graph_runs):
    """Two seeds of ResNet-20 and a plain-20, stacked by train_together, stopped
    after 6 steps and resumed stacked: each ends as it does alone (with the
    eager step: test_whole_step.py holds the whole step to it)."""
    jobs = [dict(float64_graph_runs, data=tiny_data, model=m, seed=s, out=tmp_path / "stacked" / f"{m}-{s}")
            for m, s in (("resnet-20", 0), ("resnet-20", 1), ("plain-20", 0))]
    train_together([{**job, "max_steps": 6} for job in jobs], device="cpu", progress=False, stack=True)
    assert [rows(job["out"])[-1]["step"] for job in jobs] == [6, 6, 6]
    last = train_together([{**job, "resume": True} for job in jobs], device="cpu", progress=False, stack=True)
    assert [r["step"] for r in last] == [8, 8, 8] and last[0]["lr"] == pytest.approx(0.01)
    for job in jobs:
        alone = {**job, "out": tmp_path / "alone" / job["out"].name, "compile": "eager", "progress": False}
        train(**alone, max_steps=6)
        train(**alone, resume=True)
        assert_close_runs(job["out"], alone["out"])


def test_a_failing_run_dissolves_its_stack_and_the_others_train_on(tiny_data, tmp_path, float64_graph_runs, capsys):
    """seed1 diverges at its first epoch's end, when seed0 has asked for step 6:
    seed0 takes it with its own step and trains on alone, ending as alone."""
    jobs = [dict(float64_graph_runs, data=tiny_data, model="resnet-20", seed=s, out=tmp_path / f"seed{s}") for s in (0, 1)]
    jobs[1]["lr"] = 1e12  # diverges at once
    other = dict(float64_graph_runs, data=tiny_data, model="resnet-32", out=tmp_path / "other", compile="eager")  # outside any stack
    with pytest.raises(UserError, match=r"seed1: training diverged") as failed:
        train_together(jobs + [other], device="cpu", progress=False, stack=True)
    assert "seed0" not in str(failed.value) and "other" not in str(failed.value)
    out = capsys.readouterr().out
    assert "stacked: seed0 + seed1" in out and "seed0: train on alone (seed1, stacked with them, ended)" in out
    assert rows(other["out"])[-1]["step"] == 8  # not in the stack: trained to its end
    alone = {**jobs[0], "out": tmp_path / "alone", "compile": "eager", "progress": False}
    train(**alone)
    assert_close_runs(jobs[0]["out"], alone["out"])


def test_train_runs_stack_from_the_command_line(tiny_data, tmp_path, capsys, monkeypatch):
    import ilsvrc.step
    from ilsvrc.cli import main

    monkeypatch.setattr(ilsvrc.step, "BACKEND", "aot_eager")
    args = ["train", "--recipe", "resnet-cifar", "--model", "resnet-20", "--data", str(tiny_data), "--device", "cpu",
            "--workers", "0", "--no-progress", "--loader", "resident", "--set", "iterations=2", "--set", "milestones=[1,2]"]
    assert main(args + ["--out", str(tmp_path / "one"), "--stack"]) == 2
    assert "--stack stacks the runs of --runs N" in capsys.readouterr().err
    assert main(args + ["--out", str(tmp_path / "eager"), "--runs", "2", "--stack"]) == 0  # the CPU's eager step: no stack
    assert "no runs stacked" in capsys.readouterr().out
    assert main(args + ["--out", str(tmp_path / "graph"), "--runs", "2", "--stack", "--compile", "graph"]) == 0
    out = capsys.readouterr().out
    assert "stacked: seed0 + seed1" in out and "val_top1_error: " in out
    assert [rows(tmp_path / "graph" / s)[-1]["step"] for s in ("seed0", "seed1")] == [2, 2]


def test_only_networks_that_compute_the_same_function_share_a_stack():
    """The key sees what the weights' shapes do not: ReLU against tanh (AlexNet's
    Figure 1 net, whose two units have the same weights), and lets a plain
    network join its residual twin (its shortcuts gated)."""
    from ilsvrc.stacked import stack_key

    def key(network: str, seed: int = 0, **variant):
        torch.manual_seed(seed)
        model = build(network, 10, 32, **variant).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        return stack_key(WholeStep(model, opt, 0.0, CPU, 4, feed=feed_for("resnet-cifar", 32, 32, 4), backend="aot_eager"))

    assert key("resnet-20", 0) == key("resnet-20", 1) == key("plain-20")
    assert key("resnet-20") != key("resnet-32")
    assert key("alexnet-fig1", activation="relu") != key("alexnet-fig1", activation="tanh")
    assert key("alexnet-fig1", 0) == key("alexnet-fig1", 1)
