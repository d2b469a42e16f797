"""GoogLeNet as Szegedy et al. describe it ("Going Deeper with Convolutions",
CVPR 2015 / arXiv 1409.4842).

Table 1 gives the layers, Fig. 3 the order; our names are the table's:

    conv1 7x7/2 64 -> pool1 3x3/2 -> lrn1
    conv2_reduce 1x1 64 -> conv2 3x3 192 -> lrn2 -> pool2 3x3/2
    inception_3a, inception_3b -> pool3 3x3/2
    inception_4a .. inception_4e -> pool4 3x3/2
    inception_5a, inception_5b
    avgpool (7x7 at 224; adaptive, so any input size works) -> dropout 0.4 -> fc

These are ``features.conv1`` .. ``features.inception_5b``, then ``avgpool``,
``dropout`` and ``fc``. Every convolution, those inside the inception modules
included, is followed by ReLU (Sec. 5). The max pools round up (ceil mode),
as the reference Caffe model does, which gives Table 1's 56, 28, 14 and 7
pixel maps at 224.

An inception module (Fig. 2b) concatenates four branches: ``branch1x1``;
``branch3x3_reduce`` -> ``branch3x3``; ``branch5x5_reduce`` -> ``branch5x5``;
``pool`` (3x3 max pool, stride 1) -> ``pool_proj`` (1x1).

Auxiliary classifiers (Sec. 5) sit on inception_4a (``aux1``) and
inception_4d (``aux2``): average pool 5x5/3 (4x4 maps at 224), 1x1
convolution with 128 filters and ReLU, fc 1024 and ReLU, dropout 0.7, fc to
the classes. Their losses are added with weight ``aux_weight`` (0.3) during
training and they are dropped at inference: in training mode ``forward``
returns ``(logits, aux1_logits, aux2_logits)``, in eval mode the logits
alone. ``aux=False`` builds the network without them.

The switches that give torchvision's layout (``TORCHVISION``, needed to load
its weights): batch norm after every convolution (``norm="batch"``, eps
0.001, convolutions without bias) instead of LRN, 3x3 kernels in the "5x5"
branch (torchvision's known deviation, pytorch/vision#906), a 2x2/2 pool4,
adaptive 4x4 pooling in the auxiliary classifiers.
"""

import re
from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from .layers import ConvBlock, LocalResponseNorm, activation, initialise, layer_side, map_sides, parse_pool

# Table 1: the layers before the first inception module: (name, filters, kernel, stride).
CONV_LAYERS = (("conv1", 64, 7, 2), ("conv2_reduce", 64, 1, 1), ("conv2", 192, 3, 1))
POOL = (3, 2)  # Table 1: max pool 3x3/2 (pool1, pool2, pool3; pool4 is a switch)
# Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj of each inception module.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
STAGES = (("3a", "3b"), ("4a", "4b", "4c", "4d", "4e"), ("5a", "5b"))  # Table 1: a max pool between stages
BRANCH_POOL = 3  # Fig. 2b / Table 1 "pool proj": 3x3 max pooling, stride 1, in every inception module
AUX_TAPS = {"inception_4a": "aux1", "inception_4d": "aux2"}  # Sec. 5: "put on top of the output of (4a) and (4d)"
AUX_CONV = 128  # Sec. 5: "A 1x1 convolution with 128 filters for dimension reduction"
AUX_HIDDEN = 1024  # Sec. 5: "A fully connected layer with 1024 units"
AUX_GRID = 4  # Sec. 5: "4x4x512 output for the (4a), and 4x4x528 for the (4d) stage" (adaptive pooling's size)
NORMS = ("none", "batch")


