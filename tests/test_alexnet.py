"""The network of AlexNet Section 3, checked against the paper's numbers."""

import pytest
import torch
from torch import nn

from ilsvrc import UserError, build
from ilsvrc.models import paper_variant
from ilsvrc.models.alexnet import TOWER_LAYOUTS, alexnet


def paper_net(**variant):
    torch.manual_seed(0)
    return build("alexnet", num_classes=1000, **variant)


def paper_shapes(**variant):
    """The network on the meta device: its layers and every tensor's shape,
    no weights drawn (61M of them at 224 px: most of this file's time when
    each test drew them)."""
    with torch.device("meta"):
        return build("alexnet", num_classes=1000, **variant)


def test_parameter_count_matches_the_paper():
    assert sum(p.numel() for p in paper_shapes().parameters()) == 60_965_224


def test_layer_names_are_the_papers():
    keys = set(paper_shapes().state_dict())
    for name in ("features.conv1.weight", "features.conv5.bias", "classifier.fc6.weight", "classifier.fc8.bias"):
        assert name in keys


def test_layer_output_sizes_for_a_224_input():
    net = paper_shapes().eval()
    sizes, x = {}, torch.randn(2, 3, 224, 224, device="meta")
    for name, layer in net.features.named_children():
        x = layer(x)
        sizes[name] = (x.shape[1], x.shape[2])
    assert sizes["conv1"] == (96, 55)
    assert sizes["pool1"] == (96, 27)
    assert sizes["conv2"] == (256, 27)
    assert sizes["pool2"] == (256, 13)
    assert sizes["conv3"] == (384, 13) and sizes["conv4"] == (384, 13) and sizes["conv5"] == (256, 13)
    assert sizes["pool5"] == (256, 6)
    assert net(torch.randn(2, 3, 224, 224, device="meta")).shape == (2, 1000)


def test_grouped_layers_and_layer_order():
    f = paper_shapes().features
    assert [f.conv1.groups, f.conv2.groups, f.conv3.groups, f.conv4.groups, f.conv5.groups] == [1, 2, 1, 2, 2]
    order = list(dict(f.named_children()))
    assert order.index("act1") < order.index("lrn1") < order.index("pool1")  # LRN after ReLU (Sec. 3.3)
    assert order.index("act2") < order.index("lrn2") < order.index("pool2")
    assert f.pool1.kernel_size == 3 and f.pool1.stride == 2  # overlapping pooling (Sec. 3.4)
    c = paper_shapes().classifier
    order = list(dict(c.named_children()))
    assert order == ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
    assert c.drop6.p == 0.5 and c.drop7.p == 0.5


@pytest.mark.parametrize("tower_layout", TOWER_LAYOUTS)
def test_towers_stay_separate_from_conv1_to_conv2(tower_layout):
    """A change in tower 1's conv1 kernels cannot reach tower 2's half of
    pool2's output (its LRNs, pooling and conv2 see only their own tower),
    through the network's own forward; conv3 sees both towers."""
    torch.manual_seed(0)
    f = alexnet(1000, **paper_variant("alexnet"), tower_layout=tower_layout).eval().features
    names = list(dict(f.named_children()))
    to_pool2, to_conv3 = f[: names.index("pool2") + 1], f[: names.index("conv3") + 1]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        a2, a3 = to_pool2(x), to_conv3(x)
        f.conv1.weight[:48] += torch.randn(48, 3, 11, 11) * 0.1  # tower 1's kernels only
        b2, b3 = to_pool2(x), to_conv3(x)
    assert a2.shape[1] == 256 and a3.shape[1] == 384
    assert torch.equal(a2[:, 128:], b2[:, 128:])  # tower 2's half: untouched, bit for bit
    assert not torch.allclose(a2[:, :128], b2[:, :128])  # tower 1's half did change
    assert not torch.allclose(a3[:, 192:], b3[:, 192:])  # conv3 sees both towers: tower 2's half changes too


