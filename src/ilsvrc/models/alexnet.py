"""AlexNet exactly as Krizhevsky, Sutskever and Hinton (NIPS 2012) describe it.

Section 3.5 and Figure 2 give the layers; the numbers that a paper ablation
changes (LRN, pooling, towers, activation, dropout, a removed conv layer, the
initialisation) are keyword arguments whose paper values live in
``recipes/alexnet.toml``. Layer names are the paper's: conv1..conv5,
fc6..fc8; ``features.conv1.weight`` in the state dict.

Two towers: the paper split the network over two GPUs. conv1's 96 kernels
(48 per GPU) all see the image; its response normalisation runs inside each
tower, as it did on each GPU. conv2, conv4 and conv5 see only their own
tower's half of the previous layer; conv3 and the fully connected layers see
everything. The state dict is the one a grouped network has: conv2, conv4
and conv5 are ``nn.Conv2d(..., groups=2)`` (``features.conv2.weight`` is
256x48x5x5), tower 1's kernels first, then tower 2's.

How the towers are computed (``tower_layout``; ours, for speed, not the
paper's: both give the same numbers):

- ``"halves"`` (the default): as the two GPUs held them. From conv1 to pool5
  each tower's maps are a tensor of their own (dense, in the activations'
  memory format: channels_last for a channels_last model), never a slice of
  a joined one; every layer runs once per tower. A convolution's tower t
  uses the t-th block of its kernels (conv2's ``weight[:128]`` and
  ``weight[128:]``: contiguous views): conv2, conv4 and conv5 on their own
  tower's maps, conv1 on the image and conv3 on both towers' maps joined
  once. pool5's two halves are joined for fc6, tower 1's channels first, as
  the grouped network flattens them. LRN runs on one tower's maps
  (``groups=1``), which is what ``groups=2`` does to the joined tensor.
- ``"groups"``: one tensor for both towers, conv2, conv4 and conv5 as grouped
  convolutions and LRN with ``groups=2``: the plain ``nn.Sequential``. A
  grouped convolution in channels_last costs layout shuffles on the GPU
  (cuDNN slices and pads each group's channels), which the halves avoid.

(The two towers could also run on two CUDA streams; they do not.)

Padding: with 224x224 inputs (Sec. 4.1) conv1 needs padding 2 to give the
paper's 55x55 maps (the paper's own arithmetic implies 227 without padding);
conv2 pads 2 and conv3-5 pad 1 so that their maps keep their size (27, 13).
fc8 gives logits; the softmax is in the loss and in evaluation.
"""

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from .layers import (ACTIVATIONS, FullyConnectedNet, LocalResponseNorm, activation as make_activation, fc_head,
                     fuse_relu_lrn, initialise, output_side, parse_pool)

# Section 3.5 / Figure 2: (name, output channels, kernel, stride, padding,
# tower-split input, followed by LRN, followed by max-pooling).
CONV_LAYERS = (
    ("conv1", 96, 11, 4, 2, False, True, True),
    ("conv2", 256, 5, 1, 2, True, True, True),
    ("conv3", 384, 3, 1, 1, False, False, False),
    ("conv4", 384, 3, 1, 1, True, False, False),
    ("conv5", 256, 3, 1, 1, True, False, True),
)
HIDDEN_UNITS = 4096  # Section 3.5: fc6 and fc7 have 4096 neurons each
BIAS_LAYERS = ("conv2", "conv4", "conv5", "fc6", "fc7")  # Section 5: the layers whose biases start at 1 (bias_init)
REMOVABLE = ("conv3", "conv4", "conv5")
TOWER_LAYOUTS = ("halves", "groups")  # how the towers are computed (ours, for speed; see the module docstring)


