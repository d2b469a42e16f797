"""The eager training step and the choice of step mode; the whole step as
one graph is tested in test_whole_step.py."""

import pytest
import torch
from torch import nn

from ilsvrc.errors import UserError
from ilsvrc.step import TrainStep, pick_mode


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def batches(sizes, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)) for n in sizes]


def test_eager_step_matches_a_hand_written_sgd_step():
    """The step's sum-then-scale loss is the mean cross-entropy of a stock loop."""
    (x, y), = batches([5])
    net, ref = tiny_net(), tiny_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    step = TrainStep(net, opt, 0.0, torch.device("cpu"), "eager")
    step(x, y, 1.0 / 5)
    out = step.totals
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
    assert pick_mode(None, cpu, False) == "eager"
    assert pick_mode(None, cuda, False) == "graph"  # one process on a GPU: the whole step as one CUDA graph
    assert pick_mode(None, cuda, True) == "default"  # DDP: the network compiled, autograd's hooks exchange gradients
    assert pick_mode(True, cpu, False) == "graph"
    assert pick_mode(True, cuda, True) == "default"
    assert pick_mode(False, cuda, False) == "eager"
    assert pick_mode("graph", cpu, False) == "graph"
    assert pick_mode("reduce-overhead", cuda, False) == "graph"  # the earlier name of the CUDA-graph mode
    with pytest.raises(UserError, match="one of eager, default, graph"):
        pick_mode("max-autotune", cpu, False)
    with pytest.raises(UserError, match="torchrun"):
        pick_mode("graph", cuda, True)


def test_cli_compile_takes_a_boolean_or_a_mode(capsys):
    from ilsvrc.cli import _parser

    parse = _parser().parse_args
    assert parse(["train", "--compile", "graph"]).compile == "graph"
    assert parse(["train", "--compile", "reduce-overhead"]).compile == "graph"
    assert parse(["train", "--compile", "false"]).compile is False
    assert parse(["train"]).compile is None
    with pytest.raises(SystemExit) as e:
        parse(["train", "--compile", "fast"])
    assert e.value.code == 2 and "expected true, false or one of eager, default, graph" in capsys.readouterr().err
