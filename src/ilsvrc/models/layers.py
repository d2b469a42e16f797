"""Layers shared by the model families.

Local response normalisation, AlexNet paper Section 3.3:

    b[i] = a[i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a[j]^2) ** beta

The sum runs over ``n`` adjacent channels at the same position, and ``alpha``
multiplies the plain sum. ``torch.nn.LocalResponseNorm`` (like Caffe) divides
``alpha`` by ``n`` (it averages the squares), so the paper's layer equals
``torch.nn.LocalResponseNorm(n, alpha=n * alpha, beta, k)``; this class says
the paper's constants directly and its test checks both statements.
"""

from collections import OrderedDict
from collections.abc import Collection

import torch
from torch import nn
from torch.nn import functional as F

from . import lrn_triton

# Half-precision inputs (bf16 autocast) are normalised in float32: the sum of
# squares and the power lose too much in 8 bits of mantissa.
_UPCAST = (torch.float16, torch.bfloat16)


def lrn(x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int = 1) -> torch.Tensor:
    """The paper's LRN of ``x`` (N, C, H, W), each of ``groups`` equal groups
    of channels (towers) normalised on its own, written as elementwise work
    that torch.compile fuses into one pass (docs/models.md, "The LRN").

    The window at channel i covers channels i - size//2 .. i + (size-1)//2 of
    its group (the paper's i +- n/2 for odd n), absent channels counting as
    zero. bf16/fp16 inputs are computed in float32 and rounded once.
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
    own: the sum never crosses from one group into the next. With ``relu``
    the layer applies the ReLU that precedes it in AlexNet (Sec. 3.3: LRN
    after ReLU) itself, so that the two are one pass; see
    :func:`fuse_relu_lrn`.

    Computed by two Triton kernels on a GPU where ``ILSVRC_LRN_KERNEL=1``
    (``lrn_triton``), else by :func:`lrn` when compiled and by
    :func:`lrn_reference` when eager.
    """

    def __init__(self, size: int, alpha: float, beta: float, k: float, groups: int = 1, *, relu: bool = False):
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if lrn_triton.runs_on(x, self.groups):
            return lrn_triton.lrn(x, self.size, self.alpha, self.beta, self.k, self.groups, relu=self.relu)
        if self.relu:
            x = F.relu(x)
        # Under torch.compile the elementwise formulation fuses into one pass;
        # run eagerly it is a dozen small kernels, and F.local_response_norm's
        # pooling is as fast or faster (measured on the CPU, benchmarks/README.md).
        if torch.compiler.is_compiling():
            return lrn(x, self.size, self.alpha, self.beta, self.k, self.groups)
        return lrn_reference(x, self.size, self.alpha, self.beta, self.k, self.groups)

    def extra_repr(self) -> str:
        relu = ", relu=True" if self.relu else ""
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, groups={self.groups}{relu}"


class ReLUInNextLayer(nn.Identity):
    """A ReLU that the layer after it applies (a LocalResponseNorm with
    ``relu=True``, made by :func:`fuse_relu_lrn`): this slot passes its input
    on, and keeps the ReLU's name and place in the network."""

    def extra_repr(self) -> str:
        return "applied by the next layer"


def fuse_relu_lrn(layers) -> None:
    """Make each ReLU directly followed by a LocalResponseNorm in ``layers``
    (an ``OrderedDict`` of named modules, or an ``nn.Module`` whose children
    run in order, such as an ``nn.Sequential``) one pass: the LRN applies the
    ReLU (``relu=True``), and the ReLU's slot becomes a
    :class:`ReLUInNextLayer`. On a GPU the pair is then one kernel each way
    instead of two (the ReLU's own pass over the map, and its gradient's); the
    numbers are the same, and so is the state dict (neither layer has
    parameters)."""
    modules = layers._modules if isinstance(layers, nn.Module) else layers
    names = list(modules)
    for first, second in zip(names, names[1:]):
        if type(modules[first]) is nn.ReLU and isinstance(modules[second], LocalResponseNorm) and not modules[second].relu:
            modules[first] = ReLUInNextLayer()
            modules[second].relu = True


