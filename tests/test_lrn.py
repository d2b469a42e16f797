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
