"""The training step: eager, and compiled whole as the GPU's CUDA-graph path
does it (issue 5). On the CPU ``reduce-overhead`` compiles the same step
without the graphs, so these tests check what capture depends on: the
compiled step gives the eager step's weights, the learning rate is read
from its device tensor (a schedule change takes effect at its step, with no
recompilation), and the two batch shapes of an epoch compile once each."""

import shutil

import pytest
import torch
from torch import nn

from ilsvrc.errors import UserError
from ilsvrc.schedule import Schedule
from ilsvrc.step import TrainStep, pick_mode

_HAS_CXX = any(shutil.which(c) for c in ("g++", "c++", "clang++"))
needs_cxx = pytest.mark.skipif(not _HAS_CXX, reason="torch.compile on the CPU (inductor) needs a C++ compiler")


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def batches(sizes, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)) for n in sizes]


def run(mode: str, data, schedule: dict | None = None, backend="inductor"):
    """Weights after each step, the learning rate used by each step, and the summed (loss, errors)."""
    net = tiny_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = Schedule(opt, schedule or {"kind": "steps", "factor": 0.1, "milestones": [10**6], "iterations": 10**6}, 0.1, "net")
    step = TrainStep(net, opt, 0.0, torch.device("cpu"), mode, backend=backend)
    weights, lrs, totals = [], [], torch.zeros(2, dtype=torch.float64)
    for i, (x, y) in enumerate(data, 1):
        lrs.append(float(opt.param_groups[0]["lr"]))
        totals += step(x, y, 1.0 / len(y))
        sched.after_step(i)
        weights.append([p.detach().clone() for p in net.parameters()] + [b.clone() for b in net.buffers()])
    return weights, lrs, totals


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for step, (wa, wb) in enumerate(zip(a, b), 1):
        for pa, pb in zip(wa, wb):
            torch.testing.assert_close(pa.float(), pb.float(), rtol=1e-4, atol=1e-5, msg=lambda m: f"step {step}: {m}")


class CountingBackend:
    """inductor, counting the graphs it is given (a recompilation adds some)."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs, **mode):  # torch.compile passes mode="reduce-overhead": graphs, a GPU's matter
        from torch._inductor.compile_fx import compile_fx

        self.graphs += 1
        return compile_fx(gm, example_inputs)


@needs_cxx
def test_compiled_step_follows_the_eager_step_and_the_schedule_without_recompiling():
    # a partial batch (the end of an epoch) after full ones, then full ones again;
    # the learning rate is divided by 10 after step 4
    sizes = [6, 6, 6, 6, 4, 6, 6]
    schedule = {"kind": "steps", "factor": 0.1, "milestones": [4], "iterations": 7}
    data = batches(sizes)
    eager_w, eager_lr, eager_totals = run("eager", data, schedule)
    counter = CountingBackend()
    net = tiny_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = Schedule(opt, schedule, 0.1, "net")
    step = TrainStep(net, opt, 0.0, torch.device("cpu"), "reduce-overhead", backend=counter)
    lr = opt.param_groups[0]["lr"]
    assert torch.is_tensor(lr) and lr.ndim == 0  # the captured step reads it from the device
    weights, lrs, graphs, totals = [], [], [], torch.zeros(2, dtype=torch.float64)
    for i, (x, y) in enumerate(data, 1):
        lrs.append(float(opt.param_groups[0]["lr"]))
        totals += step(x, y, 1.0 / len(y))
        sched.after_step(i)
        assert opt.param_groups[0]["lr"] is lr  # written in place, never replaced
        weights.append([p.detach().clone() for p in net.parameters()] + [b.clone() for b in net.buffers()])
        graphs.append(counter.graphs)
    assert lrs == pytest.approx(eager_lr) and lrs == pytest.approx([0.1] * 4 + [0.01] * 3)
    assert_same_weights(weights, eager_w)
    torch.testing.assert_close(totals, eager_totals, rtol=1e-5, atol=1e-6)
    # the step compiled for the full batch (step 1), once more for the partial one (step 5),
    # and never again: not when the learning rate changed after step 4, not for full batches after
    assert graphs[0] > 0 and graphs[0] == graphs[3] and graphs[4] > graphs[3] and graphs[4] == graphs[-1]


def test_eager_step_matches_a_hand_written_sgd_step():
    """The step's sum-then-scale loss is the mean cross-entropy of a stock loop."""
    (x, y), = batches([5])
    net, ref = tiny_net(), tiny_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    out = TrainStep(net, opt, 0.0, torch.device("cpu"), "eager")(x, y, 1.0 / 5)
    logits = ref(x)
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    ref_opt.step()
    assert out[0].item() == pytest.approx(5 * loss.item(), rel=1e-5)
    assert out[1].item() == (logits.argmax(1) != y).sum().item()
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q)