# --- Blocks shared by every family --------------------------------------------

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def activation(name: str) -> nn.Module:
    """A fresh activation layer by name ("relu" or "tanh")."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {name!r}")
    return ACTIVATIONS[name](inplace=False) if name == "relu" else ACTIVATIONS[name]()


class ConvBlock(nn.Sequential):
    """A convolution, then batch normalisation (``norm=True``), then an
    activation (``act=None`` for none): children ``conv``, ``bn``, ``relu``
    (the activation's slot keeps that name whatever it is, as the papers'
    layer names do), so a state dict reads ``conv3_1.conv.weight``.

    ``padding`` defaults to ``kernel // 2`` (the map keeps its size at stride
    1); the convolution has a bias only without batch normalisation (the norm's
    shift replaces it), unless ``bias`` says otherwise. ``eps`` is the batch
    norm's epsilon.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int | None = None,
                 *, groups: int = 1, norm: bool = False, act: str | None = "relu", bias: bool | None = None,
                 eps: float = 1e-5):
        super().__init__()
        padding = kernel // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups,
                              bias=(not norm) if bias is None else bias)
        if norm:
            self.bn = nn.BatchNorm2d(out_channels, eps=eps)
        if act is not None:
            self.relu = activation(act)


def fc_head(in_features: int, num_classes: int, *, hidden: tuple[int, ...] = (4096, 4096), dropout: float = 0.5,
            act: str = "relu", first: int = 6) -> nn.Sequential:
    """AlexNet's and VGG's classifier: hidden fully connected layers, each
    followed by the activation and dropout, then the class scores. Children
    are named from ``fc{first}``: fc6, relu6, drop6, fc7, relu7, drop7, fc8
    (``relu6`` holds the activation, tanh included)."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width = in_features
    for i, units in enumerate(hidden, start=first):
        layers[f"fc{i}"] = nn.Linear(width, units)
        layers[f"relu{i}"] = activation(act)
        layers[f"drop{i}"] = nn.Dropout(dropout)
        width = units
    layers[f"fc{first + len(hidden)}"] = nn.Linear(width, num_classes)
    return nn.Sequential(layers)


def fc_head_features(head: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The output of ``head`` before its last layer (the class scores): fc7's
    4096-d code after ReLU (AlexNet Sec. 6.1, VGG Appendix B), from the
    flattened features ``x``."""
    last = len(head) - 1
    for i, layer in enumerate(head):
        if i == last:
            break
        x = layer(x)
    return x


def rename_modules(state_dict: dict, names: dict[str, str], source: str) -> dict:
    """``state_dict`` with each parameter's module path renamed by ``names``
    (``features.0`` -> ``features.conv1``): weights from another library's
    layout. Raises ValueError for a module ``names`` does not know."""
    out = {}
    for key, value in state_dict.items():
        module, _, param = key.rpartition(".")
        if module not in names:
            raise ValueError(f"{key} is not a parameter of {source}")
        out[f"{names[module]}.{param}"] = value
    return out


def fc_head_dense(head: nn.Sequential, features: torch.Tensor) -> torch.Tensor:
    """Dense evaluation (VGG Sec. 3.2): the fully connected ``head`` applied as
    convolutions over a feature map larger than the one it was trained on,
    the class score map averaged over positions. The first layer becomes a
    convolution with the trained map's size as kernel (``head[0].in_features
    = C * k * k``), the others 1x1 convolutions. (B, C, H, W) -> (B, classes)."""
    x = features
    c = x.shape[1]
    for layer in head:
        if isinstance(layer, nn.Linear):
            if x.dim() == 4 and layer.in_features != x.shape[1]:  # the first: a k x k convolution
                k = int(round((layer.in_features / c) ** 0.5))
                if c * k * k != layer.in_features:
                    raise ValueError(f"{layer.in_features} inputs are not {c} channels on a square map")
                if min(x.shape[-2:]) < k:
                    raise ValueError(f"dense evaluation needs a feature map of at least {k}x{k}"
                                     f" (the training size's), not {tuple(x.shape[-2:])}")
                weight = layer.weight.view(layer.out_features, c, k, k)
            else:
                weight = layer.weight.view(layer.out_features, layer.in_features, 1, 1)
            x = F.conv2d(x, weight.to(x.dtype), layer.bias.to(x.dtype))
        else:
            x = layer(x)
    return x.mean((2, 3))


class FullyConnectedNet(nn.Module):
    """A network of ``features`` (convolutions and pooling) then an
    ``fc_head`` ``classifier`` (AlexNet, VGG): its forward pass, fc7's code
    and dense evaluation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """fc7's output (the 4096-d code of AlexNet Sec. 6.1, VGG Appendix B), after ReLU."""
        return fc_head_features(self.classifier, torch.flatten(self.features(x), 1))

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """Dense evaluation (VGG Sec. 3.2): the fully connected layers applied
        as convolutions over the feature map of an input at least as large as
        the training size (fc6 a convolution with the training size's map as
        kernel), the class score map averaged. At the training size it equals
        ``forward``."""
        return fc_head_dense(self.classifier, self.features(x))


