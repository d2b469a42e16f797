"""AlexNet exactly as Krizhevsky, Sutskever and Hinton (NIPS 2012) describe it.

Section 3.5 and Figure 2 give the layers; the numbers that a paper ablation
changes (LRN, pooling, towers, activation, dropout, a removed conv layer, the
initialisation) are keyword arguments whose paper values live in
``recipes/alexnet.toml``. Layer names are the paper's: conv1..conv5,
fc6..fc8; ``features.conv1.weight`` in the state dict.

Two towers: the paper split the network over two GPUs. conv1's 96 kernels
(48 per GPU) all see the image, so conv1 is one ordinary convolution; its
response normalisation runs inside each tower, as it did on each GPU. conv2,
conv4 and conv5 see only their own tower's half of the previous layer
(``groups=2``); conv3 and the fully connected layers see everything.

Padding: with 224x224 inputs (Sec. 4.1) conv1 needs padding 2 to give the
paper's 55x55 maps (the paper's own arithmetic implies 227 without padding);
conv2 pads 2 and conv3-5 pad 1 so that their maps keep their size (27, 13).
fc8 gives logits; the softmax is in the loss and in evaluation.
"""

from collections import OrderedDict

from torch import nn

from .layers import ACTIVATIONS, FullyConnectedNet, LocalResponseNorm, activation as make_activation, fc_head, parse_pool

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
REMOVABLE = ("conv3", "conv4", "conv5")


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
        window, stride = parse_pool(pool)
        self.towers = towers

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = 3
        for name, out, kernel, step, pad, split, has_lrn, has_pool in CONV_LAYERS:
            if name == remove_conv:
                continue
            i = name[-1]
            groups = towers if split else 1
            layers[name] = nn.Conv2d(channels, out, kernel, stride=step, padding=pad, groups=groups)
            layers[f"relu{i}"] = make_activation(activation)
            if has_lrn and lrn:
                # Each GPU normalised its own kernel maps (Sec. 3.2, 3.3).
                layers[f"lrn{i}"] = LocalResponseNorm(lrn_size, lrn_alpha, lrn_beta, lrn_k, groups=towers)
            if has_pool:
                layers[f"pool{i}"] = nn.MaxPool2d(window, stride)
            channels = out
        self.features = nn.Sequential(layers)

        flat = self._flat_features(image_size)
        self.classifier = fc_head(flat, num_classes, hidden=(HIDDEN_UNITS, HIDDEN_UNITS), dropout=dropout, act=activation)
        self._init(init_std, bias_init)

    def _flat_features(self, image_size: int) -> int:
        """Size of pool5's output for a square input of ``image_size`` pixels."""
        size, channels = image_size, 3
        for layer in self.features:
            if isinstance(layer, nn.Conv2d):
                size = (size + 2 * layer.padding[0] - layer.kernel_size[0]) // layer.stride[0] + 1
                channels = layer.out_channels
            elif isinstance(layer, nn.MaxPool2d):
                size = (size - layer.kernel_size) // layer.stride + 1
            if size < 1:
                raise ValueError(f"image size {image_size} is too small for AlexNet's layers")
        return channels * size * size

    def _init(self, std: float, bias: float) -> None:
        # Section 5: weights N(0, 0.01); biases `bias` (1) in conv2, conv4,
        # conv5 and the hidden fully connected layers, 0 in the others.
        ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
        for name, m in self.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, std)
                nn.init.constant_(m.bias, bias if name.split(".")[-1] in ones else 0.0)

def alexnet(num_classes: int = 1000, **variant) -> AlexNet:
    """AlexNet from "ImageNet Classification with Deep Convolutional Neural
    Networks" (Krizhevsky, Sutskever, Hinton, NIPS 2012)."""
    return AlexNet(num_classes, **variant)


PAPER = "Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep Convolutional Neural Networks, NIPS 2012"
MODELS = {"alexnet": (alexnet, "alexnet", {})}
