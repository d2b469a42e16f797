"""torchvision's AlexNet ("One weird trick", arXiv 1404.5997) with paper names,
checked against torchvision itself."""

import pytest
import torch
import torchvision

from ilsvrc.models import build, entry, parameter_count
from ilsvrc.models.alexnet_owt import TORCHVISION, from_torchvision


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build("alexnet_owt", 1000).eval()


def test_parameter_count_is_torchvisions():
    assert parameter_count("alexnet_owt") == 61_100_840


def test_registry_entry_has_no_recipe_and_no_switches():
    e = entry("alexnet_owt")
    assert e.recipe is None and "One weird trick" in e.paper
    assert TORCHVISION == {"alexnet": ("alexnet_owt", {})}


def test_layer_names_are_the_papers(net):
    assert list(dict(net.features.named_children())) == [
        "conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
        "conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5",
    ]  # fmt: skip
    # torchvision's order: dropout before fc6 and fc7
    assert list(dict(net.classifier.named_children())) == ["drop6", "fc6", "relu6", "drop7", "fc7", "relu7", "fc8"]
    assert not any(".lrn" in k for k in net.state_dict())  # no response normalisation
    assert all(m.groups == 1 for m in net.modules() if isinstance(m, torch.nn.Conv2d))  # one tower


def test_layer_output_sizes_for_a_224_input(net):
    sizes, x = {}, torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        for name, layer in net.features.named_children():
            x = layer(x)
            sizes[name] = (x.shape[1], x.shape[2])
        assert net.avgpool(x).shape == (2, 256, 6, 6)
        assert net(torch.randn(2, 3, 224, 224)).shape == (2, 1000)
    assert sizes["conv1"] == (64, 55) and sizes["pool1"] == (64, 27)
    assert sizes["conv2"] == (192, 27) and sizes["pool2"] == (192, 13)
    assert sizes["conv3"] == (384, 13) and sizes["conv4"] == (256, 13) and sizes["conv5"] == (256, 13)
    assert sizes["pool5"] == (256, 6)
    assert net.classifier.fc6.in_features == 9216


def test_dense_equals_forward_at_224_and_slides_over_larger_inputs(net):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(net.dense(x), net(x), rtol=1e-4, atol=1e-5)
        assert net.dense(torch.randn(1, 3, 288, 320)).shape == (1, 1000)
        with pytest.raises(ValueError, match="pool5 map of at least 6x6"):
            net.dense(torch.randn(1, 3, 128, 128))


def test_torchvision_weights_give_torchvisions_outputs(tmp_path):
    net = build("alexnet_owt", 1000).eval()
    torch.manual_seed(2)
    tv = torchvision.models.alexnet(weights=None).eval()
    torch.save(tv.state_dict(), tmp_path / "alexnet.pth")
    ours = from_torchvision(torch.load(tmp_path / "alexnet.pth", map_location="cpu", weights_only=True))
    assert "features.conv1.weight" in ours and "classifier.fc8.bias" in ours
    net.load_state_dict(ours)  # strict: every key matches
    x = torch.randn(2, 3, 224, 224) * 50
    with torch.no_grad():
        torch.testing.assert_close(net(x), tv(x), rtol=1e-5, atol=1e-5)
        y = torch.randn(1, 3, 256, 256) * 50  # other sizes go through the same adaptive pool
        torch.testing.assert_close(net(y), tv(y), rtol=1e-5, atol=1e-5)


def test_unknown_torchvision_key_is_refused():
    with pytest.raises(ValueError, match="features.1.weight"):
        from_torchvision({"features.1.weight": torch.zeros(1)})
