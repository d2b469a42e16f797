"""Residual networks as He, Zhang, Ren and Sun describe them ("Deep Residual
Learning for Image Recognition", CVPR 2016 / arXiv 1512.03385), with their
plain twins.

One building block serves every network: the basic block of Fig. 2 (two 3x3
convolutions) and the bottleneck of Fig. 5 (1x1, 3x3, 1x1, four times as
many outputs as its width). Each convolution is followed by batch
normalisation and then ReLU (Sec. 3.4), except that the block's last ReLU
comes after the shortcut's addition (Fig. 2). ``residual=False`` drops the
shortcut: the plain network of Sec. 4.1 with the same layers.

Shortcuts (Sec. 3.3, 4.1): option "A" identity, zero-padded channels where
the dimensions increase, subsampled by taking every second pixel where the
map shrinks (parameter-free); "B" projections (1x1 convolution and batch
norm) only where the dimensions increase, identity elsewhere; "C"
projections everywhere.

ImageNet networks (Table 1), our names for the paper's:

    conv1  = conv1    7x7, 64, stride 2 (+ batch norm, ReLU)
    pool1  = conv2_x's 3x3 max pool, stride 2
    layer1 = conv2_x  (56x56 maps at 224)
    layer2 = conv3_x  (28x28)
    layer3 = conv4_x  (14x14)
    layer4 = conv5_x  (7x7)
    avgpool, fc       global average pool, fc to the classes

The first block of layer2..layer4 halves the maps with stride 2 (Sec. 3.3:
"performed by conv3_1, conv4_1, and conv5_1 with a stride of 2"); in a
bottleneck the paper's stride is in the first 1x1 convolution
(``bottleneck_stride="1x1"``), torchvision's "v1.5" puts it in the 3x3.

CIFAR-10 networks (Sec. 4.2): a 3x3 convolution with 16 filters, then
layer1..layer3 of n basic blocks each (2n layers) with 16, 32 and 64
filters on 32x32, 16x16 and 8x8 maps, global average pooling and fc: 6n+2
layers. The same ``ResNet`` class builds both.

Global average pooling makes every network fully convolutional: it runs on
any input size, and ``dense`` is the forward pass (Sec. 3.4's "fully
convolutional form"; the evaluator averages the scores over scales).
"""

import re
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from .layers import ConvBlock, activation, initialise

# Table 1: the blocks of each ImageNet depth (conv2_x, conv3_x, conv4_x, conv5_x).
IMAGENET_BLOCKS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)  # Table 1: the 3x3 layers' filters in conv2_x..conv5_x
IMAGENET_STEM = (7, 64, 2)  # Table 1 conv1: kernel 7x7, 64 filters, stride 2
IMAGENET_POOL1 = (3, 2)  # Table 1 conv2_x: 3x3 max pool, stride 2
DOWNSAMPLE = 2  # Sec. 3.3: conv3_1, conv4_1, conv5_1 (and Sec. 4.2's stages 2, 3) subsample "with a stride of 2"
EXPANSION = 4  # Fig. 5 / Table 1: a bottleneck's last 1x1 has four times its width (64 -> 256)

CIFAR_DEPTHS = tuple(6 * n + 2 for n in (3, 5, 7, 9, 18, 200))  # Sec. 4.2 and Table 6: n = 3 .. 200 (20 .. 1202 layers)
CIFAR_WIDTHS = (16, 32, 64)  # Sec. 4.2: 16, 32, 64 filters on 32, 16, 8 maps
CIFAR_STEM = (3, 16, 1)  # Sec. 4.2: "The first layer is 3x3 convolutions" (16 filters, as the first stage)

SHORTCUTS = ("A", "B", "C")
BOTTLENECK_STRIDES = ("1x1", "3x3")


