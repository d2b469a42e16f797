"""GoogLeNet (Szegedy et al., CVPR 2015), checked against the paper's Table 1
and Sec. 5 and against torchvision's implementation."""

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from ilsvrc import UserError, build, recipes
from ilsvrc.models import parameter_count
from ilsvrc.models.googlenet import INCEPTION, TORCHVISION, Inception, from_torchvision
from ilsvrc.models.layers import ConvBlock, LocalResponseNorm

from conftest import randomise

TV_NAME, TV_SWITCHES = TORCHVISION["googlenet"]  # without the auxiliary classifiers, as its pretrained model
TV_AUX = {**TV_SWITCHES, "aux": True}
TV_COUNT = 6_624_904  # torchvision googlenet(aux_logits=False), 1000 classes
TV_COUNT_AUX = 13_004_888  # with its two auxiliary classifiers
PAPER_COUNT = 6_998_552  # ours, the paper's layout (5x5 kernels, conv biases, no batch norm), without aux
PAPER_COUNT_AUX = 13_378_280  # with the auxiliary classifiers of Sec. 5 at 224


def meta(num_classes=1000, image_size=224, **variant):
    with torch.device("meta"):
        return build("googlenet", num_classes, image_size, **variant)


def convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_maps_follow_table_1():
    net = meta().eval()
    x, shapes = torch.empty(1, 3, 224, 224, device="meta"), {}
    for name, layer in net.features.named_children():
        x = layer(x)
        shapes[name] = tuple(x.shape[1:])
    assert list(shapes) == ["conv1", "pool1", "lrn1", "conv2_reduce", "conv2", "lrn2", "pool2",
                            "inception_3a", "inception_3b", "pool3", "inception_4a", "inception_4b", "inception_4c",
                            "inception_4d", "inception_4e", "pool4", "inception_5a", "inception_5b"]
    expected = {"conv1": (64, 112), "pool1": (64, 56), "conv2": (192, 56), "pool2": (192, 28),
                "inception_3a": (256, 28), "inception_3b": (480, 28), "pool3": (480, 14), "inception_4a": (512, 14),
                "inception_4b": (512, 14), "inception_4c": (512, 14), "inception_4d": (528, 14),
                "inception_4e": (832, 14), "pool4": (832, 7), "inception_5a": (832, 7), "inception_5b": (1024, 7)}
    for name, (channels, side) in expected.items():
        assert shapes[name] == (channels, side, side), name
    assert net.fc.in_features == 1024 and net.dropout.p == 0.4


def test_inception_branches():
    block = meta().features.inception_3a
    assert isinstance(block, Inception)
    assert list(dict(block.named_children())) == ["branch1x1", "branch3x3_reduce", "branch3x3", "branch5x5_reduce",
                                                  "branch5x5", "pool", "pool_proj"]
    widths = [block.branch1x1, block.branch3x3_reduce, block.branch3x3, block.branch5x5_reduce, block.branch5x5,
              block.pool_proj]
    assert tuple(c.conv.out_channels for c in widths) == INCEPTION["3a"] == (64, 96, 128, 16, 32, 32)
    assert block.branch5x5.conv.kernel_size == (5, 5) and block.branch3x3.conv.kernel_size == (3, 3)
    assert block.pool.kernel_size == 3 and block.pool.stride == 1


def test_every_convolution_is_followed_by_relu():
    blocks = [m for m in meta().modules() if isinstance(m, ConvBlock)]
    assert len(blocks) == len(convs(meta())) == 3 + 9 * 6 + 2
    assert all(isinstance(b.relu, nn.ReLU) and not hasattr(b, "bn") and b.conv.bias is not None for b in blocks)


def test_lrn_is_caffes_layer():
    """BVLC's LRN (local size 5, alpha 1e-4 on the mean of squares, beta 0.75)
    is ours with alpha 2e-5 on the sum."""
    f = meta().features
    assert isinstance(f.lrn1, LocalResponseNorm) and isinstance(f.lrn2, LocalResponseNorm)
    torch.manual_seed(0)
    x = torch.relu(torch.randn(2, 64, 8, 8)) * 20
    ours = LocalResponseNorm(f.lrn1.size, f.lrn1.alpha, f.lrn1.beta, f.lrn1.k)(x)
    assert torch.allclose(ours, nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)(x), rtol=1e-5)
    assert not any(isinstance(m, LocalResponseNorm) for m in meta(lrn=False).modules())


