"""VGG (Simonyan & Zisserman, ICLR 2015) checked against the paper: Table 1's
configurations, the parameter counts, dense evaluation (Sec. 3.2), the
initialisation from net A (Sec. 3.1), torchvision's weights and the recipe."""

import pytest
import torch
import torchvision
from torch import nn

from ilsvrc import UserError, build, recipes
from ilsvrc.models import entry, parameter_count
from ilsvrc.models.layers import ConvBlock, LocalResponseNorm
from ilsvrc.models.vgg import TORCHVISION, from_torchvision

CONFIGS = ("vgg-a", "vgg-a-lrn", "vgg-b", "vgg-c", "vgg-d", "vgg-e")

# Parameters with 1000 classes at 224x224: VGG-11 (A), VGG-13 (B), VGG-16 (D)
# and VGG-19 (E) are the well-known counts (torchvision's vgg11..vgg19 have
# the same layers); C is B plus three 1x1 convolutions (256*256 + 256 and
# twice 512*512 + 512); A-LRN is A (the LRN has no parameters).
PARAMETERS = {
    "vgg-a": 132_863_336,
    "vgg-a-lrn": 132_863_336,
    "vgg-b": 133_047_848,
    "vgg-c": 133_047_848 + (256 * 256 + 256) + 2 * (512 * 512 + 512),
    "vgg-d": 138_357_544,
    "vgg-e": 143_667_240,
}
TABLE_2_MILLIONS = {"vgg-a": 133, "vgg-a-lrn": 133, "vgg-b": 133, "vgg-c": 134, "vgg-d": 138, "vgg-e": 144}
WEIGHT_LAYERS = {"vgg-a": 11, "vgg-a-lrn": 11, "vgg-b": 13, "vgg-c": 16, "vgg-d": 16, "vgg-e": 19}  # Table 1's headers


def meta(name, num_classes=1000, image_size=224, **variant):
    with torch.device("meta"):
        return build(name, num_classes, image_size, **variant)


def small(name="vgg-a", num_classes=4, image_size=32, seed=0, **variant):
    torch.manual_seed(seed)
    return build(name, num_classes, image_size, **variant)


def conv_blocks(net):
    return [(n, m) for n, m in net.features.named_children() if isinstance(m, ConvBlock)]


# --- Table 1 and Table 2 -------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_counts(name):
    count = parameter_count(name, 1000, 224)
    assert count == PARAMETERS[name]
    assert round(count / 1e6) == TABLE_2_MILLIONS[name]  # Table 2, in millions


@pytest.mark.parametrize("name", CONFIGS)
def test_weight_layers_and_names_follow_table_1(name):
    net = meta(name)
    convs = conv_blocks(net)
    assert len(convs) + 3 == WEIGHT_LAYERS[name]
    assert [n for n, m in net.classifier.named_children() if isinstance(m, nn.Linear)] == ["fc6", "fc7", "fc8"]
    # conv<stack>_<index>, the stack's width doubling after each pool up to 512
    for n, block in convs:
        stack = int(n[4])
        assert n.startswith("conv") and n[5] == "_"
        assert block.conv.out_channels == (64, 128, 256, 512, 512)[stack - 1]
        assert block.conv.stride == (1, 1)
        assert isinstance(block.relu, nn.ReLU)  # every hidden layer has ReLU (Sec. 2.1)
    pools = [m for n, m in net.features.named_children() if n.startswith("pool")]
    assert len(pools) == 5
    assert all(isinstance(p, nn.MaxPool2d) and p.kernel_size == 2 and p.stride == 2 for p in pools)
    keys = set(net.state_dict())
    assert {"features.conv1_1.conv.weight", "features.conv5_2.conv.bias", "classifier.fc6.weight",
            "classifier.fc8.bias"} <= keys


def test_configuration_d_layer_order():
    order = list(dict(meta("vgg-d").features.named_children()))
    assert order == [
        "conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2",
        "conv3_1", "conv3_2", "conv3_3", "pool3", "conv4_1", "conv4_2", "conv4_3", "pool4",
        "conv5_1", "conv5_2", "conv5_3", "pool5",
    ]


def test_configuration_c_has_1x1_convolutions_in_stacks_3_to_5():
    c, d = meta("vgg-c").features, meta("vgg-d").features
    for name in ("conv3_3", "conv4_3", "conv5_3"):
        assert getattr(c, name).conv.kernel_size == (1, 1) and getattr(c, name).conv.padding == (0, 0)
        assert getattr(d, name).conv.kernel_size == (3, 3) and getattr(d, name).conv.padding == (1, 1)
    others = [m.conv.kernel_size for n, m in conv_blocks(meta("vgg-c")) if n not in ("conv3_3", "conv4_3", "conv5_3")]
    assert set(others) == {(3, 3)}