def test_one_tower_mixes_everything():
    f = paper_shapes(towers=1).features
    assert f.conv2.groups == f.conv4.groups == f.conv5.groups == 1
    assert f.lrn1.groups == 1


def test_initialisation_follows_section_5():
    net = paper_net()
    f, c = net.features, net.classifier
    for layer in (f.conv1, f.conv3, c.fc8):
        assert torch.count_nonzero(layer.bias) == 0
    for layer in (f.conv2, f.conv4, f.conv5, c.fc6, c.fc7):
        assert torch.all(layer.bias == 1)
    for layer in (f.conv1, f.conv2, c.fc6, c.fc7):
        assert layer.weight.mean().abs() < 1e-3
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert torch.all(build("alexnet", 10, bias_init=0.0).classifier.fc6.bias == 0)


def test_initialisation_draws_are_section_5s_rule_written_out():
    """``initialise`` with the paper's bias layers makes the same numbers,
    draw for draw, as the rule of Section 5 written out layer by layer."""
    from ilsvrc.models.alexnet import BIAS_LAYERS
    from ilsvrc.models.layers import initialise

    net, written_out = paper_net(), paper_net()
    torch.manual_seed(5)
    initialise(net, "gaussian", std=0.01, bias=1.0, bias_in=BIAS_LAYERS)
    torch.manual_seed(5)
    for name, m in written_out.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.constant_(m.bias, 1.0 if name.split(".")[-1] in {"conv2", "conv4", "conv5", "fc6", "fc7"} else 0.0)
    for (key, a), b in zip(net.state_dict().items(), written_out.state_dict().values()):
        assert torch.equal(a, b), key


@pytest.mark.parametrize("removed", ["conv3", "conv4", "conv5"])
def test_removing_a_middle_conv_layer_fixes_the_channels(removed):
    net = paper_shapes(remove_conv=removed).eval()
    names = dict(net.features.named_children())
    assert removed not in names
    assert net(torch.randn(1, 3, 224, 224, device="meta")).shape == (1, 1000)


def test_ablation_switches():
    f = paper_shapes(lrn=False).features
    assert not any(isinstance(m, nn.LocalResponseNorm) or "lrn" in n for n, m in f.named_children())
    f = paper_shapes(pool="2/2").features
    assert f.pool1.kernel_size == 2 and f.pool1.stride == 2
    assert paper_shapes(pool="2/2").eval()(torch.randn(1, 3, 224, 224, device="meta")).shape == (1, 1000)
    net = paper_shapes(activation="tanh")
    assert isinstance(net.features.act1, nn.Tanh) and isinstance(net.classifier.relu6, nn.Tanh)
    assert paper_shapes(dropout=0.0).classifier.drop6.p == 0.0


def test_small_inputs_give_a_smaller_fc6():
    net = build("alexnet", num_classes=10, image_size=64)
    assert net.classifier.fc6.in_features == 256  # pool5 is 1x1 at 64 px
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 10)


@pytest.mark.parametrize(
    "variant",
    [{"towers": 3}, {"pool": "big"}, {"activation": "sigmoid"}, {"remove_conv": "conv1"}, {"dropout": 1.5}, {"wings": 2}],
)
def test_bad_switches_are_user_errors(variant):
    with pytest.raises(UserError):
        build("alexnet", 10, **variant)


def test_too_small_an_image_is_a_user_error():
    with pytest.raises(UserError, match="too small"):
        build("alexnet", 10, image_size=32)


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="unknown model"):
        build("lenet", 10)


def test_too_small_an_image_for_figure_1s_network_is_a_user_error():
    with pytest.raises(UserError, match="image size 7 is too small for the Figure 1 network's layers"):
        build("alexnet-fig1", 10, image_size=7)
    assert build("alexnet-fig1", 10, image_size=8).fc4.in_features == 64  # 8 -> 4 -> 2 -> 1
