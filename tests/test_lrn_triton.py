"""The Triton LRN (``lrn_triton``: ReLU then the paper's LRN, forward and
backward kernels) against the reference (``lrn_reference`` of ``relu(x)``
and its autograd gradient), computed in float64.

Where the kernels run: on the CPU through Triton's interpreter, always, and
on the GPU when there is one (the ``device`` parameter). Triton decides
whether a kernel is interpreted when the kernel is defined, reading
TRITON_INTERPRET as ``lrn_triton`` is imported, and this test session has
imported it without the variable (for the rest of the suite). So the
interpreted kernels run in a child process started with TRITON_INTERPRET=1,
which computes every case (``kernel_results``) and the training-step check
(``step_results``) and hands the tensors back in a file; the comparisons run
here. The interpreter is slow: the shapes are small, but each has an uneven
last block of pixels and groups whose channels are not a power of two.

Tolerances come from the arithmetic: the kernels work in float32 and round
the result once to the output's dtype. float32 out: an error of at most
``FP32_SLACK`` (2^-17: room for some hundred float32 roundings and the GPU's
approximate exp2 and log2) times the exact value's size plus the largest
exact value's (dx is a difference of two terms, which can cancel). bf16 out: the
exact value rounded once, half a unit in the last place, at most 2^-8 of
its size, plus the same float32 slack before the rounding. (Triton's
interpreter converts float32 to bf16 by cutting the bits off, where the GPU
rounds to nearest: under the interpreter the bound is a whole unit, 2^-7.)
"""

import os
import subprocess
import sys
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ilsvrc.models import lrn_triton
from ilsvrc.models.layers import LocalResponseNorm, ReLUInNextLayer, fuse_relu_lrn, lrn, lrn_reference

PAPER = dict(alpha=1e-4, beta=0.75, k=2.0)  # Sec. 3.3 (the window size varies by case)
SCALE = 30.0  # inputs of this size make alpha's share of the denominator large (see test_the_window_matters)
FP32_SLACK = 2.0**-17
BF16_HALF_UNIT = 2.0**-8  # half a unit in the last place of bf16's 8 significant bits, relative
FP16_HALF_UNIT = 2.0**-11  # fp16: 11 significant bits
HERE = Path(__file__).resolve().parent


def _case(shape=(2, 96, 7, 5), groups=2, size=5, dtype=torch.float32, layout="channels_last", relu=True,
          grad_layout=None):
    name = (f"{'x'.join(map(str, shape))}-g{groups}-n{size}-{str(dtype).split('.')[-1]}-{layout}"
            f"{'' if relu else '-norelu'}{f'-grad_{grad_layout}' if grad_layout else ''}")
    return name, dict(shape=shape, groups=groups, size=size, dtype=dtype, layout=layout, relu=relu,
                      grad_layout=grad_layout or layout)


# 2x96x7x5: 35 pixels, an uneven last block whatever the tile; groups of 48
# (2 towers) and 96 channels, neither a power of two. Sizes 5 (the paper's)
# and 4 (even: the window and its mirror differ).
CASES = dict(
    [_case(groups=g, size=n, dtype=d, layout=lay) for d in (torch.float32, torch.bfloat16) for g in (1, 2)
     for n in (5, 4) for lay in ("nchw", "channels_last")]
    + [
        _case(relu=False),  # the plain LRN
        _case(size=4, layout="nchw", relu=False),
        _case(shape=(2, 16, 5, 7), groups=4, size=3, layout="nchw"),  # 4 channels a group
        _case(shape=(2, 6, 3, 5), groups=6),  # 1 channel a group: each normalised alone
        _case(dtype=torch.float16),
        _case(layout="sliced"),  # pixels with no single stride: copied to contiguous first
        _case(grad_layout="nchw"),  # a gradient in another layout than x
    ]
)