def test_a_lrn_normalises_after_conv1_1_with_alexnets_constants():
    f = meta("vgg-a-lrn").features
    order = list(dict(f.named_children()))
    assert order[:3] == ["conv1_1", "lrn1", "pool1"]
    lrn = f.lrn1
    assert isinstance(lrn, LocalResponseNorm)
    assert (lrn.size, lrn.k, lrn.alpha, lrn.beta) == (5, 2.0, 1e-4, 0.75)
    for name in ("vgg-a", "vgg-b", "vgg-c", "vgg-d", "vgg-e"):
        assert not any(isinstance(m, LocalResponseNorm) for m in meta(name).modules())


def test_a_lrn_differs_from_a_only_by_the_normalisation():
    a, a_lrn = small("vgg-a").eval(), small("vgg-a-lrn", seed=1).eval()
    a_lrn.load_state_dict(a.state_dict())  # the same parameters
    x = torch.randn(2, 3, 32, 32) * 50
    assert not torch.allclose(a(x), a_lrn(x))
    # A-LRN = A with the LRN applied to conv1_1's output
    f = a.features
    h = a_lrn.features.lrn1(f.conv1_1(x))
    for name, layer in f.named_children():
        if name != "conv1_1":
            h = layer(h)
    assert torch.allclose(a.classifier(h.flatten(1)), a_lrn(x), rtol=1e-4, atol=1e-6)


def test_dropout_only_after_fc6_and_fc7():
    net = meta("vgg-d")
    assert list(dict(net.classifier.named_children())) == ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
    assert net.classifier.drop6.p == net.classifier.drop7.p == 0.5
    assert net.classifier.fc6.out_features == net.classifier.fc7.out_features == 4096
    assert not any(isinstance(m, nn.Dropout) for m in net.features.modules())
    assert meta("vgg-d", dropout=0.0).classifier.drop6.p == 0.0


# --- Shapes ----------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_shapes_at_224(name):
    net = meta(name).eval()
    x = torch.empty(2, 3, 224, 224, device="meta")
    sizes = {}
    for layer_name, layer in net.features.named_children():
        x = layer(x)
        sizes[layer_name] = tuple(x.shape[1:])
    assert [sizes[f"pool{i}"] for i in range(1, 6)] == [(64, 112, 112), (128, 56, 56), (256, 28, 28),
                                                         (512, 14, 14), (512, 7, 7)]
    assert net.classifier.fc6.in_features == 512 * 7 * 7
    assert net(torch.empty(2, 3, 224, 224, device="meta")).shape == (2, 1000)
    # dense evaluation at the three test scales of Sec. 4.2
    for q in (256, 384, 512):
        assert net.dense(torch.empty(1, 3, q, q, device="meta")).shape == (1, 1000)


def test_small_images_give_a_smaller_fc6():
    net = small("vgg-a", 10, 32).eval()
    assert net.classifier.fc6.in_features == 512  # pool5 is 1x1 at 32 px
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert meta("vgg-e", 10, 64).classifier.fc6.in_features == 512 * 2 * 2


def test_too_small_an_image_is_a_user_error():
    with pytest.raises(UserError, match="too small"):
        build("vgg-a", 10, image_size=16)


# --- Dense evaluation (Sec. 3.2) -----------------------------------------------------


def test_dense_equals_forward_at_the_training_size_and_averages_larger_maps():
    net = small("vgg-a", 5, 64).eval()  # pool5 2x2: fc6 becomes a 2x2 convolution
    x = torch.randn(2, 3, 64, 64) * 50
    logits = net(x)
    assert torch.allclose(net.dense(x), logits, rtol=1e-4, atol=1e-5 * logits.abs().max().item())
    big = torch.randn(2, 3, 96, 96) * 50  # pool5 3x3: 2x2 positions of the 2x2 kernel
    scores = net.dense(big)
    assert scores.shape == (2, 5)
    maps = net.features(big)
    windows = [net.classifier(maps[:, :, i:i + 2, j:j + 2].flatten(1)) for i in range(2) for j in range(2)]
    expected = torch.stack(windows).mean(0)
    assert torch.allclose(scores, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())
    with pytest.raises(ValueError, match="at least"):
        net.dense(torch.randn(1, 3, 32, 32))


# --- Initialisation (Sec. 3.1) -----------------------------------------------------


def test_gaussian_initialisation():
    net = small("vgg-a", 10, 32)
    for layer in (net.features.conv3_1.conv, net.features.conv5_2.conv, net.classifier.fc7):
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.05)
        assert abs(layer.weight.mean().item()) < 1e-3
        assert torch.count_nonzero(layer.bias) == 0


def test_xavier_initialisation_is_a_switch():
    net = small("vgg-a", 10, 32, init="xavier")
    w = net.features.conv3_1.conv.weight  # fan in 128 * 9, fan out 256 * 9
    bound = (6 / (128 * 9 + 256 * 9)) ** 0.5
    assert w.abs().max().item() <= bound
    assert w.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.05)
    assert torch.count_nonzero(net.features.conv3_1.conv.bias) == 0


