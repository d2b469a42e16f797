"""Network in Network: Lin, Chen and Yan, "Network In Network" (ICLR 2014).

An mlpconv layer (Sec. 3.1) slides a small multilayer perceptron over the
input: a spatial convolution followed by two 1x1 convolutions, each with
ReLU. The paper calls the 1x1 layers "cascaded cross channel parametric
pooling" (cccp), and so do the authors' released Caffe models. The last
mlpconv layer has one map per class; global average pooling (Sec. 3.2)
averages each map over space, and the vector of averages goes to the
softmax: no fully connected layer. Dropout follows every mlpconv layer but
the last (Sec. 4.1) in the CIFAR-10 network; the ImageNet model drops out
after the third of its four only.

The paper gives no layer table; the layers are those of the authors'
released Caffe models (Caffe model zoo: "Network in Network CIFAR10 Model",
gist mavenlin/e56253735ef32c3c296d, and "NIN ImageNet", gist
mavenlin/d802a5849de39225bcc6). There, as in Sec. 3.1's Eq. 2 (ReLU on
every layer of the MLP), the last 1x1 convolution (the class maps) is
followed by ReLU before the global average pooling: ``final_relu = True``
(the ImageNet recipe; the CIFAR-10 recipe turns it off and says why). Pooling
rounds its output size up, as Caffe does (ceil mode): 32 -> 16 -> 8 on
CIFAR-10, 54 -> 27 -> 13 -> 6 in the ImageNet model.

Layer names: ``mlpconv1`` .. ``mlpconv4``, each with ``conv`` (the spatial
convolution), ``cccp1``, ``cccp2`` (ConvBlocks: ``mlpconv2.cccp1.conv.weight``
is Caffe's ``cccp3``), ``pool`` and ``drop``; then ``global_pool``. Because
the pooling is global, the network takes an input of any size large enough
for its layers, and ``dense`` is ``forward``.
"""

from collections import OrderedDict

import torch
from torch import nn

from .layers import ConvBlock, initialise, output_side, parse_pool

# The released models, one row per mlpconv layer: name, the spatial
# convolution (out channels, kernel, stride, padding), the widths of cccp1
# and cccp2 (None: one map per class), the pooling after it, dropout after it.
CIFAR10 = (  # cifar10_nin.prototxt (model zoo gist e56253735ef32c3c296d)
    ("mlpconv1", (192, 5, 1, 2), 160, 96, "max", True),
    ("mlpconv2", (192, 5, 1, 2), 192, 192, "avg", True),
    ("mlpconv3", (192, 3, 1, 1), 192, None, None, False),
)
IMAGENET = (  # nin_imagenet train_val.prototxt (model zoo gist d802a5849de39225bcc6)
    ("mlpconv1", (96, 11, 4, 0), 96, 96, "max", False),
    ("mlpconv2", (256, 5, 1, 2), 256, 256, "max", False),
    ("mlpconv3", (384, 3, 1, 1), 384, 384, "max", True),
    ("mlpconv4", (1024, 3, 1, 1), 1024, None, None, False),
)
LAYOUTS = {"cifar10": CIFAR10, "imagenet": IMAGENET}
POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class NIN(nn.Sequential):
    """mlpconv layers, then global average pooling: (B, 3, H, W) -> (B, classes)."""

    def __init__(
        self,
        num_classes: int,
        *,
        layout: str,
        pool: str,
        dropout: float,
        final_relu: bool,
        init: str,
        init_std: float | list[float],
        bias_init: float,
        image_size: int = 32,
    ):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
        window, stride = parse_pool(pool)

        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        channels = 3
        for name, (width, kernel, step, pad), cccp1, cccp2, pooling, drop in LAYOUTS[layout]:
            last = cccp2 is None
            cccp2 = num_classes if last else cccp2
            block: OrderedDict[str, nn.Module] = OrderedDict()
            block["conv"] = ConvBlock(channels, width, kernel, step, pad)
            block["cccp1"] = ConvBlock(width, cccp1, 1)
            block["cccp2"] = ConvBlock(cccp1, cccp2, 1, act="relu" if final_relu or not last else None)
            if pooling is not None:
                block["pool"] = POOLS[pooling](window, stride, ceil_mode=True)  # Caffe rounds up, as ceil mode does
            if drop:
                block["drop"] = nn.Dropout(dropout)
            blocks[name] = nn.Sequential(block)
            channels = cccp2
        output_side(blocks, image_size, f"the layers of NIN ({layout})")
        # Sec. 3.2: the average of each class map; the vector goes to the softmax.
        blocks["global_pool"] = nn.AdaptiveAvgPool2d(1)
        blocks["flatten"] = nn.Flatten(1)
        super().__init__(blocks)

        convs = [m for m in self.modules() if isinstance(m, ConvBlock)]
        stds = list(init_std) if isinstance(init_std, (list, tuple)) else [init_std] * len(convs)
        if len(stds) != len(convs):
            raise ValueError(f"init_std must be one number or one per convolution ({len(convs)}), not {len(stds)}")
        if init == "gaussian":
            # The released models: weights N(0, std) with a std per layer, biases 0.
            for block, std in zip(convs, stds):
                initialise(block, "gaussian", std=std, bias=bias_init)
        else:
            initialise(self, init)

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores of an input of any size: global average pooling already
        averages over all positions, so this is ``forward``."""
        return self(x)


def nin(num_classes: int = 10, **variant) -> NIN:
    """A network of "Network In Network" (Lin, Chen, Yan, ICLR 2014), as the
    authors' released CIFAR-10 or ImageNet Caffe model lays it out."""
    return NIN(num_classes, **variant)


PAPER = "Lin, Chen & Yan, Network In Network, ICLR 2014"
MODELS = {
    "nin-cifar": (nin, "nin-cifar", {"layout": "cifar10"}),
    "nin-imagenet": (nin, "nin-imagenet", {"layout": "imagenet"}),
}
