"""``ilsvrc export``: a torch.export program, an ONNX or a TorchScript file
that runs without ilsvrc and gives the checkpoint's outputs, with a sidecar
that says how to feed it."""

import importlib.util
import json
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

import ilsvrc.export as export_module
from ilsvrc import UserError, predict, train
from ilsvrc import checkpoint as ckpts
from ilsvrc.evaluate import model_from_checkpoint, transforms_from_checkpoint
from ilsvrc.export import export

SIZE = 64  # a small network input, so that a step and an export take seconds on the CPU
JIT_DEPRECATED = "ignore:`torch.jit.:FutureWarning"  # torch 2.14 announces TorchScript's end; it still works


pytestmark = pytest.mark.usefixtures("narrow_module")  # AlexNet's fc6 and fc7 narrow (conftest.narrow_heads)


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory, narrow_module):
    """A run directory trained for one step on the three tiny classes."""
    out = tmp_path_factory.mktemp("export") / "run"
    train("alexnet", tiny_data, out, max_steps=1, image_size=SIZE, batch_size=4, device="cpu", workers=0, progress=False)
    return out


@pytest.fixture(scope="module")
def views(run):
    """Four stored squares' centre crops, as the export takes them (0-255),
    and the probabilities the ilsvrc model gives for their test views."""
    ckpt = ckpts.load(run / "last.pt")
    model = model_from_checkpoint(ckpt).eval()
    transforms = transforms_from_checkpoint(ckpt)
    resize = ckpt["config"]["data"]["resize"]
    squares = torch.randint(0, 256, (4, 3, resize, resize), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    crops = TF.center_crop(squares, [SIZE, SIZE]).float()
    with torch.no_grad():
        expected = F.softmax(model(torch.cat([transforms.test(s) for s in squares])), dim=1)
    return crops, expected


def no_temporary_files(folder):
    return not list(folder.glob(".*.tmp"))


@pytest.mark.filterwarnings(JIT_DEPRECATED)
def test_torchscript_reloads_and_gives_the_same_outputs(run, views, tmp_path):
    path = export(run / "last.pt", tmp_path / "alexnet.pt", format="torchscript")
    assert path == tmp_path / "alexnet.pt" and no_temporary_files(tmp_path)
    loaded = torch.jit.load(str(path))
    crops, expected = views
    with torch.no_grad():
        torch.testing.assert_close(loaded(crops), expected, rtol=1e-4, atol=1e-6)
        # the batch size is free
        torch.testing.assert_close(loaded(crops[:1]), expected[:1], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(loaded(crops[:3]), expected[:3], rtol=1e-4, atol=1e-6)
    info = json.loads((tmp_path / "alexnet.pt.json").read_text())
    assert info["format"] == "torchscript" and info["model"] == "alexnet.pt" and info["network"] == "alexnet"
    assert info["classes"] == ["class0", "class1", "class2"]
    assert info["input"]["shape"] == ["batch", 3, SIZE, SIZE] and info["input"]["range"] == [0, 255]
    assert info["preprocess"]["image_size"] == SIZE and info["preprocess"]["resize"] == 73
    assert info["mean"]["kind"] == "image" and info["mean"]["subtracted"] == "inside the model"
    assert info["output"]["name"] == "probabilities" and info["output"]["shape"] == ["batch", 3]


def test_pt2_loads_without_ilsvrc_and_gives_the_same_outputs(run, views, tmp_path):
    """The default format: torch.export.load in a fresh Python that never imports ilsvrc."""
    path = export(run / "last.pt", tmp_path / "alexnet.pt2")
    assert json.loads((tmp_path / "alexnet.pt2.json").read_text())["format"] == "pt2" and no_temporary_files(tmp_path)
    crops, expected = views
    torch.save(crops, tmp_path / "crops.pt")
    script = (
        "import sys, torch\n"
        f"net = torch.export.load({str(path)!r}).module()\n"
        f"crops = torch.load({str(tmp_path / 'crops.pt')!r})\n"
        "with torch.no_grad():\n"
        f"    torch.save([net(crops), net(crops[:3])], {str(tmp_path / 'out.pt')!r})\n"
        "assert not any(m == 'ilsvrc' or m.startswith('ilsvrc.') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    full, three = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(full, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(three, expected[:3], rtol=1e-4, atol=1e-6)  # the batch size is free


def test_the_sidecars_recipe_on_an_image_file_gives_what_ilsvrc_predict_gives(run, tiny_data, tmp_path):
    """A user with torch and torchvision only, following the sidecar, gets
    the probabilities that ``ilsvrc predict`` prints."""
    path = export(run, tmp_path / "model.pt2")  # a run directory: its best checkpoint
    info = json.loads((tmp_path / "model.pt2.json").read_text())
    image = sorted((tiny_data / "val" / "class1").iterdir())[0]
    p = info["preprocess"]
    x = decode_image(str(image), mode=ImageReadMode.RGB)
    x = TF.resize(x, [p["resize"]], antialias=True)
    x = TF.center_crop(x, [p["resize"]] * 2)
    x = TF.center_crop(x, [p["image_size"]] * 2).float().unsqueeze(0)
    with torch.no_grad():
        probs = torch.export.load(str(path)).module()(x)[0]
    ours = predict(run, [image], top=len(info["classes"]), device="cpu")[0]["top"]
    for row in ours:
        assert probs[info["classes"].index(row["class"])].item() == pytest.approx(row["probability"], rel=1e-4, abs=1e-6)


def test_onnx_runs_in_onnxruntime_and_gives_the_same_outputs(run, views, tmp_path):
    for package in ("onnx", "onnxscript", "onnxruntime"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed (pip install 'ilsvrc[export]'): ONNX export and its check need it")
    import onnxruntime

    path = export(run / "last.pt", tmp_path / "alexnet.onnx", format="onnx")
    assert no_temporary_files(tmp_path) and not list(tmp_path.glob("*.data"))  # one self-contained file
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    crops, expected = views
    for n in (len(crops), 1):  # the batch size is free
        (probs,) = session.run(None, {"images": crops[:n].numpy()})
        torch.testing.assert_close(torch.from_numpy(probs), expected[:n], rtol=1e-4, atol=1e-6)
    info = json.loads((tmp_path / "alexnet.onnx.json").read_text())
    assert info["format"] == "onnx" and info["model"] == "alexnet.onnx"


def test_missing_onnx_packages_are_a_user_error_naming_the_install(run, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "ONNX_PACKAGES", ("onnx", "no_such_onnx_package"))
    with pytest.raises(UserError, match=r"no_such_onnx_package.*pip install"):
        export(run / "last.pt", tmp_path / "m.onnx", format="onnx")
    assert not list(tmp_path.iterdir())


def test_user_errors_are_one_line(run, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    cases = [
        ((run / "last.pt", tmp_path / "m.bin", "tflite"), "unknown export format"),
        ((run / "last.pt", tmp_path / "missing" / "m.pt", "torchscript"), "does not exist"),
        ((run / "last.pt", tmp_path, "torchscript"), "is a folder"),
        ((garbage, tmp_path / "m.pt", "torchscript"), "not a readable checkpoint"),
        ((tmp_path / "nothing.pt", tmp_path / "m.pt", "torchscript"), "does not exist"),
    ]
    for (checkpoint, out, fmt), message in cases:
        with pytest.raises(UserError, match=message) as err:
            export(checkpoint, out, format=fmt)
        assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.pt"]  # nothing written