def test_parameter_counts():
    assert parameter_count("googlenet", 1000, 224, aux=False) == PAPER_COUNT
    assert parameter_count("googlenet", 1000, 224) == PAPER_COUNT_AUX
    tv_ours = parameter_count("googlenet", 1000, 224, **TV_SWITCHES)
    assert abs(tv_ours - TV_COUNT) <= 0.01 * TV_COUNT  # what the issue asks
    assert tv_ours == TV_COUNT and parameter_count("googlenet", 1000, 224, **TV_AUX) == TV_COUNT_AUX
    with torch.device("meta"):
        assert sum(p.numel() for p in torchvision.models.googlenet(weights=None, aux_logits=False,
                                                                   init_weights=False).parameters()) == TV_COUNT


def test_paper_and_torchvision_counts_differ_by_the_5x5_kernels_and_the_norm():
    """torchvision's "5x5" branches have 3x3 kernels: 25 - 9 = 16 weights fewer per
    (reduce, output) pair; its batch norms have a weight and a bias for each
    convolution's output channel where the paper's convolutions have a bias."""
    kernel_weights = 16 * sum(n5_reduce * n5 for _, _, _, n5_reduce, n5, _ in INCEPTION.values())
    conv_channels = sum(c.out_channels for c in convs(meta(aux=False)))
    assert kernel_weights == 380_928 and conv_channels == 7_280
    assert PAPER_COUNT - kernel_weights + conv_channels == TV_COUNT


def test_auxiliary_classifiers_only_in_training():
    net = meta(7)
    assert net.aux_weight == 0.3
    assert net.aux1.dropout.p == 0.7 and net.aux1.fc1.out_features == 1024 and net.aux1.conv.conv.out_channels == 128
    assert net.aux1.conv.conv.in_channels == 512 and net.aux2.conv.conv.in_channels == 528  # on (4a) and (4d)
    x = torch.empty(2, 3, 224, 224, device="meta")
    out = net.train()(x)
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 7)] * 3
    assert net.eval()(x).shape == (2, 7)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 96, 96)
    net = build("googlenet", 7, 96)
    assert [o.shape for o in net.train()(x)] == [(2, 7)] * 3
    with torch.no_grad():
        assert net.eval()(x).shape == (2, 7)
    plain = build("googlenet", 7, 96, aux=False).train()
    assert not hasattr(plain, "aux1") and not hasattr(plain, "aux2")
    assert isinstance(plain(x), torch.Tensor)


def test_auxiliary_pooling_is_5x5_stride_3():
    net = meta()
    assert net.aux1.pool.kernel_size == 5 and net.aux1.pool.stride == 3
    assert net.aux1.fc1.in_features == 128 * 4 * 4  # Sec. 5: 4x4x512 for (4a)
    x = torch.arange(14 * 14, dtype=torch.float).view(1, 1, 14, 14)
    paper = build("googlenet", 10).aux1.pool(x)
    adaptive = build("googlenet", 10, aux_pool="adaptive").aux1.pool(x)
    assert paper.shape == adaptive.shape == (1, 1, 4, 4)
    assert torch.equal(paper[0, 0, 0, 0], x[0, 0, :5, :5].mean())
    assert not torch.equal(paper, adaptive)  # torchvision's windows are 4 wide, the paper's 5


@pytest.mark.parametrize("size", [32, 64, 96])
def test_small_inputs_train(size):
    torch.manual_seed(0)
    out = build("googlenet", 4, size).train()(torch.randn(2, 3, size, size))
    assert [o.shape for o in out] == [(2, 4)] * 3


def test_too_small_an_image_is_a_user_error():
    with pytest.raises(UserError, match="too small"):
        build("googlenet", 10, 16)


def test_dense_takes_any_input_size():
    torch.manual_seed(0)
    net = build("googlenet", 10, 224)
    for mode in (True, False):
        net.train(mode)
        with torch.no_grad():
            assert net.dense(torch.randn(2, 3, 96, 128)).shape == (2, 10)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net.eval().dense(x), net(x))


