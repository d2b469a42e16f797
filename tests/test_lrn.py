"""Local response normalisation (AlexNet Sec. 3.3) against the formula itself."""

import torch

from ilsvrc.models.layers import LocalResponseNorm


def lrn_by_the_formula(a: torch.Tensor, n: int, k: float, alpha: float, beta: float) -> torch.Tensor:
    """b[i] = a[i] / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a[j]^2)^beta, a direct loop."""
    N = a.shape[1]
    b = torch.empty_like(a)
    for i in range(N):
        lo, hi = max(0, i - n // 2), min(N - 1, i + n // 2)
        s = (a[:, lo : hi + 1] ** 2).sum(1)
        b[:, i] = a[:, i] / (k + alpha * s) ** beta
    return b


def test_matches_the_papers_formula():
    torch.manual_seed(0)
    a = torch.randn(2, 16, 5, 7, dtype=torch.float64) * 30  # large enough that alpha matters
    ours = LocalResponseNorm(5, 1e-4, 0.75, 2.0)(a)
    ref = lrn_by_the_formula(a, 5, 2.0, 1e-4, 0.75)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(ours, a / 2.0**0.75)  # the neighbours' sum really enters


def test_torch_lrn_needs_alpha_times_n():
    """torch.nn.LocalResponseNorm divides alpha by n (it averages the squares):
    the paper's layer is torch's with alpha * n, and differs from torch's with alpha."""
    torch.manual_seed(1)
    a = torch.randn(3, 12, 4, 4, dtype=torch.float64) * 40
    ref = lrn_by_the_formula(a, 5, 2.0, 1e-4, 0.75)
    torch.testing.assert_close(torch.nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)(a), ref)
    assert not torch.allclose(torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a), ref)


def test_towers_are_normalised_apart():
    torch.manual_seed(2)
    a = torch.randn(1, 10, 3, 3, dtype=torch.float64) * 40
    ours = LocalResponseNorm(5, 1e-4, 0.75, 2.0, groups=2)(a)
    ref = torch.cat([lrn_by_the_formula(a[:, :5], 5, 2.0, 1e-4, 0.75), lrn_by_the_formula(a[:, 5:], 5, 2.0, 1e-4, 0.75)], 1)
    torch.testing.assert_close(ours, ref)


# --- The fused formulation (lrn) against the F.local_response_norm path (lrn_reference) ---

import shutil  # noqa: E402

import pytest  # noqa: E402

from ilsvrc.models.layers import lrn, lrn_reference  # noqa: E402

PAPER = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)  # Sec. 3.3


def _inputs(groups: int, channels_last: bool, dtype=torch.float32, seed=0, shape=(2, 16, 5, 7)):
    """A scaled input (so that alpha matters) and an upstream gradient."""
    g = torch.Generator().manual_seed(seed + 10 * groups + channels_last)
    x = torch.randn(shape, generator=g) * 30
    grad = torch.randn(shape, generator=g)
    if channels_last:
        x, grad = x.to(memory_format=torch.channels_last), grad.to(memory_format=torch.channels_last)
    return x.to(dtype), grad.to(dtype)


def _forward_backward(fn, x: torch.Tensor, grad: torch.Tensor, groups: int, size: int = 5):
    x = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    y = fn(x, size, PAPER["alpha"], PAPER["beta"], PAPER["k"], groups)
    y.backward(grad)
    return y, x.grad


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("groups,size", [(1, 5), (2, 5), (4, 3), (2, 4)])
def test_fused_lrn_matches_reference_float32(groups, size, channels_last):
    x, grad = _inputs(groups, channels_last)
    y, dx = _forward_backward(lrn, x, grad, groups, size)
    y_ref, dx_ref = _forward_backward(lrn_reference, x, grad, groups, size)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-5, atol=1e-6)
    assert y.dtype == dx.dtype == torch.float32
    if channels_last:  # no layout change (and so no copy) on the way through
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert dx.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("groups", [1, 2])
def test_fused_lrn_bf16_against_float64(groups, channels_last):
    """bf16 in, bf16 out, computed in float32 inside: within bf16's rounding
    of the float64 reference on the same (bf16-rounded) input."""
    x, grad = _inputs(groups, channels_last, dtype=torch.bfloat16)
    y, dx = _forward_backward(lrn, x, grad, groups)
    y_ref, dx_ref = _forward_backward(lrn_reference, x.double(), grad.double(), groups)
    assert y.dtype == dx.dtype == torch.bfloat16
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(dx.double(), dx_ref, rtol=1e-2, atol=1e-2)
    # Computed in float32 inside, the output and the input gradient are the
    # exact values rounded once to bf16 (at most half a unit in the last
    # place, 2**-8 relative); rounding the sum and the power to bf16 on the
    # way gives errors two or more times that (and far more in the gradient).
    for ours, exact in ((y, y_ref), (dx, dx_ref)):
        assert torch.all((ours.double() - exact).abs() <= 1.01 * 2**-8 * exact.abs() + 1e-6)
    # alpha's share is far larger than the tolerance: the test can see a wrong window
    assert (y_ref - x.double() / PAPER["k"] ** PAPER["beta"]).abs().max() > 0.1 * y_ref.abs().max()