def case_inputs(case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The input x (some of it exactly zero: ReLU's corner) and the upstream
    gradient g of a case, in its dtype and layout, on the CPU."""
    g = torch.Generator().manual_seed(sum(case["shape"]) + 7 * case["groups"] + case["size"])
    n, c, h, w = case["shape"]
    x = torch.randn(n, c, h, w + 3, generator=g) * SCALE  # 3 columns more for the sliced layout
    x.view(-1)[::11] = 0.0
    grad = torch.randn(n, c, h, w, generator=g)
    x = x[..., 1 : w + 1] if case["layout"] == "sliced" else x[..., :w].contiguous()
    if case["layout"] == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    if case["grad_layout"] == "channels_last":
        grad = grad.contiguous(memory_format=torch.channels_last)
    return x.to(case["dtype"]), grad.to(case["dtype"])


def kernel_results(device: str) -> dict:
    """Each case's y and dx from the Triton kernels on ``device``, on the CPU."""
    out = {}
    for name, case in CASES.items():
        x, grad = (t.to(device) for t in case_inputs(case))
        x.requires_grad_()
        y = lrn_triton.lrn(x, case["size"], **PAPER, groups=case["groups"], relu=case["relu"])
        y.backward(grad)
        out[name] = (y.detach().cpu(), x.grad.cpu())
    return out


# --- The training step's way: torch.func.grad, torch.compile(fullgraph=True) ---


@contextmanager
def triton_lrn(on: bool):
    """LocalResponseNorm with the Triton kernels on any device (on: the CPU
    too, under the interpreter) or on none (off: the reference)."""
    original = lrn_triton.runs_on
    lrn_triton.runs_on = (lambda x, groups=1: x.dim() == 4 and x.dtype in lrn_triton.DTYPES) if on else (lambda x, groups=1: False)
    try:
        yield
    finally:
        lrn_triton.runs_on = original


def tiny_net() -> nn.Sequential:
    """conv1 -> relu1 -> lrn1 (two towers) -> pool1 -> a classifier, with
    the ReLU fused into the LRN as AlexNet would have it."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 32, 3, padding=1), relu1=nn.ReLU(), lrn1=LocalResponseNorm(5, **PAPER, groups=2),
        pool1=nn.MaxPool2d(3, 2), flat=nn.Flatten(), fc8=nn.Linear(32 * 3 * 3, 4)))
    fuse_relu_lrn(net)
    return net


def step_results(device: str, backend: str) -> dict:
    """The gradient of a tiny network's loss as the training step takes it
    (torch.func.grad of torch.func.functional_call): through the reference
    LRN, eagerly through the Triton kernels, and compiled (fullgraph) through
    them; the graphs and breaks dynamo finds, and whether the compiled code
    calls the two operators."""
    net = tiny_net().to(device, memory_format=torch.channels_last)
    params = {k: v.detach() for k, v in net.named_parameters()}
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(2, 3, 8, 8, generator=g) * SCALE).to(device, memory_format=torch.channels_last)
    labels = torch.tensor([1, 3], device=device)

    def loss(p, x, y):
        return F.cross_entropy(torch.func.functional_call(net, p, (x,)), y)

    def step(p, x, y):
        return torch.func.grad(loss)(p, x, y)

    out = {}
    with triton_lrn(False):
        out["reference"] = step(params, x, labels)
    with triton_lrn(True):
        out["eager"] = step(params, x, labels)
        torch._dynamo.reset()
        explained = torch._dynamo.explain(step)(params, x, labels)
        out["graphs"], out["breaks"] = explained.graph_count, explained.graph_break_count
        torch._dynamo.reset()
        codes = []

        def recording(gm, inputs):
            codes.append(gm.code)
            return gm.forward

        if backend == "aot_eager":
            from torch._dynamo.backends.common import aot_autograd

            compiled = torch.compile(step, fullgraph=True, backend=aot_autograd(fw_compiler=recording))
            out["compiled"] = compiled(params, x, labels)
        else:
            from torch._inductor.utils import run_and_get_code

            out["compiled"], codes = run_and_get_code(torch.compile(step, fullgraph=True, backend=backend),
                                                      params, x, labels)
        out["ops"] = [op for op in ("ilsvrc.lrn.default", "ilsvrc.lrn_backward.default") if any(op in c for c in codes)]
        try:
            torch.func.grad(lambda p: step(p, x, labels)["conv1.bias"].sum())(params)
            out["second_derivative"] = "computed"
        except RuntimeError as e:
            out["second_derivative"] = str(e)
    for key in ("reference", "eager", "compiled"):
        out[key] = {k: v.cpu() for k, v in out[key].items()}
    return out


def write_interpreted_results(path: str) -> None:
    """In the child process (TRITON_INTERPRET=1): every result, to ``path``."""
    assert lrn_triton.INTERPRETED
    torch.save({"kernels": kernel_results("cpu"), "step": step_results("cpu", "aot_eager")}, path)


# --- Where the kernels run ---------------------------------------------------------


DEVICES = ["interpreter", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.fixture(scope="module", params=DEVICES)
def results(request, tmp_path_factory) -> dict:
    if not lrn_triton.AVAILABLE:
        pytest.skip(f"the kernels need Triton's tl.gather and torch >= {lrn_triton.MIN_TORCH} (lrn_triton.AVAILABLE)")
    if request.param == "cuda":
        torch.backends.cudnn.allow_tf32, tf32 = False, torch.backends.cudnn.allow_tf32  # float32 convolutions
        try:
            return {"kernels": kernel_results("cuda"), "step": step_results("cuda", "inductor"), "rounds": "to nearest"}
        finally:
            torch.backends.cudnn.allow_tf32 = tf32
    path = tmp_path_factory.mktemp("lrn_triton") / "interpreted.pt"
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_lrn_triton as t; "
            f"t.write_interpreted_results({str(path)!r})")
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, TRITON_INTERPRET="1"),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(torch.load(path), rounds="bf16 by truncation")


def reference(case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """y and dx of the case in float64, through lrn_reference of relu(x) and autograd."""
    x, grad = case_inputs(case)
    x = x.double().requires_grad_()
    a = torch.relu(x) if case["relu"] else x
    y = lrn_reference(a, case["size"], **PAPER, groups=case["groups"])
    y.backward(grad.double())
    return y.detach(), x.grad


def assert_within(ours: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype, what: str, truncated: bool) -> None:
    """``ours`` is ``exact`` computed in float32 and rounded once to ``dtype``
    (to nearest; by truncation, a whole unit, for bf16 where ``truncated``)."""
    largest = exact.abs().max()
    rounding = {torch.bfloat16: BF16_HALF_UNIT * (2 if truncated else 1), torch.float16: FP16_HALF_UNIT}.get(dtype, 0.0)
    bound = rounding * exact.abs() + FP32_SLACK * (exact.abs() + largest)
    error = (ours.double() - exact).abs()
    worst = int((error - bound).argmax())
    assert torch.all(error <= bound), (f"{what}: error {error.view(-1)[worst]:.3g} over its bound "
                                       f"{bound.view(-1)[worst]:.3g} at {worst} (exact {exact.view(-1)[worst]:.6g})")


@pytest.mark.parametrize("name", list(CASES))
def test_kernels_match_the_reference(results, name):
    case = CASES[name]
    y, dx = results["kernels"][name]
    y_exact, dx_exact = reference(case)
    assert y.dtype == dx.dtype == case["dtype"]
    truncated = results["rounds"] == "bf16 by truncation"
    assert_within(y, y_exact, case["dtype"], "y", truncated)
    assert_within(dx, dx_exact, case["dtype"], "dx", truncated)
    if case["relu"]:  # ReLU's gradient: zero where x <= 0 (x = 0 included, as torch.relu's)
        x, _ = case_inputs(case)
        assert torch.all(dx[x <= 0] == 0)
    layout = torch.channels_last if case["layout"] == "channels_last" else torch.contiguous_format
    assert y.is_contiguous(memory_format=layout) and dx.is_contiguous(memory_format=layout)


def test_the_step_is_one_graph_and_its_gradient_the_references(results):
    """torch.func.grad over functional_call, eager and under
    torch.compile(fullgraph=True): no graph break, one graph calling the
    forward and the backward kernels, the reference LRN's gradient; and a
    second derivative raises rather than coming out wrong."""
    step = results["step"]
    assert step["graphs"] == 1 and step["breaks"] == 0
    assert step["ops"] == ["ilsvrc.lrn.default", "ilsvrc.lrn_backward.default"]
    for how in ("eager", "compiled"):
        for name, exact in step["reference"].items():
            torch.testing.assert_close(step[how][name], exact, rtol=1e-5, atol=1e-5 * float(exact.abs().max()),
                                       msg=lambda m: f"{how}, {name}: {m}")
    assert "no second derivative" in step["second_derivative"]


# --- Checks that need no kernel --------------------------------------------------


def test_the_window_matters():
    """At SCALE, alpha's share of the denominator moves y far beyond the
    tolerances, so a wrong window (or none) cannot pass."""
    for case in CASES.values():
        x, _ = case_inputs(case)
        a = x.double().relu() if case["relu"] else x.double()
        y, _ = reference(case)
        assert (y - a / PAPER["k"] ** PAPER["beta"]).abs().max() > 0.05 * y.abs().max()


def test_on_the_cpu_the_layer_keeps_its_reference_paths():
    x, _ = case_inputs(CASES["2x96x7x5-g2-n5-float32-channels_last"])
    assert not lrn_triton.runs_on(x, 2)
    layer = LocalResponseNorm(5, **PAPER, groups=2, relu=True)
    torch.testing.assert_close(layer(x), lrn_reference(torch.relu(x), 5, **PAPER, groups=2), rtol=0, atol=0)
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    torch._dynamo.reset()
    torch.testing.assert_close(compiled(x), lrn(torch.relu(x), 5, **PAPER, groups=2), rtol=0, atol=0)


def test_fuse_relu_lrn_keeps_names_state_and_numbers():
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(conv1=nn.Conv2d(3, 8, 3), relu1=nn.ReLU(), lrn1=LocalResponseNorm(5, **PAPER, groups=2),
                                    conv2=nn.Conv2d(8, 8, 3), relu2=nn.Tanh(), lrn2=LocalResponseNorm(5, **PAPER)))
    x = torch.randn(2, 3, 9, 9) * SCALE
    before, keys = net(x), list(net.state_dict())
    fuse_relu_lrn(net)
    assert list(dict(net.named_children())) == ["conv1", "relu1", "lrn1", "conv2", "relu2", "lrn2"]
    assert isinstance(net.relu1, ReLUInNextLayer) and net.lrn1.relu
    assert isinstance(net.relu2, nn.Tanh) and not net.lrn2.relu  # only a ReLU is fused
    assert list(net.state_dict()) == keys
    torch.testing.assert_close(net(x), before, rtol=0, atol=0)


def test_bytes_moved_counts_five_tensors():
    n = 256 * 96 * 55 * 55  # conv1's map at batch 256
    assert lrn_triton.bytes_moved(n, 2) == 5 * 2 * n  # x, y; then x, g, dx
    assert lrn_triton.bytes_moved(n, 2, backward=False) == 2 * 2 * n