class ZeroPadShortcut(nn.Module):
    """Option A: the identity, subsampled by ``stride`` (every second pixel:
    the same positions a padded 3x3 or 1x1 convolution of stride 2 sees) and
    zero-padded with the extra channels. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride, self.extra = stride, out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, zero_channels={self.extra}"


class Block(nn.Module):
    """A building block: the stacked layers F(x) (children conv1, conv2 and,
    in a bottleneck, conv3, each conv -> bn -> ReLU, the last without ReLU),
    plus the shortcut x (``residual``), then ReLU: ``relu(F(x) + x)``, or
    ``relu(F(x))`` in a plain network."""

    def __init__(self, in_channels: int, width: int, stride: int, *, bottleneck: bool, residual: bool,
                 shortcut: str, bottleneck_stride: str):
        super().__init__()
        if bottleneck:
            out = width * EXPANSION
            first, middle = (stride, 1) if bottleneck_stride == "1x1" else (1, stride)
            stack = (ConvBlock(in_channels, width, 1, first, norm=True),
                     ConvBlock(width, width, 3, middle, norm=True),
                     ConvBlock(width, out, 1, norm=True, act=None))
        else:
            out = width
            stack = (ConvBlock(in_channels, width, 3, stride, norm=True),
                     ConvBlock(width, out, 3, norm=True, act=None))
        for i, layer in enumerate(stack, start=1):
            self.add_module(f"conv{i}", layer)
        self.layers = len(stack)
        self.residual = residual
        if residual:
            increases = stride != 1 or in_channels != out
            if shortcut == "C" or (shortcut == "B" and increases):
                self.shortcut = ConvBlock(in_channels, out, 1, stride, norm=True, act=None)
            elif increases:
                self.shortcut = ZeroPadShortcut(in_channels, out, stride)
            else:
                self.shortcut = nn.Identity()
        self.relu = activation("relu")
        self.out_channels = out

    def stack(self, x: torch.Tensor) -> torch.Tensor:
        """F(x): the stacked layers, before the addition and the last ReLU."""
        for i in range(1, self.layers + 1):
            x = getattr(self, f"conv{i}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stack(x)
        if self.residual:
            y = y + self.shortcut(x)
        return self.relu(y)


class ResNet(nn.Sequential):
    """conv1 [-> pool1] -> layer1 .. layerN -> avgpool -> fc.

    ``stem`` is conv1's (kernel, filters, stride), ``pool1`` the max pool's
    (window, stride) or None, ``stages`` the (blocks, width) of each layer;
    every layer but the first starts with a stride-2 block.
    """

    def __init__(self, num_classes: int, *, stem: tuple[int, int, int], pool1: tuple[int, int] | None,
                 stages: tuple[tuple[int, int], ...], bottleneck: bool, residual: bool, shortcut: str,
                 bottleneck_stride: str, init: str):
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}, not {shortcut!r}")
        if bottleneck_stride not in BOTTLENECK_STRIDES:
            raise ValueError(f"bottleneck_stride must be one of {', '.join(BOTTLENECK_STRIDES)}, not {bottleneck_stride!r}")
        kernel, channels, stride = stem
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv1"] = ConvBlock(3, channels, kernel, stride, norm=True)
        if pool1 is not None:
            window, step = pool1
            layers["pool1"] = nn.MaxPool2d(window, step, padding=window // 2)  # padded: 112 -> 56 (Table 1)
        for i, (blocks, width) in enumerate(stages, start=1):
            stage = []
            for b in range(blocks):
                block = Block(channels, width, DOWNSAMPLE if (b == 0 and i > 1) else 1, bottleneck=bottleneck,
                              residual=residual, shortcut=shortcut, bottleneck_stride=bottleneck_stride)
                stage.append(block)
                channels = block.out_channels
            layers[f"layer{i}"] = nn.Sequential(*stage)
        layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten(1)
        layers["fc"] = nn.Linear(channels, num_classes)
        super().__init__(layers)
        initialise(self, init)  # Sec. 3.4: "We initialize the weights as in [13]" (He et al. 2015)

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores of an input of any size: the network is fully
        convolutional up to its global average pool (Sec. 3.4)."""
        return self(x)


