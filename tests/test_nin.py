"""Network in Network (Lin, Chen, Yan, ICLR 2014) checked against the paper
and the authors' released Caffe models: mlpconv layers, global average
pooling, the layer sizes, the initialisation and the recipes."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ilsvrc import UserError, build, recipes
from ilsvrc.models import entry, parameter_count
from ilsvrc.models.layers import ConvBlock

# The released Caffe models, layer by layer: (in, out, kernel); "classes" is
# the number of classes.
CAFFE_CIFAR10 = [(3, 192, 5), (192, 160, 1), (160, 96, 1),                       # conv1, cccp1, cccp2
                 (96, 192, 5), (192, 192, 1), (192, 192, 1),                      # conv2, cccp3, cccp4
                 (192, 192, 3), (192, 192, 1), (192, "classes", 1)]               # conv3, cccp5, cccp6
CAFFE_IMAGENET = [(3, 96, 11), (96, 96, 1), (96, 96, 1),                          # conv1, cccp1, cccp2
                  (96, 256, 5), (256, 256, 1), (256, 256, 1),                     # conv2, cccp3, cccp4
                  (256, 384, 3), (384, 384, 1), (384, 384, 1),                    # conv3, cccp5, cccp6
                  (384, 1024, 3), (1024, 1024, 1), (1024, "classes", 1)]          # conv4-1024, cccp7-1024, cccp8-1024


def caffe_parameters(layers, classes):
    total = 0
    for cin, cout, k in layers:
        cout = classes if cout == "classes" else cout
        total += cin * cout * k * k + cout
    return total


def meta(name, num_classes, image_size, **variant):
    with torch.device("meta"):
        return build(name, num_classes, image_size, **variant)


def cifar(num_classes=10, seed=0, **variant):
    torch.manual_seed(seed)
    return build("nin-cifar", num_classes, 32, **variant)


def sizes(net, x):
    out = {}
    for name, block in net.named_children():
        x = block(x)
        out[name] = tuple(x.shape[1:])
    return out


# --- Layers and parameters ---------------------------------------------------------


def test_parameter_counts_match_the_released_models():
    assert parameter_count("nin-cifar", 10, 32) == caffe_parameters(CAFFE_CIFAR10, 10) == 966_986
    assert parameter_count("nin-imagenet", 1000, 224) == caffe_parameters(CAFFE_IMAGENET, 1000) == 7_595_176
    # no fully connected layer: the count does not depend on the input size
    assert parameter_count("nin-cifar", 10, 64) == parameter_count("nin-cifar", 10, 32)


@pytest.mark.parametrize("name, layers, size",
                         [("nin-cifar", CAFFE_CIFAR10, 32), ("nin-imagenet", CAFFE_IMAGENET, 224)])
def test_mlpconv_layers_are_a_convolution_and_two_1x1_convolutions(name, layers, size):
    net = meta(name, 7, size)
    blocks = [n for n in dict(net.named_children()) if n.startswith("mlpconv")]
    assert blocks == [f"mlpconv{i}" for i in range(1, len(layers) // 3 + 1)]
    convs = [m.conv for m in net.modules() if isinstance(m, ConvBlock)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
        (cin, 7 if cout == "classes" else cout, k) for cin, cout, k in layers
    ]
    for b in blocks:
        block = getattr(net, b)
        assert list(dict(block.named_children()))[:3] == ["conv", "cccp1", "cccp2"]
        assert block.cccp1.conv.kernel_size == block.cccp2.conv.kernel_size == (1, 1)
        assert isinstance(block.conv.relu, nn.ReLU) and isinstance(block.cccp1.relu, nn.ReLU)
    assert not any(isinstance(m, nn.Linear) for m in net.modules())  # no fully connected layer (Sec. 3.2)
    keys = set(net.state_dict())
    assert {"mlpconv1.conv.conv.weight", "mlpconv1.cccp1.conv.weight", "mlpconv2.cccp2.conv.bias"} <= keys


def test_cifar_layer_sizes_at_32():
    net = cifar().eval()
    s = sizes(net, torch.randn(2, 3, 32, 32) * 50)
    assert s["mlpconv1"] == (96, 16, 16)
    assert s["mlpconv2"] == (192, 8, 8)
    assert s["mlpconv3"] == (10, 8, 8)
    assert s["flatten"] == (10,)
    assert isinstance(net.mlpconv1.pool, nn.MaxPool2d) and isinstance(net.mlpconv2.pool, nn.AvgPool2d)
    assert net.mlpconv1.pool.ceil_mode and net.mlpconv2.pool.ceil_mode  # Caffe rounds pooled sizes up


def test_imagenet_layer_sizes_at_224():
    net = meta("nin-imagenet", 1000, 224).eval()
    s = sizes(net, torch.empty(2, 3, 224, 224, device="meta"))
    assert s["mlpconv1"] == (96, 27, 27)  # conv1 54x54, pooled (ceil mode) to 27
    assert s["mlpconv2"] == (256, 13, 13)
    assert s["mlpconv3"] == (384, 6, 6)
    assert s["mlpconv4"] == (1000, 6, 6)  # Caffe's pool4: a 6x6 average, the whole map
    assert s["flatten"] == (1000,)


def test_average_pooling_divides_by_the_pixels_inside_the_image_as_caffe():
    pool = cifar().mlpconv2.pool  # window 3, stride 2 on 16x16: the last window hangs over the edge
    out = pool(torch.ones(1, 1, 16, 16))
    assert out.shape == (1, 1, 8, 8)
    assert torch.allclose(out, torch.ones_like(out))


def test_dropout_placement():
    c = cifar()
    for block in (c.mlpconv1, c.mlpconv2):  # Sec. 4.1: all but the last mlpconv layer
        assert list(dict(block.named_children()))[-2:] == ["pool", "drop"] and block.drop.p == 0.5
    assert not any(isinstance(m, nn.Dropout) for m in c.mlpconv3.modules())
    i = meta("nin-imagenet", 1000, 224)  # the released ImageNet model: after mlpconv3 only
    drops = [n for n, m in i.named_modules() if isinstance(m, nn.Dropout)]
    assert drops == ["mlpconv3.drop"]


# --- Global average pooling (Sec. 3.2) ----------------------------------------------------


def test_global_average_pooling_gives_the_class_scores():
    net = cifar(final_relu=False).eval()
    x = torch.randn(3, 3, 32, 32) * 50
    maps = net.mlpconv3(net.mlpconv2(net.mlpconv1(x)))
    logits = net(x)
    assert torch.allclose(logits, maps.mean((2, 3)), rtol=1e-5, atol=1e-6)
    assert (logits < 0).any()  # no ReLU on the class maps: the scores can be negative
    assert torch.equal(net.dense(x), logits)


@pytest.mark.parametrize("shape", [(24, 24), (48, 48), (40, 56)])
def test_any_input_size_gives_one_score_per_class(shape):
    net = cifar().eval()
    assert net(torch.randn(2, 3, *shape)).shape == (2, 10)
    assert net.dense(torch.randn(2, 3, *shape)).shape == (2, 10)


def test_imagenet_model_runs_at_other_sizes():
    net = meta("nin-imagenet", 1000, 224).eval()
    for side in (256, 384):
        assert net(torch.empty(1, 3, side, side, device="meta")).shape == (1, 1000)


def test_final_relu_switch_gives_the_released_layout():
    net = cifar(final_relu=True).eval()
    assert isinstance(net.mlpconv3.cccp2.relu, nn.ReLU)
    assert (net(torch.randn(4, 3, 32, 32) * 50) >= 0).all()
    assert not hasattr(cifar(final_relu=False).mlpconv3.cccp2, "relu")
    # both recipes leave it off: on 0-255 inputs the class maps die (docs/models.md)
    assert recipes.load("nin-imagenet")["model"]["final_relu"] is False


def test_too_small_an_image_is_a_user_error():
    with pytest.raises(UserError, match="too small"):
        build("nin-imagenet", 10, image_size=32)
    with pytest.raises(UserError, match="too small"):
        build("nin-cifar", 10, image_size=2)


# --- Initialisation --------------------------------------------------------------------------


def test_cifar_initialisation_is_the_released_models():
    net = cifar()
    for block in (net.mlpconv1.conv, net.mlpconv2.conv, net.mlpconv3.cccp1):
        assert block.conv.weight.std().item() == pytest.approx(0.05, rel=0.05)
        assert torch.count_nonzero(block.conv.bias) == 0


def test_imagenet_initialisation_has_a_std_per_layer():
    torch.manual_seed(0)
    net = build("nin-imagenet", 1000, 224)
    stds = recipes.load("nin-imagenet")["model"]["init_std"]
    convs = [m.conv for m in net.modules() if isinstance(m, ConvBlock)]
    assert len(stds) == len(convs) == 12
    for conv, std in zip(convs, stds):
        assert conv.weight.std().item() == pytest.approx(std, rel=0.1)
    assert net.mlpconv1.conv.conv.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert net.mlpconv2.conv.conv.weight.std().item() == pytest.approx(0.05, rel=0.1)
    with pytest.raises(UserError, match="init_std"):
        build("nin-imagenet", 10, 224, init_std=[0.01, 0.05])
    assert build("nin-cifar", 10, 32, init="xavier").mlpconv1.conv.conv.bias.abs().sum() == 0


# --- Learning (a few steps of the recipe: tests/test_recipes.py) ------------------------------


def coloured_batch(n=16, classes=4, size=32, seed=0):
    """A fixed batch: each class a colour offset on noise, at the 0-255 scale of mean-subtracted pixels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    colours = torch.randn(classes, 3, 1, 1, generator=g) * 40
    return torch.randn(n, 3, size, size, generator=g) * 30 + colours[y], y


