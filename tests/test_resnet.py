"""ResNet (He et al., CVPR 2016) and its plain twins, checked against the paper's
numbers (Table 1, Table 6, Sec. 3.3-3.4, 4.1-4.2) and against torchvision."""

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from ilsvrc import UserError, build, recipes
from ilsvrc.models import names, parameter_count
from ilsvrc.models.resnet import TORCHVISION, Block, ZeroPadShortcut, from_torchvision

from conftest import randomise

IMAGENET = (18, 34, 50, 101, 152)
CIFAR = (20, 32, 44, 56, 110, 1202)

# torchvision's counts (option B, 1000 classes): the paper's Table 1 networks.
IMAGENET_COUNTS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
# The plain twins: the same networks without their projection shortcuts.
PLAIN_COUNTS = {18: 11_515_688, 34: 21_623_848, 50: 22_780_456, 101: 41_772_584, 152: 57_416_232}
# Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M, 19.4M parameters (10 classes), and our tolerance.
CIFAR_COUNTS = {20: (0.27e6, 0.01e6), 32: (0.46e6, 0.01e6), 44: (0.66e6, 0.01e6), 56: (0.85e6, 0.01e6),
                110: (1.7e6, 0.05e6), 1202: (19.4e6, 0.2e6)}


def meta(name, num_classes=1000, image_size=224, **variant):
    with torch.device("meta"):
        return build(name, num_classes, image_size, **variant)


def blocks(model):
    return [m for m in model.modules() if isinstance(m, Block)]


def projections(model):
    return [b.shortcut for b in blocks(model) if b.residual and not isinstance(b.shortcut, (nn.Identity, ZeroPadShortcut))]


def test_every_model_is_registered():
    for depth in IMAGENET + CIFAR:
        assert f"resnet-{depth}" in names() and f"plain-{depth}" in names()


@pytest.mark.parametrize("depth", IMAGENET)
def test_imagenet_parameter_counts(depth):
    assert parameter_count(f"resnet-{depth}", 1000, 224) == IMAGENET_COUNTS[depth]


@pytest.mark.parametrize("depth", IMAGENET)
def test_plain_twins_are_the_residual_nets_without_projections(depth):
    res = meta(f"resnet-{depth}")
    shortcut_params = sum(p.numel() for s in projections(res) for p in s.parameters())
    plain = parameter_count(f"plain-{depth}", 1000, 224)
    assert plain == IMAGENET_COUNTS[depth] - shortcut_params == PLAIN_COUNTS[depth]
    assert not any(b.residual or hasattr(b, "shortcut") for b in blocks(meta(f"plain-{depth}")))
    # option A has no shortcut parameters at all: the plain net's count
    assert parameter_count(f"resnet-{depth}", 1000, 224, shortcut="A") == plain


@pytest.fixture(scope="module")
def resnet_1202():
    """The 1202-layer net, built once on the meta device (building it takes seconds)."""
    return meta("resnet-1202", 10, 32)


@pytest.mark.parametrize("depth", CIFAR)
def test_cifar_parameter_counts_match_table_6(depth, resnet_1202):
    target, tolerance = CIFAR_COUNTS[depth]
    net = resnet_1202 if depth == 1202 else meta(f"resnet-{depth}", 10, 32)
    count = sum(p.numel() for p in net.parameters())
    assert abs(count - target) <= tolerance
    assert not projections(net)  # option A shortcuts are parameter-free, so the plain twin has as many
    if depth < 1202:
        assert parameter_count(f"plain-{depth}", 10, 32) == count


def test_layer_names_are_the_papers():
    keys = set(meta("resnet-50").state_dict())
    for key in ("conv1.conv.weight", "conv1.bn.running_var", "layer1.0.conv1.conv.weight", "layer1.0.conv3.bn.bias",
                "layer1.0.shortcut.conv.weight", "layer2.0.shortcut.bn.weight", "layer4.2.conv3.conv.weight",
                "fc.weight", "fc.bias"):
        assert key in keys
    net = meta("resnet-18")
    assert list(dict(net.named_children())) == ["conv1", "pool1", "layer1", "layer2", "layer3", "layer4",
                                                "avgpool", "flatten", "fc"]
    assert net.pool1.kernel_size == 3 and net.pool1.stride == 2
    assert net.conv1.conv.kernel_size == (7, 7) and net.conv1.conv.stride == (2, 2) and net.conv1.conv.out_channels == 64
    cifar = meta("resnet-20", 10, 32)
    assert list(dict(cifar.named_children())) == ["conv1", "layer1", "layer2", "layer3", "avgpool", "flatten", "fc"]
    assert cifar.conv1.conv.kernel_size == (3, 3) and cifar.conv1.conv.out_channels == 16