def test_torchvision_layout_switches():
    net = meta(**TV_AUX)
    f = net.features
    assert f.inception_3a.branch5x5.conv.kernel_size == (3, 3)
    assert f.pool4.kernel_size == 2 and f.pool4.stride == 2
    assert isinstance(f.conv1.bn, nn.BatchNorm2d) and f.conv1.bn.eps == 1e-3 and f.conv1.conv.bias is None
    assert not any(isinstance(m, LocalResponseNorm) for m in net.modules())
    assert isinstance(net.aux1.pool, nn.AdaptiveAvgPool2d)


def test_torchvision_weights_give_the_same_logits(tmp_path):
    torch.manual_seed(0)
    tv = randomise(torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True))
    torch.save(tv.state_dict(), tmp_path / "weights.pt")
    ours = build(TV_NAME, 1000, 224, **TV_AUX)
    state = from_torchvision(torch.load(tmp_path / "weights.pt"))
    assert set(state) == set(ours.state_dict())
    ours.load_state_dict(state)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected, got = tv.eval()(x), ours.eval()(x)
        assert expected.std() > 1e-3
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
        # the auxiliary classifiers too: training mode (batch statistics), dropout switched off
        tv.train(), ours.train()
        for module in (*tv.modules(), *ours.modules()):
            if isinstance(module, nn.Dropout):
                module.eval()
        tv_out, our_out = tv(x), ours(x)
    for ours_logits, theirs in zip(our_out, (tv_out.logits, tv_out.aux_logits1, tv_out.aux_logits2)):
        assert torch.allclose(ours_logits, theirs, rtol=1e-4, atol=1e-4 * theirs.abs().max().item())


def test_torchvision_state_dict_without_aux_loads_into_the_declared_switches():
    torch.manual_seed(0)
    tv = randomise(torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)).eval()
    ours = build(TV_NAME, 1000, 224, **TV_SWITCHES).eval()
    ours.load_state_dict(from_torchvision(tv.state_dict()))  # strict: every key matches
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), tv(x), rtol=1e-4, atol=1e-5)


def test_from_torchvision_rejects_foreign_keys():
    with pytest.raises(ValueError, match="torchvision GoogLeNet"):
        from_torchvision({"features.0.weight": torch.zeros(1)})


def test_recipe_loads_builds_and_accepts_every_switch():
    r = recipes.load("googlenet")
    for table in ("model", "data", "optim", "schedule"):
        assert r[table]
    size = r["data"]["image_size"]
    net = meta(10, size, **r["model"])  # every switch, by name
    assert net.eval()(torch.empty(1, 3, size, size, device="meta")).shape == (1, 10)
    assert r["network"] == "googlenet" and r["schedule"]["kind"] == "exponential"
    assert (r["schedule"]["factor"], r["schedule"]["every"]) == (0.96, 8)
    assert r["model"]["aux_weight"] == 0.3 and r["model"]["dropout"] == 0.4 and r["model"]["aux_dropout"] == 0.7
    assert r["data"]["test_scales"] == [256, 288, 320, 352]


@pytest.mark.parametrize("variant", [{"norm": "group"}, {"branch5x5_kernel": 4}, {"dropout": 1.0},
                                     {"aux_pool": "big"}, {"pool4": "x"}, {"init": "normal"}, {"wings": 2}])
def test_bad_switches_are_user_errors(variant):
    with pytest.raises(UserError):
        build("googlenet", 10, **variant)


def test_ten_sgd_steps_lower_the_loss():
    torch.manual_seed(0)
    net = build("googlenet", 4, 64)
    x, y = torch.randn(8, 3, 64, 64), torch.randint(0, 4, (8,))
    opt = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9)
    with torch.no_grad():
        before = F.cross_entropy(net.eval()(x), y).item()
    net.train()
    losses = []
    for _ in range(10):
        logits, aux1, aux2 = net(x)
        loss = F.cross_entropy(logits, y) + net.aux_weight * (F.cross_entropy(aux1, y) + F.cross_entropy(aux2, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        after = F.cross_entropy(net.eval()(x), y).item()
    # Xavier weights, zero biases and no batch norm: 22 layers start slowly
    # (logits near zero, loss near log 4), so the bar is a clear drop, not a fit.
    assert losses[-1] < losses[0] - 0.1
    assert after < before - 0.1