def test_init_from_a_copies_the_first_four_convs_and_the_fc_layers():
    a = small("vgg-a", seed=1)
    d = small("vgg-d", seed=2)
    before = {k: v.clone() for k, v in d.state_dict().items()}
    copied = d.init_from(a.state_dict())
    assert len(copied) == 7
    after, source = d.state_dict(), a.state_dict()
    for layer in ("features.conv1_1.conv", "features.conv2_1.conv", "features.conv3_1.conv",
                  "features.conv3_2.conv", "classifier.fc6", "classifier.fc7", "classifier.fc8"):
        for p in ("weight", "bias"):
            assert torch.equal(after[f"{layer}.{p}"], source[f"{layer}.{p}"])
    # the intermediate layers keep their random initialisation
    for layer in ("conv1_2", "conv2_2", "conv3_3", "conv4_1", "conv5_3"):
        key = f"features.{layer}.conv.weight"
        assert torch.equal(after[key], before[key])
    assert not torch.equal(after["features.conv1_1.conv.weight"], before["features.conv1_1.conv.weight"])


@pytest.mark.parametrize("name", ["vgg-a-lrn", "vgg-b", "vgg-c", "vgg-e"])
def test_every_configuration_can_start_from_a(name):
    a = meta("vgg-a")
    assert meta(name).init_from(a.state_dict())
    assert meta("vgg-d").init_from(meta("vgg-a-lrn").state_dict())


def test_init_from_rejects_mismatched_shapes_without_copying_anything():
    d = small("vgg-d", 4, seed=2)
    before = {k: v.clone() for k, v in d.state_dict().items()}
    with pytest.raises(ValueError, match="fc8"):
        d.init_from(small("vgg-a", 10, seed=1).state_dict())  # 10 classes, not 4
    with pytest.raises(ValueError, match="fc6"):
        d.init_from(meta("vgg-a", 4, 64).state_dict())  # another image size
    with pytest.raises(ValueError, match="no features.conv3_2"):
        d.init_from({k: v for k, v in small("vgg-a", 4, seed=1).state_dict().items() if "conv3_2" not in k})
    assert all(torch.equal(v, before[k]) for k, v in d.state_dict().items())


# --- torchvision's weights ------------------------------------------------------------


def test_torchvision_vgg11_gives_the_same_logits(tmp_path):
    torch.manual_seed(0)
    theirs = torchvision.models.vgg11(weights=None).eval()
    path = tmp_path / "vgg11.pt"
    torch.save(theirs.state_dict(), path)
    name, switches = TORCHVISION["vgg11"]
    ours = build(name, 1000, 224, **switches).eval()
    ours.load_state_dict(from_torchvision(torch.load(path)))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = theirs(x)
        got = ours(x)
        dense = ours.dense(x)
    scale = expected.abs().max().item()
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)
    assert torch.allclose(dense, expected, rtol=1e-4, atol=1e-4 * scale)  # dense at 224: fc6 a 7x7 convolution


@pytest.mark.parametrize("tv_name", sorted(TORCHVISION))
def test_torchvision_conversion_keys_and_shapes(tv_name):
    with torch.device("meta"):
        theirs = getattr(torchvision.models, tv_name)(weights=None)
    name, switches = TORCHVISION[tv_name]
    assert entry(name).recipe == "vgg"
    converted = from_torchvision(theirs.state_dict())
    ours = meta(name, 1000, 224, **switches).state_dict()
    assert set(converted) == set(ours)
    assert all(converted[k].shape == ours[k].shape for k in ours)


def test_torchvision_batch_norm_models_are_refused():
    with torch.device("meta"):
        bn = torchvision.models.vgg11_bn(weights=None)
    with pytest.raises(ValueError, match="batch"):
        from_torchvision(bn.state_dict())
    with pytest.raises(ValueError, match="no configuration"):
        from_torchvision({"features.0.weight": torch.zeros(64, 3, 5, 5)})


# --- The recipe (its format and learning: tests/test_recipes.py) ---------------------------


def test_recipe_values_are_the_papers():
    r = recipes.load("vgg")
    d = r["data"]
    assert r["network"] == "vgg-d" and d["crop"] == "scale"
    # Sec. 3.1 / 4.1: S in [256, 512], single test scale Q = (S_min + S_max) / 2
    assert d["test_resize"] == sum(d["scale"]) // 2
    assert (r["optim"]["batch_size"], r["optim"]["lr"], r["schedule"]["epochs"]) == (256, 0.01, 74)


def test_recipe_builds_and_every_switch_is_accepted():
    r = recipes.load("vgg")
    with torch.device("meta"):
        net = build(r["network"], 10, r["data"]["image_size"])
        assert net(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 10)
        for name in CONFIGS:
            assert entry(name).recipe == "vgg"
            build(name, 10, 224, **r["model"])  # each switch, by name, at its paper value


@pytest.mark.parametrize(
    "variant",
    [{"pool": "big"}, {"dropout": 1.5}, {"init": "uniform"}, {"config": "F"}, {"wings": 2}],
)
def test_bad_switches_are_user_errors(variant):
    with pytest.raises(UserError):
        build("vgg-a", 10, 32, **variant)