def initialise(model: nn.Module, scheme: str, *, std: float = 0.01, bias: float = 0.0,
               bias_in: Collection[str] | None = None) -> None:
    """Initialise every convolution and linear layer of ``model``:

    - ``"gaussian"``: weights N(0, ``std``) and biases ``bias`` (AlexNet Sec. 5,
      VGG Sec. 3.1); with ``bias_in``, only the layers of those names (the
      last part of their path: ``conv2``, ``fc6``) get ``bias``, the others 0;
    - ``"xavier"``: Glorot & Bengio (2010) uniform weights, zero biases (VGG's
      note on initialisation without pre-training; GoogLeNet's reference);
    - ``"he"``: He et al. (2015) normal weights with fan-out and ReLU gain in
      the convolutions (ResNet Sec. 3.4), zero biases; the classifier (a
      linear layer, not followed by ReLU) keeps PyTorch's uniform
      +-1/sqrt(fan-in) weights, as torchvision and fb.resnet.torch do: He's
      fan-out rule there (few classes: large fan-in, small fan-out) makes
      logits in the tens at the first step.
    Batch norms start at weight 1, bias 0. Weights on the meta device (a
    model built only to count or shape-check) have no values to set.
    """
    if any(p.is_meta for p in model.parameters()):
        return
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "he" and isinstance(m, nn.Linear):
                m.reset_parameters()
            elif scheme == "gaussian":
                nn.init.normal_(m.weight, 0.0, std)
            elif scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            elif scheme == "he":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                raise ValueError(f"initialisation must be gaussian, xavier or he, not {scheme!r}")
            if m.bias is not None:
                given = scheme == "gaussian" and (bias_in is None or name.rpartition(".")[2] in bias_in)
                nn.init.constant_(m.bias, bias if given else 0.0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def parse_pool(pool: str) -> tuple[int, int]:
    """``"3/2"`` -> (window 3, stride 2)."""
    try:
        window, stride = (int(v) for v in str(pool).split("/"))
    except ValueError:
        raise ValueError(f"pool must read 'window/stride' such as '3/2' or '2/2', not {pool!r}") from None
    if window < 1 or stride < 1:
        raise ValueError(f"pool window and stride must be positive, not {pool!r}")
    return window, stride


# --- Feature-map sizes ------------------------------------------------------------


def layer_side(layer: nn.Module, side: int) -> int:
    """The side of ``layer``'s output map for a square input of side ``side``,
    by PyTorch's output-size rules for convolutions and pooling (ceil mode
    included: the last window must start inside the input or its left
    padding). A sequence (``nn.Sequential``, a ConvBlock) applies its children
    in order; any other layer (activation, LRN, dropout, an inception module)
    keeps the side."""
    if isinstance(layer, nn.Sequential):
        for child in layer:
            side = layer_side(child, side)
        return side
    if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k, s, p, d = (_first(getattr(layer, a, 1)) for a in ("kernel_size", "stride", "padding", "dilation"))
        ceil = getattr(layer, "ceil_mode", False)
        out = (side + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
        return out - 1 if ceil and (out - 1) * s >= side + p else out
    return side


def _first(value) -> int:
    """A square layer's size along one side (``3`` of ``3`` or ``(3, 3)``)."""
    return value[0] if isinstance(value, (tuple, list)) else value


def map_sides(layers, image_size: int, network: str) -> dict[str, int]:
    """The side of each named layer's output map in ``layers`` (an
    ``OrderedDict`` of named modules, or a module whose children run in
    order) for a square input of ``image_size`` pixels. Raises ValueError
    ("image size N is too small for ``network``") where a map would be empty."""
    modules = layers._modules if isinstance(layers, nn.Module) else layers
    sides, side = {}, image_size
    for name, layer in modules.items():
        side = sides[name] = layer_side(layer, side)
        if side < 1:
            raise ValueError(f"image size {image_size} is too small for {network}")
    return sides


def output_side(layers, image_size: int, network: str) -> int:
    """The side of the last map of ``layers`` (see :func:`map_sides`)."""
    return list(map_sides(layers, image_size, network).values())[-1]