def test_mode_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pick_mode(None, cpu, True, False) == "eager"
    assert pick_mode(None, cuda, True, False) == "reduce-overhead"  # resident data: the whole step captured
    assert pick_mode(None, cuda, False, False) == "default"  # batches from the host: the network compiled
    assert pick_mode(None, cuda, True, True) == "default"  # DDP
    assert pick_mode(True, cpu, True, False) == "default"
    assert pick_mode(False, cuda, True, False) == "eager"
    assert pick_mode("reduce-overhead", cpu, False, False) == "reduce-overhead"
    with pytest.raises(UserError, match="one of eager, default, reduce-overhead"):
        pick_mode("max-autotune", cpu, True, False)
    with pytest.raises(UserError, match="torchrun"):
        pick_mode("reduce-overhead", cuda, True, True)


def _weights(run_dir):
    from ilsvrc.checkpoint import load

    return load(run_dir / "last.pt")["model"]


def test_trainer_with_the_compiled_step_trains_as_the_eager_one(tiny_data, tmp_path, monkeypatch):
    """Through ilsvrc.train: the compiled whole step (with the ahead-of-time
    autograd backend, whose arithmetic is the eager one's, so the weights
    can be compared closely), a learning-rate step inside the run, an epoch
    with a short last batch, and a resume of its checkpoint in eager mode."""
    import ilsvrc
    import ilsvrc.step

    monkeypatch.setattr(ilsvrc.step, "BACKEND", "aot_eager")
    common = dict(device="cpu", workers=0, progress=False, data_loader="resident", batch_size=5, iterations=8,
                  milestones=[3], model="resnet-20")  # 24 images: batches of 5, 5, 5, 5, 4
    eager = ilsvrc.train("resnet-cifar", tiny_data, tmp_path / "eager", compile="eager", **common)
    graph = ilsvrc.train("resnet-cifar", tiny_data, tmp_path / "graph", compile="reduce-overhead", max_steps=6, **common)
    assert graph["step"] == 6
    resumed = ilsvrc.train("resnet-cifar", tiny_data, tmp_path / "graph", compile="eager", resume=True, **common)
    assert resumed["step"] == eager["step"] == 8 and resumed["lr"] == pytest.approx(eager["lr"]) == pytest.approx(0.01)
    assert resumed["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-4)
    for (name, a), b in zip(_weights(tmp_path / "eager").items(), _weights(tmp_path / "graph").values()):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")


def test_cli_compile_takes_a_boolean_or_a_mode(capsys):
    from ilsvrc.cli import _parser

    parse = _parser().parse_args
    assert parse(["train", "--compile", "reduce-overhead"]).compile == "reduce-overhead"
    assert parse(["train", "--compile", "false"]).compile is False
    assert parse(["train"]).compile is None
    with pytest.raises(SystemExit) as e:
        parse(["train", "--compile", "fast"])
    assert e.value.code == 2 and "expected true, false or one of eager, default, reduce-overhead" in capsys.readouterr().err
