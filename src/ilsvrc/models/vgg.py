"""VGG: the ConvNet configurations of Simonyan and Zisserman, "Very Deep
Convolutional Networks for Large-Scale Image Recognition" (ICLR 2015).

Table 1 gives six configurations, A (11 weight layers), A-LRN, B (13), C (16,
three of them 1x1), D (16) and E (19). Section 2.1 fixes what they share:
3x3 convolutions with stride 1 and padding 1 (the map keeps its size), 1x1
convolutions in C, ReLU after every convolution, max-pooling over 2x2 windows
with stride 2 after each of the five stacks, then fc6 and fc7 of 4096 units
(dropout 0.5, Sec. 3.1) and fc8 with the class scores. Only A-LRN has a
local response normalisation, after conv1_1 (with the parameters of
Krizhevsky et al., Sec. 2.1). Layer names are those of the authors' released
Caffe models (conv3_1: the first convolution of the third stack, Table 1's
"conv3-256"): ``features.conv1_1.conv.weight``, ``features.pool1``,
``classifier.fc6.weight``.

The numbers a switch can change (pooling, dropout, the initialisation, the
LRN's constants) are keyword arguments whose paper values live in
``recipes/vgg.toml``; the configuration is fixed by the model's name.

Also here: dense evaluation (Sec. 3.2, ``VGG.dense``), the initialisation of
a deeper configuration from a trained A (Sec. 3.1, ``VGG.init_from``) and the
conversion of torchvision's VGG weights (``from_torchvision``).
"""

import re
from collections import OrderedDict

import torch
from torch import nn

from .layers import (ConvBlock, FullyConnectedNet, LocalResponseNorm, fc_head, initialise, output_side, parse_pool,
                     rename_modules)

# Table 1: the kernel sides of each stack's convolutions (3: conv3, 1: conv1).
CONFIGS = {
    "A": ((3,), (3,), (3, 3), (3, 3), (3, 3)),
    "A-LRN": ((3,), (3,), (3, 3), (3, 3), (3, 3)),
    "B": ((3, 3), (3, 3), (3, 3), (3, 3), (3, 3)),
    "C": ((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1)),
    "D": ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
    "E": ((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3)),
}
WIDTHS = (64, 128, 256, 512, 512)  # Table 1: conv-64 ... conv-512, widened by 2 after each max-pool (Sec. 2.2)
HIDDEN_UNITS = 4096  # Sec. 2.1: the first two fully connected layers have 4096 channels each
LRN_CONFIGS = ("A-LRN",)  # Table 1: only A-LRN has an LRN layer, after conv1_1

# Sec. 3.1: "we initialised the first four convolutional layers and the last
# three fully-connected layers with the layers of net A". A's first four
# convolutions are conv1_1, conv2_1, conv3_1 and conv3_2; every deeper
# configuration has layers of those names and shapes, so each is initialised
# from the layer of A with the same name (the layers in between, conv1_2 and
# conv2_2 in B-E, start from the random initialisation).
FROM_A = ("features.conv1_1.conv", "features.conv2_1.conv", "features.conv3_1.conv", "features.conv3_2.conv",
          "classifier.fc6", "classifier.fc7", "classifier.fc8")


def conv_names(config: str) -> list[tuple[str, int]]:
    """(name, kernel side) of each convolution of ``config``, in order: conv1_1, ..."""
    return [(f"conv{stack}_{i}", kernel)
            for stack, kernels in enumerate(CONFIGS[config], start=1)
            for i, kernel in enumerate(kernels, start=1)]


