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


def _by_hand(x, y, bf16: bool):
    """One SGD step of tiny_net written out, under bf16 autocast or not: its parameters."""
    ref = tiny_net()
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = nn.functional.cross_entropy(ref(x), y)
    loss.backward()
    opt.step()
    return list(ref.parameters())


@pytest.mark.parametrize("precision", ["bf16", "float32", "auto"])
def test_the_steps_precision_is_autocast_on_the_cpu_too(precision):
    """--precision bf16 runs the GPU's arithmetic (bf16 autocast) on a CPU:
    the eager step and the whole step (its function uncompiled) are the
    hand-written step under torch.autocast; float32 and auto (on a CPU) without."""
    from ilsvrc.step import WholeStep

    (x, y), = batches([6])
    expected = _by_hand(x, y, precision == "bf16")
    other = _by_hand(x, y, precision != "bf16")
    net = tiny_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    TrainStep(net, opt, 0.0, torch.device("cpu"), "eager", precision=precision)(x, y, 1.0 / 6)
    whole = tiny_net()
    whole_opt = torch.optim.SGD(whole.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    WholeStep(whole, whole_opt, 0.0, torch.device("cpu"), 6, precision=precision).step(6, x, y)
    for p, q, w, o in zip(net.parameters(), expected, whole.parameters(), other):
        assert torch.equal(p, q)
        torch.testing.assert_close(w, q, rtol=1e-6, atol=1e-7)  # sgd_update sums as SGD's foreach step, not bit for bit
    assert any(not torch.allclose(p, o, rtol=1e-4, atol=1e-6) for p, o in zip(net.parameters(), other))


def test_validation_in_bf16_is_the_autocast_forward():
    from ilsvrc.evaluate import predict_proba

    net = tiny_net().eval()
    views = batches([5])[0][0].unsqueeze(1)  # (B, 1 crop, 3, 8, 8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = nn.functional.softmax(net(views.flatten(0, 1)).float(), 1)
    assert torch.equal(predict_proba(net, views, "bf16"), expected)
    assert not torch.equal(predict_proba(net, views, "float32"), expected)


def test_a_bad_precision_is_a_user_error_before_any_work(tiny_data, tmp_path):
    from ilsvrc.train import train

    with pytest.raises(UserError, match="--precision must be one of auto, float32, bf16, not 'fp16'"):
        train("resnet-cifar", data=tiny_data, out=tmp_path / "run", precision="fp16", progress=False)
    assert not (tmp_path / "run").exists()
