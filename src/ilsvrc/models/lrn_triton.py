"""The paper's local response normalisation (AlexNet Sec. 3.3), with the ReLU
before it, as one Triton kernel for the forward pass and one for the backward.

Why by hand. Under torch.compile, inductor fuses the elementwise formulation
of :func:`ilsvrc.models.layers.lrn` into one kernel per pass, but its
backward measured about ten times the memory-bandwidth bound on an H200
(1.5 ms for the backward of conv1's 256x96x55x55 map). No library has the
paper's layer either: ``F.local_response_norm`` is an average pool over a
padded copy of the squares (several passes), and cuDNN's LRN is gone from
PyTorch. So the layer is written here once, as two passes that each read
their inputs once and write their output once, with the reference
(``lrn_reference``, ``lrn``) kept beside it in layers.py and tested against.

What is computed. With ``a = relu(x)`` (or ``a = x`` without the ReLU) and
the window of channel ``i`` its channels ``i - size//2 .. i + (size-1)//2``
inside its own group (tower), absent channels counting as zero:

    s[i] = k + alpha * sum_{m in window(i)} a[m]^2
    y[i] = a[i] * s[i]^-beta
    dL/da[i] = g[i] s[i]^-beta - 2 alpha beta a[i] sum_{j: i in window(j)} g[j] a[j] s[j]^(-beta-1)

and ``dL/dx = dL/da * (x > 0)`` with the ReLU. The second sum runs over the
channels ``j`` whose window holds ``i``: channels ``i - (size-1)//2 ..
i + size//2``, the window mirrored (the same window for odd ``size``, not for
even). The backward saves nothing but the input ``x``: it recomputes ``a``,
``s`` and ``s^-beta`` from it (saving ``s`` in float32 would add a write and
a read of 8 bytes an element to the 10 of bf16's x, y, x, g and dx).

Blocking. A program owns a tile of ``BLOCK_P`` pixels (positions of one
image, in the order of the map) by all the channels of one group, padded to
a power of two ``BLOCK_C``; the tile is loaded once, by its strides, so that
any 4-D layout is read in place. In channels_last (the project's layout on a
GPU) a pixel's channels lie side by side and the tile's rows are contiguous:
the fast case. Every channel a window needs is in the tile, because a window
never leaves its group, so the window sum is formed in registers: for each
offset ``d`` of the window, the tile shifted by ``d`` channels (``tl.gather``
along the channels), masked where ``i + d`` falls outside the group. Triton
lays a gather's rows across a warp's lanes and shifts with warp shuffles:
each offset takes BLOCK_C / 32 shuffle instructions per 32 elements (read
from the compiled PTX), so the backward's eight offsets (two window sums of
size 5) take one shuffle instruction per two elements at 64 channels a
group. Whether those or the memory traffic bound the time is for the
benchmark to say.
The sum is exact float32 arithmetic in a fixed order; ``s^-beta`` is one
``exp2(-beta * log2(s))`` per element. All arithmetic is float32; the
output is rounded once to the input's dtype (bf16 in, bf16 out). (A window
sum as a product with a 0/1 band matrix on the tensor cores was the other
candidate: its cost grows with the group's width, and Triton's interpreter
cannot check the split into bf16 parts that exactness would need.)

The operators. ``torch.ops.ilsvrc.lrn`` and ``torch.ops.ilsvrc.lrn_backward``
are ``torch.library.custom_op`` operators with fake (shape) functions, so
that torch.compile(fullgraph=True) traces them without a break; an
``autograd.Function`` with ``setup_context`` makes the second the first's
derivative, the form torch.func.grad (the training step's gradient, eager or
compiled) accepts, where an operator's own ``register_autograd`` formula is
refused under torch.func transforms (torch 2.14). They are custom ops rather
than ``torch.library.triton_op`` (which would let inductor see the kernels):
inductor has nothing to fuse into a kernel that already reads and writes each
tensor once, the captured CUDA graph removes the Python launch, and an
opaque op also runs on CPU tensors under the Triton interpreter
(``TRITON_INTERPRET=1``), where the tests check it. A second derivative
raises.
"""

import contextlib
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # a machine without Triton: the layer keeps its reference path
    triton = None

# Triton decides when the kernels below are defined whether they run in its
# interpreter (on the CPU, for tests): it reads TRITON_INTERPRET then.
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
# What the kernels need (checked 2026-12-01 on the CPU interpreter): Triton's
# tl.gather (Triton 3.3, torch 2.7's; 3.2 lacks it) and a torch.compile that
# traces torch.func.grad through the autograd.Function below (torch 2.11 and
# 2.14 do; 2.7 stops with "must override the setup_context staticmethod";
# 2.8 to 2.10 not checked). Elsewhere the layer keeps its reference path.
MIN_TORCH = "2.11"
AVAILABLE = triton is not None and hasattr(tl, "gather") and torch.__version__ >= MIN_TORCH  # a TorchVersion

DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # computed in float32 inside
# A program's tile: TILE elements (BLOCK_P pixels x BLOCK_C channels) over
# NUM_WARPS warps, 8 elements per thread and tensor. Compiled for sm_90
# (Triton 3.8, ptxas -v, no GPU needed) the backward then takes 72 to 106
# registers without spills (48 to 128 channels a group, either layout); 16
# elements per thread took 137 (fewer programs resident per SM), 32 spilled.
TILE = 1024
NUM_WARPS = 4
MAX_GROUP_CHANNELS = 256  # 118 registers; a row of 512 took all 255: wider groups take the reference path


# Whether LocalResponseNorm uses the kernels on a GPU. Off until a GPU run has
# checked them (tests/test_lrn_triton.py on CUDA) and timed them
# (benchmarks/step.py --variants): the session that wrote them had no GPU
# time left. ILSVRC_LRN_KERNEL=1 (or use(True)) turns them on.
ENABLED = os.environ.get("ILSVRC_LRN_KERNEL", "0") == "1"


def use(enabled: bool) -> None:
    """Turn the kernels on or off for LocalResponseNorm on a GPU (see ENABLED)."""
    global ENABLED
    ENABLED = bool(enabled)


def runs_on(x: torch.Tensor, groups: int = 1) -> bool:
    """Whether LocalResponseNorm hands ``x`` to the Triton kernels: they are
    enabled (ENABLED), Triton is present, and ``x`` is a 4-D CUDA tensor of
    a floating dtype in DTYPES whose groups fit a tile. Everything else (the
    CPU, float64) takes the reference path."""
    return (ENABLED and AVAILABLE and x.is_cuda and x.dim() == 4 and x.dtype in DTYPES and groups > 0
            and x.shape[1] % groups == 0 and x.shape[1] // groups <= MAX_GROUP_CHANNELS)


def bytes_moved(numel: int, itemsize: int, *, forward: bool = True, backward: bool = True) -> int:
    """The fewest bytes the layer's passes must move for a map of ``numel``
    elements of ``itemsize`` bytes (the bandwidth bound divides this): the
    forward reads x and writes y; the backward reads x again and the
    gradient g, and writes dx. Five tensors' worth for both passes."""
    tensors = (2 if forward else 0) + (3 if backward else 0)
    return tensors * numel * itemsize


def lrn(x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int = 1,
        relu: bool = False) -> torch.Tensor:
    """The paper's LRN of ``x`` (N, C, H, W) in each of ``groups`` groups of
    channels, of ``relu(x)`` with ``relu``: one Triton kernel forward, one
    backward. ``x`` is a CUDA tensor (or a CPU one under TRITON_INTERPRET=1)."""
    if x.dim() != 4:
        raise ValueError(f"LRN expects an (N, C, H, W) tensor, not one of shape {tuple(x.shape)}")
    if x.shape[1] % groups:
        raise ValueError(f"LRN: {x.shape[1]} channels do not split into {groups} equal groups")
    if x.dtype not in DTYPES:
        raise ValueError(f"the Triton LRN takes {', '.join(map(str, DTYPES))}, not {x.dtype}")
    _window(size)  # checks it
    return _LocalResponseNorm.apply(x, size, alpha, beta, k, groups, relu)


# --- Layout ---------------------------------------------------------------------


def _output_format(x: torch.Tensor) -> torch.memory_format:
    """The layout of y and dx: channels_last for a channels_last x, else
    contiguous (shared by the operators and their fake functions)."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _pixel_stride(t: torch.Tensor) -> int | None:
    """The stride between consecutive pixels (h, w) of one image and channel,
    if one stride steps through them all (NCHW and channels_last both), else None."""
    _, _, h, w = t.shape
    if w == 1:
        return t.stride(2)
    if h == 1 or t.stride(2) == w * t.stride(3):
        return t.stride(3)
    return None


def _strides(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """``t`` (copied to contiguous if its pixels have no single stride) and
    its image, channel and pixel strides, as the kernels address it."""
    if _pixel_stride(t) is None:
        t = t.contiguous()
    return t, (t.stride(0), t.stride(1), _pixel_stride(t))


def _geometry(x: torch.Tensor, groups: int) -> dict:
    """The tile and the grid for ``x``: all of a group's channels (padded to
    a power of two) by as many pixels as make a TILE."""
    n, c, h, w = x.shape
    group_channels = c // groups
    if group_channels > MAX_GROUP_CHANNELS:
        raise ValueError(f"the Triton LRN takes at most {MAX_GROUP_CHANNELS} channels per group, not {group_channels}")
    block_c = triton.next_power_of_2(group_channels)
    block_p = TILE // block_c
    pixel_blocks = triton.cdiv(h * w, block_p)
    return dict(grid=(n * pixel_blocks * groups,), pixels=h * w, group_channels=group_channels, groups=groups,
                pixel_blocks=pixel_blocks, BLOCK_P=block_p, BLOCK_C=block_c)


def _window(size: int) -> dict:
    """The window's reach below and above channel i (the paper's n/2 each
    side for odd n; F.local_response_norm's split for even n)."""
    if size < 1:
        raise ValueError(f"the LRN window must hold at least one channel, not {size}")
    return dict(BEFORE=size // 2, AFTER=(size - 1) // 2)


def _device_guard(x: torch.Tensor):
    """Launch on x's GPU (Triton launches on the current device)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _check_device(x: torch.Tensor) -> None:
    if not (x.is_cuda or INTERPRETED):
        raise RuntimeError("the Triton LRN runs on CUDA tensors (or on the CPU with TRITON_INTERPRET=1 set"
                           f" before it is imported), not on {x.device}")


# --- Kernels --------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _window_sum(v, channel, group_channels, LOW: tl.constexpr, HIGH: tl.constexpr):
        """For each channel c of the tile ``v`` (pixels x channels), the sum of
        ``v`` over channels c - LOW .. c + HIGH that exist in the group.
        ``channel`` holds each element's channel (c) in the tile's shape."""
        total = v  # the channel itself (d = 0)
        for d in tl.static_range(-LOW, HIGH + 1):
            if d != 0:
                neighbour = channel + d
                inside = (neighbour >= 0) & (neighbour < group_channels)
                shifted = tl.gather(v, tl.where(inside, neighbour, channel), axis=1)
                total += tl.where(inside, shifted, 0.0)
        return total

    @triton.jit
    def _tile(pixels, group_channels, groups, pixel_blocks, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """This program's image, its tile's pixels (a column) and channels
        within the group (a row, and the same broadcast over the tile), the
        mask of the tile's real elements, and the channels in the map."""
        pid = tl.program_id(0)
        group = pid % groups
        block = (pid // groups) % pixel_blocks
        image = (pid // groups // pixel_blocks).to(tl.int64)
        pixel = block * BLOCK_P + tl.arange(0, BLOCK_P)[:, None]
        channel = tl.arange(0, BLOCK_C)[None, :]
        inside = (pixel < pixels) & (channel < group_channels)
        channel_tile = tl.broadcast_to(channel, (BLOCK_P, BLOCK_C))
        return image, pixel, channel_tile, inside, group * group_channels + channel

    @triton.jit
    def _forward_kernel(x_ptr, y_ptr, pixels, group_channels, groups, pixel_blocks,
                        x_sn, x_sc, x_sp, y_sn, y_sc, y_sp, alpha, beta, k,
                        BEFORE: tl.constexpr, AFTER: tl.constexpr, RELU: tl.constexpr,
                        BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        image, pixel, channel, inside, c = _tile(pixels, group_channels, groups, pixel_blocks, BLOCK_P, BLOCK_C)
        x = tl.load(x_ptr + image * x_sn + c * x_sc + pixel * x_sp, mask=inside, other=0.0).to(tl.float32)
        a = tl.where(x < 0.0, 0.0, x) if RELU else x  # NaN stays NaN, as in torch.relu
        s = k + alpha * _window_sum(a * a, channel, group_channels, BEFORE, AFTER)
        y = a * tl.exp2(-beta * tl.log2(s))
        tl.store(y_ptr + image * y_sn + c * y_sc + pixel * y_sp, y.to(y_ptr.dtype.element_ty), mask=inside)

    @triton.jit
    def _backward_kernel(x_ptr, g_ptr, dx_ptr, pixels, group_channels, groups, pixel_blocks,
                         x_sn, x_sc, x_sp, g_sn, g_sc, g_sp, dx_sn, dx_sc, dx_sp, alpha, beta, k,
                         BEFORE: tl.constexpr, AFTER: tl.constexpr, RELU: tl.constexpr,
                         BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        image, pixel, channel, inside, c = _tile(pixels, group_channels, groups, pixel_blocks, BLOCK_P, BLOCK_C)
        x = tl.load(x_ptr + image * x_sn + c * x_sc + pixel * x_sp, mask=inside, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + image * g_sn + c * g_sc + pixel * g_sp, mask=inside, other=0.0).to(tl.float32)
        a = tl.where(x < 0.0, 0.0, x) if RELU else x
        # Recomputed from x: the window sum s, s^-beta, and each channel's
        # share g a s^(-beta-1) of its neighbours' gradients.
        s = k + alpha * _window_sum(a * a, channel, group_channels, BEFORE, AFTER)
        s_beta = tl.exp2(-beta * tl.log2(s))
        share = g * a * s_beta / s
        # Summed over the channels whose windows hold this one: the mirrored window.
        da = g * s_beta - 2.0 * alpha * beta * a * _window_sum(share, channel, group_channels, AFTER, BEFORE)
        dx = tl.where(x > 0.0, da, 0.0) if RELU else da  # torch.relu's gradient: 0 at x = 0
        tl.store(dx_ptr + image * dx_sn + c * dx_sc + pixel * dx_sp, dx.to(dx_ptr.dtype.element_ty), mask=inside)


# --- Operators ------------------------------------------------------------------


def _launch(kernel, tensors: list, x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int,
            relu: bool) -> None:
    """Launch ``kernel`` over ``x``'s tiles with ``tensors`` (inputs, then the
    output), each addressed by its own strides."""
    geometry = _geometry(x, groups)
    addressed = [_strides(t) for t in tensors]
    strides = [s for _, st in addressed for s in st]
    _, c, h, w = x.shape
    if any((c - 1) * sc + (h * w - 1) * sp >= 2**31 for _, (_, sc, sp) in addressed):
        raise ValueError(f"the Triton LRN addresses within an image with 32-bit offsets; {c}x{h}x{w} is too large")
    with _device_guard(x):
        kernel[geometry["grid"]](
            *(t for t, _ in addressed), geometry["pixels"], geometry["group_channels"], groups,
            geometry["pixel_blocks"], *strides, alpha, beta, k, **_window(size), RELU=relu,
            BLOCK_P=geometry["BLOCK_P"], BLOCK_C=geometry["BLOCK_C"], num_warps=NUM_WARPS)


if AVAILABLE:

    @torch.library.custom_op("ilsvrc::lrn", mutates_args=())
    def _lrn_op(x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int,
                relu: bool) -> torch.Tensor:
        _check_device(x)
        y = torch.empty_like(x, memory_format=_output_format(x))
        if y.numel():
            _launch(_forward_kernel, [x, y], x, size, alpha, beta, k, groups, relu)
        return y

    @_lrn_op.register_fake
    def _(x, size, alpha, beta, k, groups, relu):
        return torch.empty_like(x, memory_format=_output_format(x))

    @torch.library.custom_op("ilsvrc::lrn_backward", mutates_args=())
    def _lrn_backward_op(grad: torch.Tensor, x: torch.Tensor, size: int, alpha: float, beta: float, k: float,
                         groups: int, relu: bool) -> torch.Tensor:
        _check_device(x)
        dx = torch.empty_like(x, memory_format=_output_format(x))
        if dx.numel():
            _launch(_backward_kernel, [x, grad.to(x.dtype), dx], x, size, alpha, beta, k, groups, relu)
        return dx

    @_lrn_backward_op.register_fake
    def _(grad, x, size, alpha, beta, k, groups, relu):
        return torch.empty_like(x, memory_format=_output_format(x))


class _LocalResponseNorm(torch.autograd.Function):
    """The forward operator, differentiable by the backward one. An
    autograd.Function with ``setup_context`` rather than the operator's own
    ``register_autograd``: torch.func.grad (the training step's gradient,
    eager or compiled) accepts only the former."""

    @staticmethod
    def forward(x, size, alpha, beta, k, groups, relu):
        with torch.no_grad():  # autograd sees this Function, not the operator inside
            return torch.ops.ilsvrc.lrn(x, size, alpha, beta, k, groups, relu)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, *ctx.hyper = inputs  # size, alpha, beta, k, groups, relu
        ctx.save_for_backward(x)  # the backward recomputes everything else from x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return (_LocalResponseNormBackward.apply(grad, x, *ctx.hyper),) + (None,) * len(ctx.hyper)


class _LocalResponseNormBackward(torch.autograd.Function):
    """The backward operator, which has no derivative of its own: a second
    derivative through the layer raises instead of coming out wrong."""

    @staticmethod
    def forward(grad, x, size, alpha, beta, k, groups, relu):
        with torch.no_grad():
            return torch.ops.ilsvrc.lrn_backward(grad, x, size, alpha, beta, k, groups, relu)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("the Triton LRN has no second derivative")
