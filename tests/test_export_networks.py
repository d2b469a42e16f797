"""``ilsvrc export`` beyond AlexNet (tests/test_export.py): for VGG (the mean
RGB, and a test scale Q other than the stored square), GoogLeNet (the mean
RGB, auxiliary heads dropped at inference), the CIFAR ResNet (batch norm)
and NIN (global average pooling), a user who follows the sidecar's steps on
an image file gets from the exported program the probabilities that
``ilsvrc predict`` gives."""

import json

import pytest
import torch
from torch import nn
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from ilsvrc import predict, train
from ilsvrc.data.images import decode_rgb, rescale
from ilsvrc.evaluate import model_from_checkpoint, transforms_from_checkpoint
from ilsvrc.export import export

NETWORKS = [  # (recipe, model, network input S, the mean the recipe subtracts)
    ("vgg", "vgg-a", 32, "channel"),  # stored at 73, tested at Q = 55 (the recipe's 512 and 384, scaled)
    ("googlenet", None, 64, "channel"),
    ("resnet-cifar", "resnet-20", 32, "image"),
    ("nin-cifar", None, 32, "image"),
]


def spread_outputs(path, images: list) -> None:
    """Rescale the class-score layers of checkpoint ``path`` (weights and
    biases, by one positive factor: the same network up to a softmax
    temperature) so that its scores for ``images`` spread over about 4: after
    one step of training they are all but equal (VGG's N(0, 0.01) start: every
    probability within 1e-3 of 1/3) or saturated (ResNet's batch-norm
    statistics of one step: probabilities 1 and 0), where a wrong mean or
    rescale would hardly change a probability."""
    ckpt = torch.load(path, weights_only=True)
    classes = len(ckpt["classes"])
    model, transforms = model_from_checkpoint(ckpt).eval(), transforms_from_checkpoint(ckpt)
    heads = [name for name, m in model.named_modules()
             if (isinstance(m, nn.Linear) and m.out_features == classes) or (isinstance(m, nn.Conv2d) and m.out_channels == classes)]
    views = torch.stack([transforms.test(rescale(decode_rgb(str(i)), transforms.stats.size), 1)[0] for i in images])
    with torch.no_grad():
        scores = model(views)
    factor = 2.0 / float((scores - scores.mean(1, keepdim=True)).abs().max())
    for name in heads:
        for kind in ("weight", "bias"):
            ckpt["model"][f"{name}.{kind}"] *= factor
    torch.save(ckpt, path)


def sidecar_view(image, p: dict) -> torch.Tensor:
    """(1, 3, S, S) float32, 0-255: the image prepared as the sidecar's steps say.
    The rescale to ``test_resize`` is done on float values, as ilsvrc does it
    (after the mean, which the rescale commutes with); done on uint8 values it
    would round each pixel to a whole number first."""
    x = decode_image(str(image), mode=ImageReadMode.RGB)
    x = TF.resize(x, [p["resize"]], antialias=True)
    x = TF.center_crop(x, [p["resize"]] * 2).float()
    if p["test_resize"] != p["resize"]:
        x = TF.resize(x, [p["test_resize"]] * 2, antialias=True)
    return TF.center_crop(x, [p["image_size"]] * 2).unsqueeze(0)


@pytest.mark.parametrize("recipe, model, size, mean", NETWORKS, ids=[n[1] or n[0] for n in NETWORKS])
def test_the_exported_network_gives_predicts_probabilities(recipe, model, size, mean, tiny_data, tmp_path, narrow):
    run = tmp_path / "run"
    train(recipe, tiny_data, run, model=model, max_steps=1, batch_size=4, image_size=size, device="cpu", workers=0,
          progress=False)
    images = [sorted((tiny_data / "val" / f"class{c}").iterdir())[0] for c in range(3)]
    checkpoint = run / "last.pt"
    spread_outputs(checkpoint, images)
    path = export(checkpoint, tmp_path / "model.pt2")
    info = json.loads((tmp_path / "model.pt2.json").read_text())
    p = info["preprocess"]
    assert info["mean"]["kind"] == mean and p["image_size"] == size
    if recipe == "vgg":
        assert (p["resize"], p["test_resize"]) == (73, 55)
        assert "rescale the square to 55x55 (bilinear, antialiased)" in p["steps"]
    else:
        assert p["test_resize"] == p["resize"] and not any("rescale the square" in s for s in p["steps"])
    net = torch.export.load(str(path)).module()
    with torch.no_grad():
        got = net(torch.cat([sidecar_view(image, p) for image in images]))
    assert got.shape == (3, 3)
    for image, probs in zip(images, got):
        ours = predict(checkpoint, [image], top=3, device="cpu")[0]["top"]
        assert 0.01 < min(row["probability"] for row in ours)  # spread: no probability all but 0 or 1
        for row in ours:
            assert probs[info["classes"].index(row["class"])].item() == pytest.approx(row["probability"], rel=1e-4, abs=1e-6)
