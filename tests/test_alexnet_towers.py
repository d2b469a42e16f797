"""AlexNet's two towers computed as two halves (``tower_layout="halves"``, the
default) against the grouped network (``"groups"``): the same state dict,
the same numbers, and each tower's maps a tensor of their own."""

import pytest
import torch

from ilsvrc.models import paper_variant
from ilsvrc.models.alexnet import AlexNet, alexnet

# Tolerance of the float32 comparison. Both layouts compute every output and
# gradient from the same products: a tower's conv2 is the grouped conv2's
# group, a tower's conv3 is its block of conv3's kernels on both towers' maps
# joined, fc6 sees pool5's values in the same order. What differs is the
# order in which the convolution kernels add the products up (a grouped and
# a plain convolution are blocked differently), and float32 rounds every
# partial sum (unit roundoff u = 2**-24, about 6e-8). Rounding errors that
# add up as a random walk leave a sum of n terms about sqrt(n) * u off,
# relative to the size of its values; n is at most about 10^4 here (conv3:
# 256 * 3 * 3 = 2304 products per output, fc6: 9216 inputs, the weight
# gradients: batch x positions), so about 100 * u = 6e-6, and 1e-5 covers it
# (measured on the CPU: at most 2e-6). That error is set by the size of the
# values summed, not by the sum: an element where they cancel to near zero is
# as far off as its large neighbours. So the tolerance is relative to each
# tensor's largest magnitude, not to each element.
# The towers end at pool5: fc6 and fc7 are built narrow (conftest.narrow_heads), the same for both layouts;
# at SIZE they would be 26M of the network's 29M parameters, drawn, run and differentiated twice a case.
pytestmark = pytest.mark.usefixtures("narrow")

RTOL = 1e-5
# Under bf16 autocast each layer's output is rounded to 8 bits of mantissa
# (a step of 2**-8 = 4e-3 relative): a float32 difference of one unit in the
# last place can move a value across a bf16 rounding boundary, and that step
# then propagates through the remaining layers; a few steps of 4e-3 is what
# the comparison allows (measured on the CPU: no difference at all; a GPU's
# kernels for the two layouts may differ more).
RTOL_BF16 = 3e-2

VARIANTS = [{}, {"lrn": False}, {"pool": "2/2"}, {"remove_conv": "conv3"}, {"remove_conv": "conv4"},
            {"remove_conv": "conv5"}, {"activation": "tanh"}, {"towers": 1}]
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
CLASSES = 10
# Inputs of 128x128 give pool5 maps of 3x3 (6x6 at 224), enough to check that
# fc6 sees pool5's values in the grouped network's order, with a smaller fc6
# (without conv5, pool5 goes too, and at 224 fc6 has 266M weights).
SIZE = 128


def network(tower_layout: str, memory_format=torch.contiguous_format, **variant) -> AlexNet:
    """The paper's AlexNet for inputs of SIZE with ``variant``'s changes, in ``tower_layout``."""
    torch.manual_seed(0)
    settings = dict(paper_variant("alexnet"), **variant)
    return alexnet(CLASSES, image_size=SIZE, **settings, tower_layout=tower_layout).to(memory_format=memory_format)


def both_layouts(memory_format=torch.contiguous_format, **variant) -> tuple[AlexNet, AlexNet]:
    """The halves network, and the grouped network with the halves network's state dict."""
    halves = network("halves", memory_format, **variant)
    groups = network("groups", memory_format, **variant)
    groups.load_state_dict(halves.state_dict())
    return halves, groups


