"""torchvision's ``alexnet``: the one-tower AlexNet of "One weird trick".

torchvision's ``alexnet`` is not the network of the NIPS 2012 paper (that is
``alexnet.py``) but the single-column variant that Krizhevsky used in "One
weird trick for parallelizing convolutional neural networks" (arXiv
1404.5997, 2014), as torchvision lays it out: conv1 has 64 kernels, conv2 192,
conv4 256 (not 96, 256, 384), there is no response normalisation and no tower
split, an adaptive average pool brings pool5's map to 6x6 whatever the input
size, and dropout comes *before* fc6 and fc7. 61,100,840 parameters for 1000
classes.

The model exists so that torchvision's weights can be evaluated with this
project's tools: ``from_torchvision`` renames a torchvision state dict
(``features.0.weight``) to this module's paper names
(``features.conv1.weight``). It has no switches and no training recipe; its
initialisation is PyTorch's default, as torchvision's is.
"""

from collections import OrderedDict

import torch
from torch import nn

from .layers import fc_head_dense, fc_head_features, output_side, rename_modules

# "One weird trick", Sec. 4 (one column), in torchvision's layout: (name,
# output channels, kernel, stride, padding, followed by max-pooling).
CONV_LAYERS = (
    ("conv1", 64, 11, 4, 2, True),
    ("conv2", 192, 5, 1, 2, True),
    ("conv3", 384, 3, 1, 1, False),
    ("conv4", 256, 3, 1, 1, False),
    ("conv5", 256, 3, 1, 1, True),
)
POOL_WINDOW, POOL_STRIDE = 3, 2  # overlapping pooling, as in AlexNet Sec. 3.4
POOLED_SIZE = 6  # torchvision: pool5's map is average-pooled to 6x6 (its size for a 224x224 input)
HIDDEN_UNITS = 4096  # fc6 and fc7
DROPOUT = 0.5  # torchvision's default, before fc6 and before fc7


class AlexNetOWT(nn.Module):
    """One-tower AlexNet, torchvision's layout with the paper's layer names."""

    def __init__(self, num_classes: int = 1000, *, image_size: int = 224):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = 3
        for name, out, kernel, stride, pad, has_pool in CONV_LAYERS:
            i = name[-1]
            layers[name] = nn.Conv2d(channels, out, kernel, stride=stride, padding=pad)
            layers[f"relu{i}"] = nn.ReLU(inplace=False)
            if has_pool:
                layers[f"pool{i}"] = nn.MaxPool2d(POOL_WINDOW, POOL_STRIDE)
            channels = out
        output_side(layers, image_size, "AlexNet's layers")  # pool5's map is then pooled to 6x6, whatever its size
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d((POOLED_SIZE, POOLED_SIZE))
        flat = channels * POOLED_SIZE * POOLED_SIZE
        self.classifier = nn.Sequential(
            OrderedDict(
                drop6=nn.Dropout(DROPOUT),
                fc6=nn.Linear(flat, HIDDEN_UNITS),
                relu6=nn.ReLU(inplace=False),
                drop7=nn.Dropout(DROPOUT),
                fc7=nn.Linear(HIDDEN_UNITS, HIDDEN_UNITS),
                relu7=nn.ReLU(inplace=False),
                fc8=nn.Linear(HIDDEN_UNITS, num_classes),
            )
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """fc7's output (4096-d), after ReLU."""
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return fc_head_features(self.classifier, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores of an input larger than 224x224: pool5's map is not
        pooled to 6x6; the fully connected layers slide over it as
        convolutions (fc6 a 6x6 one) and the score map is averaged. At 224 it
        equals ``forward``. The input must give a pool5 map of at least 6x6."""
        features = self.features(x)
        if min(features.shape[-2:]) < POOLED_SIZE:
            raise ValueError(
                f"dense evaluation needs a pool5 map of at least {POOLED_SIZE}x{POOLED_SIZE},"
                f" not {tuple(features.shape[-2:])} (input {tuple(x.shape[-2:])})"
            )
        return fc_head_dense(self.classifier, features)


def alexnet_owt(num_classes: int = 1000, *, image_size: int = 224) -> AlexNetOWT:
    """torchvision's AlexNet, from "One weird trick for parallelizing
    convolutional neural networks" (Krizhevsky, arXiv 1404.5997, 2014)."""
    return AlexNetOWT(num_classes, image_size=image_size)


# torchvision's positional names -> ours.
_TORCHVISION_NAMES = {
    "features.0": "features.conv1",
    "features.3": "features.conv2",
    "features.6": "features.conv3",
    "features.8": "features.conv4",
    "features.10": "features.conv5",
    "classifier.1": "classifier.fc6",
    "classifier.4": "classifier.fc7",
    "classifier.6": "classifier.fc8",
}


def from_torchvision(state_dict: dict) -> dict:
    """A torchvision ``alexnet`` state dict with this module's layer names
    (``features.0.weight`` -> ``features.conv1.weight``). Raises ValueError
    for a key that is not torchvision's AlexNet's."""
    return rename_modules(state_dict, _TORCHVISION_NAMES, "torchvision's alexnet")


PAPER = "Krizhevsky, One weird trick for parallelizing convolutional neural networks, arXiv 1404.5997, 2014"
MODELS = {"alexnet_owt": (alexnet_owt, None, {})}
TORCHVISION = {"alexnet": ("alexnet_owt", {})}  # torchvision model name -> (our name, fixed arguments)