def test_batch_norm_after_every_convolution_before_relu():
    block = meta("resnet-50").layer1[0]
    assert list(dict(block.conv1.named_children())) == ["conv", "bn", "relu"]
    assert list(dict(block.conv3.named_children())) == ["conv", "bn"]  # its ReLU comes after the addition
    assert all(m.bias is None for m in meta("resnet-50").modules() if isinstance(m, nn.Conv2d))


def stage_shapes(net, x):
    shapes = {}
    for name, layer in net.named_children():
        x = layer(x)
        shapes[name] = tuple(x.shape[1:])
    return shapes


@pytest.mark.parametrize("name", [f"resnet-{d}" for d in IMAGENET] + ["plain-34", "plain-50"])
def test_imagenet_maps_follow_table_1(name):
    depth = int(name.split("-")[1])
    expansion = 4 if depth >= 50 else 1
    shapes = stage_shapes(meta(name), torch.empty(2, 3, 224, 224, device="meta"))
    assert shapes["conv1"] == (64, 112, 112) and shapes["pool1"] == (64, 56, 56)
    for i, (width, side) in enumerate(zip((64, 128, 256, 512), (56, 28, 14, 7)), start=1):
        assert shapes[f"layer{i}"] == (width * expansion, side, side)
    assert shapes["fc"] == (1000,)


@pytest.mark.parametrize("name", [f"resnet-{d}" for d in CIFAR[:-1]] + ["plain-20", "plain-56"])
def test_cifar_maps_follow_section_4_2(name):
    depth = int(name.split("-")[1])
    torch.manual_seed(0)
    net = build(name, 10, 32).eval()
    shapes = stage_shapes(net, torch.randn(2, 3, 32, 32))
    assert shapes["conv1"] == (16, 32, 32)
    assert shapes["layer1"] == (16, 32, 32) and shapes["layer2"] == (32, 16, 16) and shapes["layer3"] == (64, 8, 8)
    assert shapes["fc"] == (10,)
    assert len(blocks(net)) == 3 * (depth - 2) // 6  # n blocks of two layers in each of three stages


def test_the_1202_layer_net(resnet_1202):
    """Its maps are those of the smaller nets (a forward pass of 1202 layers takes
    seconds even on the meta device): the same stages, n = 200 blocks each."""
    net = resnet_1202
    assert [len(getattr(net, f"layer{i}")) for i in (1, 2, 3)] == [200, 200, 200]
    assert [getattr(net, f"layer{i}")[-1].out_channels for i in (1, 2, 3)] == [16, 32, 64]
    assert [getattr(net, f"layer{i}")[0].conv1.conv.stride for i in (1, 2, 3)] == [(1, 1), (2, 2), (2, 2)]
    assert net.fc.in_features == 64 and net.fc.out_features == 10
    conv_layers = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    assert conv_layers + 1 == 1202  # 6n + 1 convolutions and fc


def test_recipe_input_sizes_run_for_real():
    torch.manual_seed(0)
    out = build("resnet-18", 10, 224).eval()(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 10) and torch.isfinite(out).all()


def test_shortcut_options():
    a, b, c = (meta("resnet-34", shortcut=s) for s in "ABC")
    # A: parameter-free; zero-padding where the dimensions increase, identity elsewhere
    assert not projections(a)
    assert sum(isinstance(blk.shortcut, ZeroPadShortcut) for blk in blocks(a)) == 3
    # B: projections exactly where the dimensions increase (conv3_1, conv4_1, conv5_1)
    assert [blk for blk in blocks(b) if not isinstance(blk.shortcut, nn.Identity)] == [b.layer2[0], b.layer3[0], b.layer4[0]]
    assert all(p.conv.kernel_size == (1, 1) and p.conv.stride == (2, 2) for p in projections(b))
    # C: a projection on every block
    assert len(projections(c)) == len(blocks(c)) == 16
    # Bottlenecks: conv2_1 increases 64 -> 256 channels, so B projects there too
    assert len(projections(meta("resnet-50"))) == 4


def test_zero_padding_shortcut():
    x = torch.randn(2, 16, 32, 32)
    y = ZeroPadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 16, 16)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2]) and not y[:, 16:].any()


def test_residual_and_plain_blocks():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    plain = Block(16, 16, 1, bottleneck=False, residual=False, shortcut="A", bottleneck_stride="1x1").eval()
    assert torch.equal(plain(x), F.relu(plain.conv2(plain.conv1(x))))  # relu(F(x)): no shortcut
    res = Block(16, 16, 1, bottleneck=False, residual=True, shortcut="A", bottleneck_stride="1x1").eval()
    res.load_state_dict(plain.state_dict())
    assert torch.allclose(res(x), F.relu(plain.stack(x) + x))  # relu(F(x) + x)
    assert not torch.allclose(res(x), plain(x))


def test_bottleneck_stride_switch():
    paper = meta("resnet-50").layer2[0]
    assert paper.conv1.conv.stride == (2, 2) and paper.conv2.conv.stride == (1, 1)
    v15 = meta("resnet-50", bottleneck_stride="3x3").layer2[0]
    assert v15.conv1.conv.stride == (1, 1) and v15.conv2.conv.stride == (2, 2)


