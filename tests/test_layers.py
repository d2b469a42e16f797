"""Shared layers (models/layers.py): feature-map sizes."""

import pytest
import torch
from torch import nn

from ilsvrc.models.layers import ConvBlock, layer_side, map_sides, output_side


@pytest.mark.parametrize("make", [
    lambda: nn.Conv2d(1, 1, 5, stride=2, padding=1),
    lambda: nn.Conv2d(1, 1, 3, dilation=2),
    lambda: nn.MaxPool2d(3, 2),
    lambda: nn.MaxPool2d(3, 2, ceil_mode=True),  # NIN's and GoogLeNet's (Caffe rounds up)
    lambda: nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
    lambda: nn.AvgPool2d(5, 3, ceil_mode=True),  # GoogLeNet's auxiliary classifiers
    lambda: nn.AvgPool2d(2, 3, padding=1, ceil_mode=True),
    lambda: nn.Sequential(ConvBlock(1, 1, 5, 1, 0), nn.MaxPool2d(2, 2, ceil_mode=True), nn.ReLU()),
])
def test_map_sides_follow_pytorchs_output_size_rules(make):
    layer = make()
    for side in range(1, 40):
        try:
            expected = layer(torch.zeros(1, 1, side, side)).shape[-1]
        except RuntimeError:  # PyTorch refuses an empty output
            expected = 0
        assert max(layer_side(layer, side), 0) == expected, side


def test_each_layers_side_and_the_too_small_message():
    layers = dict(conv=nn.Conv2d(3, 8, 3), pool=nn.MaxPool2d(2, 2), act=nn.ReLU())
    assert map_sides(layers, 10, "these layers") == {"conv": 8, "pool": 4, "act": 4}
    assert output_side(nn.Sequential(*layers.values()), 10, "these layers") == 4
    with pytest.raises(ValueError, match="image size 3 is too small for these layers"):
        map_sides(layers, 3, "these layers")