def test_fused_lrn_under_cpu_autocast_keeps_bf16():
    x, _ = _inputs(2, True, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = LocalResponseNorm(**PAPER, groups=2)(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.double(), lrn_reference(x.double(), **PAPER, groups=2), rtol=1e-2, atol=1e-2)


def test_window_stays_inside_its_tower():
    """Changing the last channel of tower 1 changes tower 1's last channels
    only, never tower 2's first ones (the window would reach them)."""
    x, _ = _inputs(2, False)
    layer = LocalResponseNorm(**PAPER, groups=2)
    bumped = x.clone()
    bumped[:, 7] *= 3  # channel 7 is tower 1's last of 16 channels
    diff = (layer(bumped) - layer(x)).abs().amax(dim=(0, 2, 3))
    assert torch.all(diff[8:] == 0)
    assert torch.all(diff[5:8] > 0)  # its own window: channels 5, 6, 7
    assert torch.all(diff[:5] == 0)


def test_module_runs_the_reference_eagerly_and_the_fused_function_compiled():
    x, _ = _inputs(2, True)
    layer = LocalResponseNorm(**PAPER, groups=2)
    torch.testing.assert_close(layer(x), lrn_reference(x, **PAPER, groups=2), rtol=0, atol=0)
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return lrn(*args, **kwargs)

    import ilsvrc.models.layers as layers

    original = layers.lrn
    try:
        layers.lrn = spy
        torch._dynamo.reset()
        torch.testing.assert_close(torch.compile(layer, backend="eager")(x), lrn(x, **PAPER, groups=2), rtol=1e-5, atol=1e-6)
    finally:
        layers.lrn = original
    assert calls  # traced through the fused formulation


_HAS_CXX = any(shutil.which(c) for c in ("g++", "c++", "clang++"))


@pytest.mark.skipif(not _HAS_CXX, reason="torch.compile on the CPU (inductor) needs a C++ compiler, and none is on PATH")
def test_fused_lrn_under_torch_compile():
    """One compiled graph with the three cases (groups 1; groups 2 in
    channels_last; groups 2 in bf16), forward and input gradients, against the
    eager reference. About 25 s of compilation on 2 cores, cold."""
    torch._dynamo.reset()

    def three(x1, x2, x3):
        return lrn(x1, **PAPER, groups=1), lrn(x2, **PAPER, groups=2), lrn(x3, **PAPER, groups=2)

    cases = [_inputs(1, False), _inputs(2, True), _inputs(2, True, dtype=torch.bfloat16)]
    xs = [x.detach().clone(memory_format=torch.preserve_format).requires_grad_() for x, _ in cases]
    ys = torch.compile(three, fullgraph=True)(*xs)
    torch.autograd.backward(ys, [g for _, g in cases])

    for (x, grad), y, xc, groups, dtype in zip(cases, ys, xs, (1, 2, 2), (torch.float32, torch.float32, torch.float64)):
        y_ref, dx_ref = _forward_backward(lrn_reference, x.to(dtype), grad.to(dtype), groups)
        assert y.dtype == xc.grad.dtype == x.dtype
        tol = dict(rtol=1e-5, atol=1e-5) if x.dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
        torch.testing.assert_close(y.to(dtype), y_ref, **tol)
        torch.testing.assert_close(xc.grad.to(dtype), dx_ref, **tol)
    assert ys[1].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not _HAS_CXX, reason="torch.compile on the CPU (inductor) needs a C++ compiler, and none is on PATH")
def test_fused_lrn_compiles_to_one_kernel():
    """The point of the formulation: inductor fuses the whole forward (square,
    padding, window sum over the towers, power, product) into one kernel."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    x, _ = _inputs(2, True)
    with torch.no_grad():
        y, code = run_and_get_code(torch.compile(lambda t: lrn(t, **PAPER, groups=2), fullgraph=True), x)
    torch.testing.assert_close(y, lrn_reference(x, **PAPER, groups=2), rtol=1e-5, atol=1e-5)
    assert len(code) == 1
    assert code[0].count("async_compile.cpp_pybinding(") == 1, code[0]