def test_he_initialisation():
    torch.manual_seed(0)
    conv = build("resnet-18", 10).layer3[0].conv2.conv  # 256 -> 256, 3x3: fan-out 2304
    assert conv.weight.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.05)


@pytest.mark.parametrize("name,size", [("resnet-18", 160), ("resnet-20", 48)])
def test_dense_takes_any_input_size(name, size):
    torch.manual_seed(0)
    net = build(name, 10, 224 if name == "resnet-18" else 32).eval()
    out = net.dense(torch.randn(2, 3, size, size + 32))
    assert out.shape == (2, 10)
    x = torch.randn(1, 3, size, size)
    assert torch.equal(net.dense(x), net(x))


@pytest.mark.parametrize("tv_name", ["resnet18", "resnet50"])
def test_torchvision_weights_give_the_same_logits(tv_name, tmp_path):
    torch.manual_seed(0)
    tv = randomise(getattr(torchvision.models, tv_name)(weights=None)).eval()
    torch.save(tv.state_dict(), tmp_path / "weights.pt")
    ours_name, switches = TORCHVISION[tv_name]
    ours = build(ours_name, 1000, 224, **switches)
    ours.load_state_dict(from_torchvision(torch.load(tmp_path / "weights.pt")))
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert expected.std() > 0.1  # the logits are not all alike
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@pytest.mark.parametrize("tv_name", sorted(TORCHVISION))
def test_torchvision_keys_and_shapes_match(tv_name):
    ours_name, switches = TORCHVISION[tv_name]
    with torch.device("meta"):
        tv = getattr(torchvision.models, tv_name)(weights=None)
    converted = {k: tuple(v.shape) for k, v in from_torchvision(tv.state_dict()).items()}
    assert converted == {k: tuple(v.shape) for k, v in meta(ours_name, **switches).state_dict().items()}


def test_from_torchvision_rejects_foreign_keys():
    with pytest.raises(ValueError, match="torchvision ResNet"):
        from_torchvision({"features.0.weight": torch.zeros(1)})


@pytest.mark.parametrize("recipe", ["resnet-imagenet", "resnet-cifar"])
def test_recipe_loads_builds_and_accepts_every_switch(recipe):
    r = recipes.load(recipe)
    for table in ("model", "data", "optim", "schedule"):
        assert r[table]
    net = meta(r["network"], 10, r["data"]["image_size"])
    assert net(torch.empty(1, 3, r["data"]["image_size"], r["data"]["image_size"], device="meta")).shape == (1, 10)
    meta(r["network"], 10, r["data"]["image_size"], **r["model"])  # every switch, by name


def test_recipe_values():
    imagenet, cifar = recipes.load("resnet-imagenet"), recipes.load("resnet-cifar")
    assert imagenet["model"] == {"shortcut": "B", "bottleneck_stride": "1x1", "init": "he"}
    assert (imagenet["optim"]["batch_size"], imagenet["optim"]["lr"], imagenet["optim"]["weight_decay"]) == (256, 0.1, 1e-4)
    assert imagenet["data"]["scale"] == [256, 480] and imagenet["data"]["test_scales"] == [224, 256, 384, 480, 640]
    assert cifar["model"]["shortcut"] == "A"
    assert cifar["schedule"]["milestones"] == [32000, 48000] and cifar["schedule"]["iterations"] == 64000
    assert "resnet-110" in cifar["schedule"]["warmup_models"]
    for model in cifar["schedule"]["warmup_models"]:
        assert model in names()


def test_switch_values_change_the_network():
    assert parameter_count("resnet-20", 10, 32, shortcut="B") > parameter_count("resnet-20", 10, 32)
    torch.manual_seed(0)
    net = build("resnet-56", 10, 32, init="xavier")
    conv = net.layer1[0].conv1.conv
    assert conv.weight.std().item() == pytest.approx((2 / (2 * 16 * 9)) ** 0.5, rel=0.1)


@pytest.mark.parametrize("variant", [{"shortcut": "D"}, {"bottleneck_stride": "2x2"}, {"init": "uniform"},
                                     {"depth": 19}, {"dropout": 0.5}])
def test_bad_switches_are_user_errors(variant):
    with pytest.raises(UserError):
        build("resnet-18", 10, **variant)


def test_cifar_nets_have_no_bottleneck_switch():
    with pytest.raises(UserError, match="no switch"):
        build("resnet-20", 10, 32, bottleneck_stride="3x3")


def test_ten_sgd_steps_lower_the_loss():
    torch.manual_seed(0)
    net = build("resnet-20", 4, 32)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 4, (16,))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    losses = []
    for _ in range(10):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = F.cross_entropy(net(x), y).item()
    assert final < 0.5 * losses[0]
