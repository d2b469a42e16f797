"""Layers shared by the model families.

Local response normalisation, AlexNet paper Section 3.3:

    b[i] = a[i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a[j]^2) ** beta

The sum runs over ``n`` adjacent channels at the same position, and ``alpha``
multiplies the plain sum. ``torch.nn.LocalResponseNorm`` (like Caffe) divides
``alpha`` by ``n`` (it averages the squares), so the paper's layer equals
``torch.nn.LocalResponseNorm(n, alpha=n * alpha, beta, k)``; this class says
the paper's constants directly and its test checks both statements.
"""

import torch
from torch import nn
from torch.nn import functional as F


class LocalResponseNorm(nn.Module):
    """The paper's LRN: ``alpha`` multiplies the sum of squares, not its mean."""

    def __init__(self, size: int, alpha: float, beta: float, k: float, groups: int = 1):
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # With groups > 1 each group of channels (a tower) is normalised on
        # its own: the sum never crosses from one group into the next.
        n, c, h, w = x.shape
        x = x.reshape(n * self.groups, c // self.groups, h, w)
        # F.local_response_norm averages the squares over `size` channels
        # (zero-padded at the ends), so alpha * size gives the paper's sum.
        x = F.local_response_norm(x, self.size, self.alpha * self.size, self.beta, self.k)
        return x.reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, groups={self.groups}"
