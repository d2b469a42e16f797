"""The command line for the model zoo: ilsvrc models, --model, --set,
--init-from, eval --views, export; and torchvision weights through the
registry's converters."""

import json

import pytest
import torch
import torchvision

from ilsvrc import UserError
from ilsvrc.cli import main
from ilsvrc.models import names
from ilsvrc.weights import load_torchvision, torchvision_names

from conftest import snapshot
from test_cli import FAST, user_error
from test_train import heldout_errors, unbalanced_heldout


def test_models_lists_every_model_with_its_count_and_paper(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(names())
    assert rows["vgg-d"]["parameters"] == 138_357_544 and "Simonyan" in rows["vgg-d"]["paper"]
    assert rows["resnet-50"]["parameters"] == 25_557_032 and rows["resnet-50"]["recipe"] == "resnet-imagenet"
    assert rows["resnet-20"]["classes"] == 10 and 0.26e6 < rows["resnet-20"]["parameters"] < 0.28e6
    assert rows["alexnet_owt"]["recipe"] is None
    assert main(["models"]) == 0
    assert "60,965,224" in capsys.readouterr().out


def test_train_another_model_of_a_recipe_and_set_any_value(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--recipe", "resnet-cifar", "--model", "plain-20", "--data", str(tiny_data), "--out", str(out),
            "--max-steps", "2", "--batch-size", "8", "--set", "milestones=[1]", "--set", "shortcut=A", *FAST[2:]]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())["recipe"]
    assert config["network"] == "plain-20" and config["schedule"]["milestones"] == [1]
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["lr"] == pytest.approx(0.01)  # divided at step 1


@pytest.mark.parametrize("argv, words", [
    (["--recipe", "alexnet", "--model", "resnet-20"], "does not train with recipe alexnet"),
    (["--recipe", "resnet-cifar", "--set", "nonsense=1"], "no setting nonsense"),
    (["--recipe", "resnet-cifar", "--set", "shortcut=Z"], "shortcut"),
    (["--recipe", "resnet-cifar", "--set", "crop=spiral"], "crop"),
    (["--recipe", "resnet-cifar", "--set", "kind=cosine"], "schedule kind"),
    (["--recipe", "resnet-cifar", "--set", "novalue"], "KEY=VALUE"),
    (["--recipe", "resnet-cifar", "--init-from", "x.pt"], "cannot be initialised"),
])
def test_bad_model_settings_are_one_line_errors(capsys, tiny_data, tmp_path, argv, words):
    line = user_error(capsys, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), *argv, *FAST[2:]])
    assert words in line and not (tmp_path / "run").exists()


def test_vgg_deeper_configuration_starts_from_a_trained_a(tiny_data, tmp_path, narrow):  # fc6, fc7 narrow: conftest
    common = ["--recipe", "vgg", "--data", str(tiny_data), "--max-steps", "1", "--batch-size", "4",
              "--image-size", "32", *FAST[2:]]
    assert main(["train", "--model", "vgg-a", "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["train", "--model", "vgg-b", "--out", str(tmp_path / "b"), "--init-from", str(tmp_path / "a"), *common]) == 0
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    # conv1_1 of B after its one step started from A's (a fresh N(0, 0.01) draw would differ by ~0.05)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    key = next(k for k in b if "conv1_1" in k and k.endswith("weight"))
    assert (b[key] - a[key]).abs().max() < 0.01 and key in a


def test_eval_views_and_export(capsys, tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--recipe", "resnet-cifar", "--data", str(tiny_data), "--out", str(out), "--max-steps", "2",
                 "--batch-size", "8", *FAST[2:]]) == 0
    capsys.readouterr()
    heldout = unbalanced_heldout(tiny_data, tmp_path / "heldout")  # 7 images: errors of k/7
    results = {}
    for views in ("centre", "ten-crop", "dense", "multi-crop", "144-crop"):
        assert main(["eval", str(out), "--data", str(heldout), "--views", views, "--scales", "32,40", "--json",
                     *FAST[4:]]) == 0
        results[views] = json.loads(capsys.readouterr().out)
    assert results["ten-crop"]["crops"] == 10 and results["dense"]["crops"] == 4 and results["144-crop"]["crops"] == 72
    for views, r in results.items():  # a whole number of misses over the 7 held-out images, whatever the views
        assert r["images"] == 7 and r["split"] == str(heldout / "val"), views
        assert abs(r["top1_error"] * 7 / 100 - round(r["top1_error"] * 7 / 100)) < 1e-9, (views, r["top1_error"])
    for views, crops in (("centre", 1), ("ten-crop", 10)):  # the same errors recomputed apart from evaluate.py
        mine = heldout_errors(out / "last.pt", heldout, crops=crops)
        assert (results[views]["top1_error"], results[views]["top5_error"]) == (mine["top1_error"], mine["top5_error"])
    before = snapshot(out)
    assert main(["export", str(out), str(tmp_path / "net.pt2")]) == 0
    assert snapshot(out) == before
    net = torch.export.load(str(tmp_path / "net.pt2")).module()
    probs = net(torch.rand(2, 3, 32, 32) * 255)
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(1), torch.ones(2))
    assert json.loads((tmp_path / "net.pt2.json").read_text())["classes"]
    line = user_error(capsys, ["eval", str(out), "--views", "dense", "--scales", "8", *FAST[4:]])
    assert "at least the network input size" in line


def test_every_torchvision_twin_is_known():
    assert set(torchvision_names()) == {"alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34",
                                        "resnet50", "resnet101", "resnet152", "googlenet"}


@pytest.mark.parametrize("arch, kwargs", [
    ("alexnet", {}), ("resnet18", {}), ("resnet50", {}),
    ("googlenet", dict(aux_logits=False, init_weights=True)), ("googlenet", dict(aux_logits=True, init_weights=True)),
])
def test_torchvision_weights_from_a_local_file_give_torchvisions_logits(tmp_path, arch, kwargs):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, arch)(weights=None, **kwargs).eval()
    for m in theirs.modules():  # running statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    torch.save(theirs.state_dict(), tmp_path / "w.pth")
    ours = load_torchvision(arch, tmp_path / "w.pth").eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = theirs(x)
        torch.testing.assert_close(ours(x), expected.logits if hasattr(expected, "logits") else expected,
                                   rtol=1e-4, atol=1e-4)


def test_bad_weight_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_torchvision("resnet18", tmp_path / "none.pth")
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="resnet18"):
        load_torchvision("resnet18", tmp_path / "bad.pth")
    with pytest.raises(UserError, match="no ilsvrc twin"):
        load_torchvision("mobilenet_v2", tmp_path / "bad.pth")