def test_gradients_reach_every_layer_with_the_final_relu():
    net = cifar(4, final_relu=True)
    x, y = coloured_batch(8)
    F.cross_entropy(net(x), y).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --- The recipes ---------------------------------------------------------------------------------

def test_cifar_schedule_ends_at_one_percent_of_the_initial_rate():
    s = recipes.load("nin-cifar")["schedule"]  # Sec. 4.1: lowered by 10, once more, to 1% of the initial value
    assert s["kind"] == "steps" and s["factor"] ** len(s["milestones"]) == pytest.approx(0.01)
    assert s["milestones"] == sorted(s["milestones"]) and s["milestones"][-1] < s["iterations"]


@pytest.mark.parametrize("recipe", ["nin-cifar", "nin-imagenet"])
def test_recipes_build_and_every_switch_is_accepted(recipe):
    r = recipes.load(recipe)
    size = r["data"]["image_size"]
    assert entry(r["network"]).recipe == recipe
    with torch.device("meta"):
        net = build(r["network"], 10, size)
        assert net(torch.empty(1, 3, size, size, device="meta")).shape == (1, 10)
        build(r["network"], 10, size, **r["model"])  # each switch, by name, at its recipe value


@pytest.mark.parametrize(
    "variant",
    [{"pool": "big"}, {"dropout": 1.5}, {"init": "uniform"}, {"layout": "mnist"}, {"wings": 2}],
)
def test_bad_switches_are_user_errors(variant):
    with pytest.raises(UserError):
        build("nin-cifar", 10, 32, **variant)