def resnet_imagenet(num_classes: int = 1000, *, depth: int, residual: bool, shortcut: str, bottleneck_stride: str,
                    init: str, image_size: int = 224) -> ResNet:
    """The ImageNet ResNet (or plain network) of Table 1 with ``depth`` layers.
    ``image_size`` is not needed: global average pooling takes any size."""
    if depth not in IMAGENET_BLOCKS:
        raise ValueError(f"ImageNet depth must be one of {', '.join(map(str, IMAGENET_BLOCKS))}, not {depth!r}")
    kind, blocks = IMAGENET_BLOCKS[depth]
    return ResNet(num_classes, stem=IMAGENET_STEM, pool1=IMAGENET_POOL1, stages=tuple(zip(blocks, IMAGENET_WIDTHS)),
                  bottleneck=kind == "bottleneck", residual=residual, shortcut=shortcut,
                  bottleneck_stride=bottleneck_stride, init=init)


def resnet_cifar(num_classes: int = 10, *, depth: int, residual: bool, shortcut: str, init: str,
                 image_size: int = 32) -> ResNet:
    """The CIFAR-10 ResNet (or plain network) of Sec. 4.2 with ``depth`` = 6n+2 layers."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR depth must be 6n + 2 (20, 32, 44, 56, 110, 1202, ...), not {depth!r}")
    n = (depth - 2) // 6
    return ResNet(num_classes, stem=CIFAR_STEM, pool1=None, stages=tuple((n, w) for w in CIFAR_WIDTHS),
                  bottleneck=False, residual=residual, shortcut=shortcut, bottleneck_stride=BOTTLENECK_STRIDES[0],
                  init=init)


# --- torchvision's weights ------------------------------------------------------

# torchvision name -> (our name, the switches that give torchvision's layout).
TORCHVISION = {
    "resnet18": ("resnet-18", {}),
    "resnet34": ("resnet-34", {}),
    "resnet50": ("resnet-50", {"bottleneck_stride": "3x3"}),
    "resnet101": ("resnet-101", {"bottleneck_stride": "3x3"}),
    "resnet152": ("resnet-152", {"bottleneck_stride": "3x3"}),
}

_TORCHVISION_KEYS = (
    (r"conv1\.weight", r"conv1.conv.weight"),
    (r"bn1\.(\w+)", r"conv1.bn.\1"),
    (r"(layer\d+\.\d+)\.conv(\d)\.weight", r"\1.conv\2.conv.weight"),
    (r"(layer\d+\.\d+)\.bn(\d)\.(\w+)", r"\1.conv\2.bn.\3"),
    (r"(layer\d+\.\d+)\.downsample\.0\.weight", r"\1.shortcut.conv.weight"),
    (r"(layer\d+\.\d+)\.downsample\.1\.(\w+)", r"\1.shortcut.bn.\2"),
    (r"fc\.(weight|bias)", r"fc.\1"),
)


def from_torchvision(state_dict: dict) -> dict:
    """A torchvision ResNet state dict with our names (conv1.weight ->
    conv1.conv.weight, layer1.0.bn1.* -> layer1.0.conv1.bn.*,
    layer2.0.downsample.0/1 -> layer2.0.shortcut.conv/bn, fc unchanged).
    Load it into ``build(name, **switches)`` of ``TORCHVISION``."""
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in _TORCHVISION_KEYS:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, replacement, key)] = value
                break
        else:
            raise ValueError(f"not a key of a torchvision ResNet: {key!r}")
    return out


PAPER = "He, Zhang, Ren & Sun, Deep Residual Learning for Image Recognition, CVPR 2016"
MODELS = {
    **{f"{kind}-{depth}": (resnet_imagenet, "resnet-imagenet", {"depth": depth, "residual": kind == "resnet"})
       for depth in IMAGENET_BLOCKS for kind in ("resnet", "plain")},
    **{f"{kind}-{depth}": (resnet_cifar, "resnet-cifar", {"depth": depth, "residual": kind == "resnet"})
       for depth in CIFAR_DEPTHS for kind in ("resnet", "plain")},
}