class Features(nn.Sequential):
    """conv1 to pool5, children named as the paper's layers. With two towers
    in the ``"halves"`` layout each tower's maps are a tensor of their own
    from conv1 to pool5; the output is pool5's maps, both towers joined (the
    grouped network's tensor). Otherwise the layers run in order on one
    tensor, as an ``nn.Sequential`` does. (So the children applied one by
    one to a single tensor are the network only in the groups layout: in the
    halves layout, lrn1 and lrn2 normalise one tower's maps.)"""

    def __init__(self, layers: OrderedDict[str, nn.Module], towers: int, tower_layout: str):
        super().__init__(layers)
        self.towers, self.tower_layout = towers, tower_layout

    def __getitem__(self, index):
        if isinstance(index, slice):  # a run of the layers (conv1 to pool2, say), computed as these are
            return Features(OrderedDict(list(self.named_children())[index]), self.towers, self.tower_layout)
        return super().__getitem__(index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.towers == 1 or self.tower_layout == "groups":
            return super().forward(x)
        maps = [x]  # the image, which every tower's conv1 sees; then one map per tower
        for layer in self:
            maps = self._convolve(layer, maps) if isinstance(layer, nn.Conv2d) else [layer(m) for m in maps]
        return torch.cat(maps, 1)

    def _convolve(self, conv: nn.Conv2d, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each tower's output maps from its block of ``conv``'s kernels: a
        tower-split layer (conv2, conv4, conv5: ``groups`` = towers) reads its
        own tower's maps, a layer that sees everything (conv1, conv3) reads
        all the maps, joined once. (Joined rather than summed over towers,
        conv(a; W[:, :128]) + conv(b; W[:, 128:]): one convolution per tower
        instead of two, and no weight sliced along its input channels.)"""
        if conv.groups == 1:  # it sees everything
            joined = maps[0] if len(maps) == 1 else torch.cat(maps, 1)
            maps = [joined] * self.towers
        kernels, biases = conv.weight.chunk(self.towers), conv.bias.chunk(self.towers)  # views, tower by tower
        return [F.conv2d(m, w, b, conv.stride, conv.padding, conv.dilation) for m, w, b in zip(maps, kernels, biases)]


class AlexNet(FullyConnectedNet):
    """The network of Section 3, with the paper's ablations as switches."""

    def __init__(
        self,
        num_classes: int,
        *,
        towers: int,
        lrn: bool,
        lrn_size: int,
        lrn_k: float,
        lrn_alpha: float,
        lrn_beta: float,
        pool: str,
        activation: str,
        dropout: float,
        remove_conv: str,
        init_std: float,
        bias_init: float,
        image_size: int = 224,
        tower_layout: str = "halves",  # ours (speed), not the paper's: see the module docstring
    ):
        super().__init__()
        if towers not in (1, 2):
            raise ValueError(f"towers must be 1 or 2, not {towers!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
        if remove_conv not in ("", *REMOVABLE):
            raise ValueError(f"remove_conv must be one of {', '.join(REMOVABLE)} (or empty), not {remove_conv!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
        if tower_layout not in TOWER_LAYOUTS:
            raise ValueError(f"tower_layout must be one of {', '.join(TOWER_LAYOUTS)}, not {tower_layout!r}")
        window, stride = parse_pool(pool)
        self.towers = towers
        # A layer that runs once per tower (the halves layout) normalises one
        # tower's maps; on both towers' tensor it keeps them apart itself.
        lrn_groups = 1 if tower_layout == "halves" else towers

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = 3
        for name, out, kernel, step, pad, split, has_lrn, has_pool in CONV_LAYERS:
            if name == remove_conv:
                continue
            i = name[-1]
            groups = towers if split else 1
            layers[name] = nn.Conv2d(channels, out, kernel, stride=step, padding=pad, groups=groups)
            layers[f"act{i}"] = make_activation(activation)  # ReLU (Sec. 3.1), or tanh (the switch)
            if has_lrn and lrn:
                # Each GPU normalised its own kernel maps (Sec. 3.2, 3.3).
                layers[f"lrn{i}"] = LocalResponseNorm(lrn_size, lrn_alpha, lrn_beta, lrn_k, groups=lrn_groups)
            if has_pool:
                layers[f"pool{i}"] = nn.MaxPool2d(window, stride)
            channels = out
        fuse_relu_lrn(layers)  # act1 + lrn1, act2 + lrn2 (ReLUs): one pass each (one Triton kernel each way on a GPU)
        self.features = Features(layers, towers, tower_layout)

        side = output_side(self.features, image_size, "AlexNet's layers")
        self.classifier = fc_head(channels * side * side, num_classes, hidden=(HIDDEN_UNITS, HIDDEN_UNITS),
                                  dropout=dropout, act=activation)
        # Section 5: weights N(0, 0.01); biases `bias_init` (1) in conv2, conv4,
        # conv5 and the hidden fully connected layers, 0 in the others.
        initialise(self, "gaussian", std=init_std, bias=bias_init, bias_in=BIAS_LAYERS)


def alexnet(num_classes: int = 1000, **variant) -> AlexNet:
    """AlexNet from "ImageNet Classification with Deep Convolutional Neural
    Networks" (Krizhevsky, Sutskever, Hinton, NIPS 2012)."""
    return AlexNet(num_classes, **variant)


PAPER = "Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep Convolutional Neural Networks, NIPS 2012"
MODELS = {"alexnet": (alexnet, "alexnet", {})}
