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

# Half-precision inputs (bf16 autocast) are normalised in float32: the sum of
# squares and the power lose too much in 8 bits of mantissa.
_UPCAST = (torch.float16, torch.bfloat16)


def lrn(x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int = 1) -> torch.Tensor:
    """The paper's LRN of ``x`` (N, C, H, W), each of ``groups`` equal groups
    of channels (towers) normalised on its own.

    The formula is written out as plain elementwise work over the whole
    tensor, the formulation that torch.compile (inductor) fuses into one pass
    over it, with no hand-written kernel: square once, zero-pad the squares
    along the channels, add ``size`` shifted slices (the window sum), then
    ``a * (k + alpha * s) ** -beta``. With groups, a slice's term is dropped
    where the neighbour it brings belongs to another group (an index
    comparison that inductor folds into the same pass), so the window never
    crosses from one tower into the next. Nothing is reshaped, so a
    channels_last input stays channels_last without a copy. (On the CPU the
    compiled forward is one kernel, which a test checks; the CUDA/Triton code
    has not been inspected yet.) Eager mode runs the same code as a dozen or
    so small elementwise kernels. bf16/fp16 inputs (bf16 autocast) are
    computed in float32 and the result rounded once to the input's dtype.

    The window at channel i covers channels i - size//2 .. i + (size-1)//2 of
    its group (the paper's i +- n/2 for odd n; what F.local_response_norm
    does for even n), absent channels counting as zero.
    """
    if x.dim() != 4:
        raise ValueError(f"LRN expects an (N, C, H, W) tensor, not one of shape {tuple(x.shape)}")
    c = x.shape[1]
    if c % groups:
        raise ValueError(f"LRN: {c} channels do not split into {groups} equal groups")
    a = x.float() if x.dtype in _UPCAST else x
    cg, before, after = c // groups, size // 2, (size - 1) // 2
    padded = F.pad(a * a, (0, 0, 0, 0, before, after))
    # Each channel's index within its group, to keep the window inside it.
    index = torch.arange(c, device=x.device).remainder(cg).view(1, c, 1, 1) if groups > 1 else None
    s = padded[:, before : before + c]  # the channel itself
    for j in range(size):
        shift = j - before  # the neighbour is channel i + shift
        if shift == 0:
            continue
        term = padded[:, j : j + c]
        if index is not None:
            term = torch.where((index + shift >= 0) & (index + shift < cg), term, 0.0)
        s = s + term
    return (a * (k + alpha * s).pow(-beta)).to(x.dtype)


def lrn_reference(x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int = 1) -> torch.Tensor:
    """The same layer through ``F.local_response_norm`` (an average pool over a
    padded tensor of squares, and with ``groups`` a reshape): the reference
    that tests and benchmarks compare :func:`lrn` with, and the eager path.
    Half-precision inputs are upcast as in :func:`lrn`."""
    n, c, h, w = x.shape
    y = (x.float() if x.dtype in _UPCAST else x).reshape(n * groups, c // groups, h, w)
    # F.local_response_norm averages the squares over `size` channels
    # (zero-padded at the ends), so alpha * size gives the paper's sum.
    y = F.local_response_norm(y, size, alpha * size, beta, k)
    return y.reshape(n, c, h, w).to(x.dtype)


class LocalResponseNorm(nn.Module):
    """The paper's LRN: ``alpha`` multiplies the sum of squares, not its mean.

    With ``groups`` > 1 each group of channels (a tower) is normalised on its
    own: the sum never crosses from one group into the next. See :func:`lrn`
    for the formulation (the one torch.compile fuses into a single pass).
    """

    def __init__(self, size: int, alpha: float, beta: float, k: float, groups: int = 1):
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under torch.compile the elementwise formulation fuses into one pass;
        # run eagerly it is a dozen small kernels, and F.local_response_norm's
        # pooling is as fast or faster (measured on the CPU, benchmarks/README.md).
        if torch.compiler.is_compiling():
            return lrn(x, self.size, self.alpha, self.beta, self.k, self.groups)
        return lrn_reference(x, self.size, self.alpha, self.beta, self.k, self.groups)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, groups={self.groups}"