def outputs_and_gradients(model: AlexNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Logits of ``x`` in training mode (dropout drawn from seed 1), and the
    gradients of a loss of them with respect to the input and every parameter."""
    x = x.clone().requires_grad_()
    torch.manual_seed(1)
    logits = model.train()(x)
    logits.log_softmax(1)[:, 0].sum().backward()
    return {"logits": logits.detach(), "input": x.grad, **{n: p.grad for n, p in model.named_parameters()}}


def assert_same_numbers(ours: torch.Tensor, reference: torch.Tensor, rtol: float, what: str) -> None:
    """Equal within ``rtol`` of the reference tensor's largest magnitude (see RTOL)."""
    assert ours.shape == reference.shape and ours.dtype == reference.dtype, what
    off, scale = (ours - reference).abs().max().item(), reference.abs().max().item()
    assert off <= rtol * scale, f"{what}: {off:.3g} off, {off / scale:.3g} of its largest value {scale:.3g}"


def test_the_state_dict_is_the_grouped_networks():
    halves, groups = network("halves"), network("groups")
    assert {k: v.shape for k, v in halves.state_dict().items()} == {k: v.shape for k, v in groups.state_dict().items()}
    assert halves.state_dict()["features.conv2.weight"].shape == (256, 48, 5, 5)  # as a groups=2 convolution's
    assert halves.state_dict()["features.conv3.weight"].shape == (384, 256, 3, 3)
    halves.load_state_dict(groups.state_dict())  # a checkpoint of either loads into the other


@pytest.mark.parametrize("memory_format", FORMATS.values(), ids=FORMATS)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={v}" for k, v in v.items()) or "paper")
def test_halves_give_the_grouped_networks_outputs_and_gradients(variant, memory_format):
    halves, groups = both_layouts(memory_format, **variant)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2)).to(memory_format=memory_format)
    ours, reference = outputs_and_gradients(halves, x), outputs_and_gradients(groups, x)
    assert ours.keys() == reference.keys()
    for name in reference:
        if variant.get("towers") == 1:  # one tower: the same layers run the same way
            assert torch.equal(ours[name], reference[name]), name
        else:
            assert_same_numbers(ours[name], reference[name], RTOL, name)


def test_fc7_code_and_dense_evaluation_are_the_grouped_networks():
    halves, groups = (m.eval() for m in both_layouts())
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    big = torch.randn(1, 3, SIZE + 32, SIZE + 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert_same_numbers(halves.forward_features(x), groups.forward_features(x), RTOL, "fc7")
        assert_same_numbers(halves.dense(big), groups.dense(big), RTOL, "dense")
        assert_same_numbers(halves.dense(x), halves(x), RTOL, "dense at the training size")


@pytest.mark.parametrize("memory_format", FORMATS.values(), ids=FORMATS)
def test_each_towers_maps_are_a_tensor_of_their_own(memory_format):
    """From conv1 to pool5 every layer after a convolution runs once per
    tower, on that tower's half of the channels, a dense tensor in the
    input's memory format; pool5's halves are joined for fc6."""
    model = network("halves", memory_format).eval()
    seen: dict[str, list[torch.Tensor]] = {}
    for name, layer in model.features.named_children():
        if not name.startswith("conv"):
            layer.register_forward_hook(lambda layer, args, out, name=name: seen.setdefault(name, []).append(out))
    x = torch.randn(2, 3, SIZE, SIZE).to(memory_format=memory_format)
    with torch.no_grad():
        joined = model.features(x)
    assert list(seen) == ["act1", "lrn1", "pool1", "act2", "lrn2", "pool2", "act3", "act4", "act5", "pool5"]
    channels = {"1": 96, "2": 256, "3": 384, "4": 384, "5": 256}  # both towers together (Sec. 3.5)
    for name, halves in seen.items():
        assert [h.shape[1] for h in halves] == [channels[name[-1]] // 2] * 2, name
        assert all(h.is_contiguous(memory_format=memory_format) for h in halves), name
    assert joined.shape == (2, 256, 3, 3) and joined.is_contiguous(memory_format=memory_format)
    assert torch.equal(joined, torch.cat(seen["pool5"], 1))  # tower 1's channels first, as the grouped network's


def test_bf16_autocast_channels_last_gives_the_grouped_networks_logits():
    """The GPU's setting (bf16 autocast, channels_last), on the CPU."""
    halves, groups = (m.eval() for m in both_layouts(torch.channels_last))
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5)).to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ours, reference = halves(x), groups(x)
    assert ours.dtype == reference.dtype == torch.bfloat16
    assert_same_numbers(ours.float(), reference.float(), RTOL_BF16, "bf16 logits")


def test_an_unknown_tower_layout_is_refused():
    with pytest.raises(ValueError, match="tower_layout"):
        network("stacked")
