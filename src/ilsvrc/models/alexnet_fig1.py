"""The four-layer CIFAR-10 network of AlexNet's Figure 1 (Krizhevsky et al. 2012, Sec. 3.1).

"A four-layer convolutional neural network with ReLUs (solid line) reaches a
25% training error rate on CIFAR-10 six times faster than an equivalent
network with tanh neurons (dashed line). [...] No regularization of any kind
was employed." The paper gives no layer table. We take the four-layer
network that shipped with the authors' cuda-convnet, ``layers-18pct.cfg``
(three 5x5 convolutions of 32, 32 and 64 maps, each followed by 3/2 pooling,
max after the first and average after the others, then one fully connected
layer of 10 class scores), without its response normalisation layers, which
the caption's "no regularization" rules out; its per-layer initial weight
scales (``init_std``) are the ``initW`` of that file. ``activation`` is the
figure's switch: "relu" (solid line) or "tanh" (dashed line).

Layer names: ``conv1`` .. ``conv3`` (ConvBlocks: ``conv1.conv.weight``),
``pool1`` .. ``pool3``, ``fc4``.
"""

from collections import OrderedDict

import torch
from torch import nn

from .layers import ACTIVATIONS, ConvBlock, initialise, output_side, parse_pool

# name, maps, pooling after it (cuda-convnet layers-18pct.cfg)
LAYERS = (("conv1", 32, "max"), ("conv2", 32, "avg"), ("conv3", 64, "avg"))
POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class Figure1Net(nn.Module):
    """Three 5x5 convolutions, each followed by 3/2 pooling, then ``fc4``: (B, 3, H, W) -> (B, classes)."""

    def __init__(self, num_classes: int = 10, image_size: int = 32, *, activation: str = "relu",
                 init_std: list[float] = (1e-4, 1e-2, 1e-2, 1e-2), pool: str = "3/2"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
        if len(init_std) != len(LAYERS) + 1:
            raise ValueError(f"init_std needs one value per layer ({len(LAYERS) + 1}), not {list(init_std)}")
        window, stride = parse_pool(pool)
        layers, channels = OrderedDict(), 3
        for i, (name, maps, kind) in enumerate(LAYERS, 1):
            layers[name] = ConvBlock(channels, maps, 5, act=activation)
            # cuda-convnet's pools cover the whole map: ceil mode (32 -> 16 -> 8 -> 4)
            layers[f"pool{i}"] = POOLS[kind](window, stride, ceil_mode=True)
            channels = maps
        self.features = nn.Sequential(layers)
        side = output_side(layers, image_size, "the Figure 1 network's layers")  # the convolutions keep the size
        self.fc4 = nn.Linear(channels * side * side, num_classes)
        linear = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        for m, std in zip(linear, init_std):  # cuda-convnet: weights N(0, initW), biases 0
            initialise(m, "gaussian", std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc4(torch.flatten(self.features(x), 1))


def alexnet_fig1(num_classes: int = 10, image_size: int = 32, **variant) -> Figure1Net:
    """AlexNet's Figure 1 network (Sec. 3.1): ``activation="relu"`` or ``"tanh"``."""
    return Figure1Net(num_classes, image_size, **variant)


PAPER = "Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep Convolutional Neural Networks, NIPS 2012 (Figure 1)"
MODELS = {"alexnet-fig1": (alexnet_fig1, "alexnet-fig1", {})}