class VGG(FullyConnectedNet):
    """A configuration of Table 1, with the paper's training details as switches."""

    def __init__(
        self,
        num_classes: int,
        *,
        config: str,
        pool: str,
        dropout: float,
        init: str,
        init_std: float,
        bias_init: float,
        lrn_size: int,
        lrn_k: float,
        lrn_alpha: float,
        lrn_beta: float,
        image_size: int = 224,
    ):
        super().__init__()
        if config not in CONFIGS:
            raise ValueError(f"config must be one of {', '.join(CONFIGS)}, not {config!r}")
        window, stride = parse_pool(pool)
        self.config = config

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = 3
        for stack, (kernels, width) in enumerate(zip(CONFIGS[config], WIDTHS), start=1):
            for i, kernel in enumerate(kernels, start=1):
                # Sec. 2.1: stride 1, padding 1 for 3x3 (0 for 1x1): the map keeps its size.
                layers[f"conv{stack}_{i}"] = ConvBlock(channels, width, kernel, act="relu")
                if stack == 1 and i == 1 and config in LRN_CONFIGS:
                    layers["lrn1"] = LocalResponseNorm(lrn_size, lrn_alpha, lrn_beta, lrn_k)
                channels = width
            layers[f"pool{stack}"] = nn.MaxPool2d(window, stride)
        self.features = nn.Sequential(layers)

        side = output_side(layers, image_size, "VGG's five max-pooling layers")
        self.classifier = fc_head(channels * side * side, num_classes, hidden=(HIDDEN_UNITS, HIDDEN_UNITS),
                                  dropout=dropout)
        # Sec. 3.1: weights from N(0, init_std), biases bias_init (0); "xavier":
        # the paper's note that Glorot & Bengio's initialisation needs no pre-training.
        initialise(self, init, std=init_std, bias=bias_init)

    @torch.no_grad()
    def init_from(self, state_dict_of_a: dict) -> tuple[str, ...]:
        """Sec. 3.1: copy the first four convolutional layers (conv1_1, conv2_1,
        conv3_1, conv3_2) and fc6, fc7, fc8 of a trained configuration A (or
        A-LRN) state dict into this network; the other layers keep their
        values. Returns the layers copied. Raises ValueError, before copying
        anything, if a layer is missing or its shape differs (another number
        of classes or image size)."""
        own = self.state_dict()
        pairs = []
        for layer in FROM_A:
            for param in ("weight", "bias"):
                key = f"{layer}.{param}"
                if key not in state_dict_of_a:
                    raise ValueError(f"the state dict has no {key}: it is not a VGG configuration A state dict")
                source, target = state_dict_of_a[key], own[key]
                if tuple(source.shape) != tuple(target.shape):
                    raise ValueError(
                        f"{key} is {tuple(source.shape)} in the given state dict but {tuple(target.shape)} in"
                        f" this network (the same number of classes and image size are needed)"
                    )
                pairs.append((target, source))
        for target, source in pairs:
            target.copy_(source)
        return FROM_A


def vgg(num_classes: int = 1000, **variant) -> VGG:
    """A ConvNet configuration (Table 1) from "Very Deep Convolutional Networks
    for Large-Scale Image Recognition" (Simonyan & Zisserman, ICLR 2015)."""
    return VGG(num_classes, **variant)


# --- torchvision's weights ----------------------------------------------------

# torchvision's vgg11/13/16/19 are configurations A, B, D and E with positional
# names; its adaptive average pool to 7x7 does nothing at 224x224. (The _bn
# models have batch normalisation, which the paper has not.)
TORCHVISION = {"vgg11": ("vgg-a", {}), "vgg13": ("vgg-b", {}), "vgg16": ("vgg-d", {}), "vgg19": ("vgg-e", {})}
_TORCHVISION_CLASSIFIER = {"classifier.0": "classifier.fc6", "classifier.3": "classifier.fc7",
                           "classifier.6": "classifier.fc8"}


def from_torchvision(state_dict: dict) -> dict:
    """A torchvision ``vgg11``/``vgg13``/``vgg16``/``vgg19`` state dict with this
    module's layer names (``features.0.weight`` -> ``features.conv1_1.conv.weight``,
    ``classifier.0.weight`` -> ``classifier.fc6.weight``). The configuration is
    recognised from the kernel sizes of the convolutions. Raises ValueError
    for a state dict that is no (batch-norm free) torchvision VGG."""
    convs = sorted(int(key.split(".")[1]) for key, value in state_dict.items()
                   if re.fullmatch(r"features\.\d+\.weight", key) and value.dim() == 4)
    if any(key.endswith("running_mean") for key in state_dict):
        raise ValueError("a batch-normalised VGG (torchvision's vgg*_bn) has no counterpart in the paper")
    kernels = [state_dict[f"features.{i}.weight"].shape[-1] for i in convs]
    config = next((c for c in CONFIGS if c not in LRN_CONFIGS and [k for _, k in conv_names(c)] == kernels), None)
    if config is None:
        raise ValueError(f"{len(kernels)} convolutions of sides {kernels} match no configuration of Table 1")
    names = {f"features.{i}": f"features.{name}.conv" for i, (name, _) in zip(convs, conv_names(config))}
    names.update(_TORCHVISION_CLASSIFIER)
    return rename_modules(state_dict, names, "torchvision's VGG")


PAPER = "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015"
MODELS = {
    "vgg-a": (vgg, "vgg", {"config": "A"}),
    "vgg-a-lrn": (vgg, "vgg", {"config": "A-LRN"}),
    "vgg-b": (vgg, "vgg", {"config": "B"}),
    "vgg-c": (vgg, "vgg", {"config": "C"}),
    "vgg-d": (vgg, "vgg", {"config": "D"}),
    "vgg-e": (vgg, "vgg", {"config": "E"}),
}