class Inception(nn.Module):
    """Fig. 2b: 1x1, 1x1 -> 3x3, 1x1 -> 5x5 and 3x3 max pool -> 1x1, concatenated."""

    def __init__(self, in_channels: int, n1x1: int, n3x3_reduce: int, n3x3: int, n5x5_reduce: int, n5x5: int,
                 pool_proj: int, *, conv, branch5x5_kernel: int):
        super().__init__()
        self.branch1x1 = conv(in_channels, n1x1, 1)
        self.branch3x3_reduce = conv(in_channels, n3x3_reduce, 1)
        self.branch3x3 = conv(n3x3_reduce, n3x3, 3)
        self.branch5x5_reduce = conv(in_channels, n5x5_reduce, 1)
        self.branch5x5 = conv(n5x5_reduce, n5x5, branch5x5_kernel)
        self.pool = nn.MaxPool2d(BRANCH_POOL, 1, padding=BRANCH_POOL // 2)
        self.pool_proj = conv(in_channels, pool_proj, 1)
        self.out_channels = n1x1 + n3x3 + n5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3(self.branch3x3_reduce(x)),
            self.branch5x5(self.branch5x5_reduce(x)),
            self.pool_proj(self.pool(x)),
        ], 1)


class Auxiliary(nn.Module):
    """Sec. 5's auxiliary classifier: pool -> 1x1 conv 128 + ReLU -> fc 1024
    + ReLU -> dropout -> fc to the classes. ``pool`` is the average pooling
    and ``grid`` the side of its output map."""

    def __init__(self, in_channels: int, num_classes: int, *, pool: nn.Module, grid: int, conv, dropout: float):
        super().__init__()
        self.pool = pool
        self.conv = conv(in_channels, AUX_CONV, 1)
        self.fc1 = nn.Linear(AUX_CONV * grid * grid, AUX_HIDDEN)
        self.relu = activation("relu")
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(AUX_HIDDEN, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


class GoogLeNet(nn.Module):
    """The network of Table 1 with the auxiliary classifiers of Sec. 5."""

    def __init__(self, num_classes: int, *, aux: bool, aux_weight: float, aux_pool: str, aux_dropout: float,
                 dropout: float, lrn: bool, lrn_size: int, lrn_alpha: float, lrn_beta: float, lrn_k: float,
                 norm: str, bn_eps: float, branch5x5_kernel: int, pool4: str, init: str, image_size: int = 224):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {norm!r}")
        if branch5x5_kernel < 1 or branch5x5_kernel % 2 == 0:
            raise ValueError(f"branch5x5_kernel must be a positive odd size (5 or 3), not {branch5x5_kernel!r}")
        for name, p in (("dropout", dropout), ("aux_dropout", aux_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), not {p!r}")
        if aux_pool != "adaptive":
            aux_window, aux_stride = parse_pool(aux_pool)
        self.aux, self.aux_weight = aux, aux_weight
        conv = partial(ConvBlock, norm=norm == "batch", eps=bn_eps)

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = 3
        for name, out, kernel, stride in CONV_LAYERS:
            layers[name] = conv(channels, out, kernel, stride)
            channels = out
            if name == "conv1":
                layers["pool1"] = nn.MaxPool2d(*POOL, ceil_mode=True)
                if lrn:
                    layers["lrn1"] = LocalResponseNorm(lrn_size, lrn_alpha, lrn_beta, lrn_k)
        if lrn:
            layers["lrn2"] = LocalResponseNorm(lrn_size, lrn_alpha, lrn_beta, lrn_k)
        layers["pool2"] = nn.MaxPool2d(*POOL, ceil_mode=True)
        for i, stage in enumerate(STAGES):
            if i == 1:
                layers["pool3"] = nn.MaxPool2d(*POOL, ceil_mode=True)
            if i == 2:
                layers["pool4"] = nn.MaxPool2d(*parse_pool(pool4), ceil_mode=True)
            for module in stage:
                layers[f"inception_{module}"] = Inception(channels, *INCEPTION[module], conv=conv,
                                                          branch5x5_kernel=branch5x5_kernel)
                channels = layers[f"inception_{module}"].out_channels
        self.features = nn.Sequential(layers)

        self.avgpool = nn.AdaptiveAvgPool2d(1)  # Table 1: avg pool 7x7/1 over the 7x7 maps of a 224 input
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

        sides = map_sides(layers, image_size, "GoogLeNet's layers")  # inception modules keep the side
        if aux:
            for tap, aux_name in AUX_TAPS.items():
                side = sides[tap]
                if aux_pool == "adaptive":  # torchvision: adaptive average pooling to 4x4
                    pool, grid = nn.AdaptiveAvgPool2d(AUX_GRID), AUX_GRID
                else:
                    # Sec. 5's window and stride (ceil mode, as Caffe); on maps smaller
                    # than the window (small inputs, 64 pixels say) it covers the whole map.
                    pool = nn.AvgPool2d(min(aux_window, side), aux_stride, ceil_mode=True)
                    grid = layer_side(pool, side)
                setattr(self, aux_name, Auxiliary(layers[tap].out_channels, num_classes, pool=pool, grid=grid,
                                                  conv=conv, dropout=aux_dropout))
        initialise(self, init)  # the recipe: "xavier", as BVLC's replication (the paper does not say)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    def forward(self, x: torch.Tensor):
        if not (self.training and self.aux):
            return self._head(self.features(x))
        aux = []
        for name, layer in self.features.named_children():
            x = layer(x)
            if name in AUX_TAPS:
                aux.append(getattr(self, AUX_TAPS[name])(x))
        return (self._head(x), *aux)

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores of an input of any size (the average pool is adaptive),
        without the auxiliary classifiers whatever the mode."""
        return self._head(self.features(x))


def googlenet(num_classes: int = 1000, **variant) -> GoogLeNet:
    """GoogLeNet from "Going Deeper with Convolutions" (Szegedy et al., CVPR 2015)."""
    return GoogLeNet(num_classes, **variant)


# --- torchvision's weights ------------------------------------------------------

# torchvision name -> (our name, the switches that give torchvision's layout).
# Without auxiliary classifiers: torchvision's pretrained googlenet drops them
# (its weights=... sets aux1 = aux2 = None unless aux_logits=True), so its state
# dict has none; a state dict with aux1.* and aux2.* (aux_logits=True) loads
# into the same switches with aux=True. torchvision's own ImageNet weights also
# expect its transform_input=True (inputs normalised by its mean and std, then
# rescaled to [-1, 1]); that is a matter of the input pipeline, not of the layers.
TORCHVISION = {
    "googlenet": ("googlenet", {"norm": "batch", "bn_eps": 1e-3, "lrn": False, "branch5x5_kernel": 3,
                                "pool4": "2/2", "aux_pool": "adaptive", "dropout": 0.2, "aux": False}),
}

_BRANCHES = {"branch1": "branch1x1", "branch2.0": "branch3x3_reduce", "branch2.1": "branch3x3",
             "branch3.0": "branch5x5_reduce", "branch3.1": "branch5x5", "branch4.1": "pool_proj"}
_STEM = {"conv1": "conv1", "conv2": "conv2_reduce", "conv3": "conv2"}


def _our_key(key: str) -> str | None:
    if m := re.fullmatch(r"(conv[123])\.((?:conv|bn)\.\w+)", key):
        return f"features.{_STEM[m[1]]}.{m[2]}"
    if m := re.fullmatch(r"inception(\d[a-e])\.(branch1|branch[234]\.[01])\.((?:conv|bn)\.\w+)", key):
        return f"features.inception_{m[1]}.{_BRANCHES[m[2]]}.{m[3]}" if m[2] in _BRANCHES else None
    if re.fullmatch(r"aux[12]\.(conv\.(?:conv|bn)\.\w+|fc[12]\.(?:weight|bias))", key):
        return key
    if re.fullmatch(r"fc\.(weight|bias)", key):
        return key
    return None


def from_torchvision(state_dict: dict) -> dict:
    """A torchvision GoogLeNet state dict with our names (conv2 ->
    features.conv2_reduce, conv3 -> features.conv2, inception3a.branch2.1 ->
    features.inception_3a.branch3x3, ...). Load it into
    ``build("googlenet", **switches)`` of ``TORCHVISION``."""
    out = {}
    for key, value in state_dict.items():
        ours = _our_key(key)
        if ours is None:
            raise ValueError(f"not a key of a torchvision GoogLeNet: {key!r}")
        out[ours] = value
    return out


PAPER = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015"
MODELS = {"googlenet": (googlenet, "googlenet", {})}
