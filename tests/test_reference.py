"""benchmarks/reference/resnet_cifar.py, the independent reference trainer for
the CIFAR-10 ResNets (He et al. 2016, Sec. 4.2): it shares no code with
ilsvrc, its networks have the paper's parameter counts, option A shortcuts,
its augmentation is the paper's, it learns, it is reproducible seed for seed,
and its command line works."""

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "benchmarks" / "reference"
SCRIPT = REFERENCE / "resnet_cifar.py"


def load_reference():
    spec = importlib.util.spec_from_file_location("reference_resnet_cifar", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ref():
    return load_reference()


# -----------------------------------------------------------------------------
# It imports nothing of the project

def project_modules() -> set[str]:
    """ilsvrc and every top-level module or package under src/."""
    names = {"ilsvrc"}
    for p in (REPO / "src").iterdir():
        if p.suffix == ".py":
            names.add(p.stem)
        elif p.is_dir() and not p.name.endswith(".egg-info") and not p.name.startswith((".", "__")):
            names.add(p.name)
    return names


DYNAMIC = {"import_module", "__import__", "spec_from_file_location", "SourceFileLoader", "run_path", "run_module"}


def project_imports(source: str, forbidden: set[str]) -> list[str]:
    """What in ``source`` could reach the project's code: imports of its
    modules, relative imports out of benchmarks/reference/, imports by name
    at run time, and any use of sys.path."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:
                found.append(f"line {node.lineno}: relative import {'.' * node.level}{node.module or ''}")
            elif node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                if node.module == "sys" and any(a.name == "path" for a in node.names):
                    found.append(f"line {node.lineno}: from sys import path")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in DYNAMIC:
                found.append(f"line {node.lineno}: {name}(...)")
        elif isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
            found.append(f"line {node.lineno}: sys.path")
        found += [f"line {node.lineno}: import {n}" for n in names if n.split(".")[0] in forbidden]
    return found


@pytest.mark.parametrize("source", [
    "import ilsvrc",
    "import ilsvrc.models.resnet as r",
    "from ilsvrc import train",
    "from ilsvrc.data import x",
    "import ilsvrc_command",
    "import os\nimport torch, ilsvrc.cli",
    "def f():\n    from ilsvrc.cli import main",
    "import importlib\nm = importlib.import_module('ilsvrc')",
    "m = __import__('ilsvrc')",
    "import sys\nsys.path.insert(0, 'src')",
    "from sys import path",
    "from ... import ilsvrc",
])
def test_the_import_check_catches_project_imports(source):
    forbidden = project_modules()
    assert project_imports(source, forbidden), source


def test_the_import_check_lets_the_libraries_through():
    source = ("import os, sys, json\nimport torch\nimport torch.nn.functional as F\nimport torchvision\n"
              "from torchvision.io import ImageReadMode\nimport numpy as np\nfrom tqdm import tqdm\n"
              "from . import helpers\nsys.exit(0)\n")
    assert project_imports(source, project_modules()) == []


def test_the_reference_imports_nothing_from_the_project():
    assert {"ilsvrc", "ilsvrc_command"} <= project_modules()
    files = sorted(REFERENCE.rglob("*.py"))
    assert SCRIPT in files
    for path in files:
        found = project_imports(path.read_text(), project_modules())
        assert not found, f"{path.relative_to(REPO)}: {found}"


def test_loading_the_reference_loads_no_module_of_the_project():
    """In a fresh process (ilsvrc is installed in the environment, so an
    import of it anywhere, even indirect, would succeed and show here)."""
    code = (f"import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('reference', {str(SCRIPT)!r})\n"
            f"m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            f"m.ResNet(8)(m.test_view(m.torch.zeros(2, 3, 32, 32, dtype=m.torch.uint8), 0.5))\n"
            f"src = {str(REPO / 'src')!r}\n"
            f"print('\\n'.join(sorted(n for n, mod in list(sys.modules.items())"
            f" if n.split('.')[0] in {sorted(project_modules())!r}"
            f" or str(getattr(mod, '__file__', None) or '').startswith(src))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"modules of the project loaded: {out.stdout}"


# -----------------------------------------------------------------------------
# The networks

def expected_parameters(n: int, classes: int = 10) -> int:
    """Counted by hand from Sec. 4.2 with option A (shortcuts without
    parameters): convs without bias, BN with a weight and a bias per channel."""
    def block(cin, cout):  # two 3x3 convs and their two BNs
        return 9 * cin * cout + 9 * cout * cout + 2 * 2 * cout
    first = 9 * 3 * 16 + 2 * 16  # conv 3 -> 16, BN
    stages = (n * block(16, 16)
              + block(16, 32) + (n - 1) * block(32, 32)
              + block(32, 64) + (n - 1) * block(64, 64))
    fc = 64 * classes + classes
    return first + stages + fc


def test_the_hand_count():
    # ResNet-20: 464 + 3 * 4,672 + (13,952 + 2 * 18,560) + (55,552 + 2 * 73,984) + 650.
    # (272,474 would be option B: 1x1 projections with BN where the shape changes, 2,752 parameters more.)
    assert expected_parameters(3) == 464 + 3 * 4672 + 13952 + 2 * 18560 + 55552 + 2 * 73984 + 650 == 269_722
    assert expected_parameters(9) == 853_018


@pytest.mark.parametrize("depth, millions", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)])
def test_parameter_counts_are_table_6s(ref, depth, millions):
    n = (depth - 2) // 6
    for residual in (True, False):  # the plain twin has the same parameters: option A adds none
        model = ref.ResNet(depth, residual=residual)
        count = sum(p.numel() for p in model.parameters())
        assert count == expected_parameters(n), (depth, residual)
        assert round(count / 1e6, 2 if depth < 100 else 1) == millions
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        fcs = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        assert len(convs) + len(fcs) == depth and len(fcs) == 1  # 6n+2 weighted layers
        assert all(c.kernel_size == (3, 3) and c.bias is None for c in convs)


def test_the_stages_maps_and_filters(ref):
    """16, 32, 64 filters on 32x32, 16x16, 8x8 maps, n blocks each, the first
    block of stages 2 and 3 subsampling; 10 logits."""
    model = ref.ResNet(20).eval()
    shapes = []
    for block in model.blocks:
        block.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
    out = model(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert shapes == [(16, 32, 32)] * 3 + [(32, 16, 16)] * 3 + [(64, 8, 8)] * 3
    assert [b.conv1.stride[0] for b in model.blocks] == [1, 1, 1, 2, 1, 1, 2, 1, 1]


def test_the_plain_twin_has_no_shortcuts(ref):
    torch.manual_seed(0)
    for residual in (True, False):
        model = ref.ResNet(20, residual=residual)
        x = torch.randn(2, 16, 32, 32)
        for block in model.blocks:
            branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
            if residual:
                shortcut = x[:, :, ::2, ::2] if block.conv1.stride[0] == 2 else x
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, branch.shape[1] - x.shape[1]))
                branch = branch + shortcut
            want = F.relu(branch)
            assert torch.equal(block(x), want), (residual, block)
            x = want


def test_init_is_he_fan_in(ref):
    """std sqrt(2 / (9 c_in)) for every conv (fan_out would differ by a factor
    of 2.3 on the first conv and 1.4 on the subsampling ones); BN 1 and 0."""
    torch.manual_seed(0)
    model = ref.ResNet(56)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            w = m.weight.detach()
            ratio = (w.std() / (2 / (9 * m.in_channels)) ** 0.5).item()
            tolerance = 0.2 if w.numel() < 1000 else 0.05  # the first conv has only 432 weights
            assert abs(ratio - 1) < tolerance, (m, ratio)
            assert abs(w.mean().item()) < 0.2 * w.std().item()
        elif isinstance(m, torch.nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.bias, torch.zeros_like(m.bias))


def test_option_a_shortcut(ref):
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    block = ref.BasicBlock(16, 32, stride=2)
    want = torch.cat([x[:, :, ::2, ::2], torch.zeros(2, 16, 4, 4)], dim=1)  # every second pixel, zero channels
    assert torch.equal(block.shortcut(x), want)
    assert sum(p.numel() for p in block.shortcut.parameters()) == 0
    branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    assert torch.equal(block(x), F.relu(branch + want))
    # and in the network: the first block of stage 3 of ResNet-20
    stage3 = ref.ResNet(20).blocks[6]
    y = torch.randn(2, 32, 16, 16)
    assert torch.equal(stage3.shortcut(y), torch.cat([y[:, :, ::2, ::2], torch.zeros(2, 32, 8, 8)], dim=1))
    # elsewhere the identity
    same = ref.BasicBlock(16, 16, stride=1)
    branch = same.bn2(same.conv2(F.relu(same.bn1(same.conv1(x)))))
    assert torch.equal(same(x), F.relu(branch + x))
    # the plain twin: no shortcut
    plain = ref.BasicBlock(16, 32, stride=2, residual=False)
    branch = plain.bn2(plain.conv2(F.relu(plain.bn1(plain.conv1(x)))))
    assert torch.equal(plain(x), F.relu(branch))


# -----------------------------------------------------------------------------
# Augmentation

def test_crops_and_flips_are_windows_of_the_padded_mean_subtracted_image(ref):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=g)
    mean = ref.pixel_mean(images)
    assert mean.shape == (3, 32, 32) and mean.dtype == torch.float32
    np.testing.assert_allclose(mean.numpy(), images.numpy().astype(np.float64).mean(0) / 255, atol=1e-7)
    shifts = torch.tensor([[0, 0], [8, 8], [0, 8], [8, 0], [4, 4], [4, 4], [1, 7], [3, 2], [5, 6], [2, 2], [7, 1], [6, 3]])
    flips = torch.tensor([0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0]).bool()
    batch = ref.augment(images, mean, shifts, flips)
    assert batch.shape == (12, 3, 32, 32) and batch.dtype == torch.float32
    for i in range(12):
        padded = torch.zeros(3, 40, 40)  # zero: the mean, once subtracted
        padded[:, 4:36, 4:36] = images[i].float() / 255 - mean
        r, c = shifts[i].tolist()
        crop = padded[:, r:r + 32, c:c + 32]
        if flips[i]:
            crop = crop.flip(-1)
        assert torch.equal(batch[i], crop), i
    view = ref.test_view(images, mean)
    assert torch.equal(batch[4], view[4])  # shift 4, 4 unflipped: the image itself
    assert torch.equal(batch[5], view[5].flip(-1))
    assert (batch[0, :, :4, :] == 0).all() and (batch[1, :, :, -4:] == 0).all()  # the border
    # the test view: the image in [0, 1] less the mean
    np.testing.assert_allclose(view.numpy(), images.numpy() / 255.0 - mean.numpy(), atol=1e-6)


def test_the_draws_cover_every_crop_and_both_flips(ref):
    shifts, flips = ref.draw_augmentation(36000, torch.Generator().manual_seed(0))
    for axis in (0, 1):
        counts = torch.bincount(shifts[:, axis], minlength=9)
        assert len(counts) == 9  # offsets 0..8 in the 40x40 padded image
        assert ((counts / 36000 - 1 / 9).abs() < 0.01).all(), counts
    assert (shifts[:, 0] != shifts[:, 1]).float().mean() > 0.8  # rows and columns drawn apart
    assert abs(flips.float().mean().item() - 0.5) < 0.02


def test_epochs_are_fresh_permutations_with_the_short_batch_kept(ref):
    batches = ref.epochs(100, 40, torch.Generator().manual_seed(0))
    first, second = [next(batches) for _ in range(3)], [next(batches) for _ in range(3)]
    for epoch in (first, second):
        assert [len(index) for index, _, _ in epoch] == [40, 40, 20]
        assert all(len(s) == len(i) == len(f) for i, s, f in epoch)
        assert torch.equal(torch.cat([i for i, _, _ in epoch]).sort().values, torch.arange(100))
    assert not torch.equal(torch.cat([i for i, _, _ in first]), torch.cat([i for i, _, _ in second]))
    other = ref.epochs(100, 40, torch.Generator().manual_seed(1))
    assert not torch.equal(next(other)[0], first[0][0])  # another seed, another order


# -----------------------------------------------------------------------------
# Data

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 220), (230, 210, 40)]


def write_images(root: Path, split: str, per_class: int, seed: int, ext: str, size=(32, 32)) -> None:
    """Four classes, each a distinct colour with noise: separable at a glance."""
    rng = np.random.default_rng(seed)
    for c, colour in enumerate(COLOURS):
        folder = root / split / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.array(colour, dtype=np.float64) + rng.normal(0, 20, (*size, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.{ext}")


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    write_images(root, "train", 12, seed=0, ext="png")
    write_images(root, "test", 6, seed=1, ext="jpg")
    return root


@pytest.fixture(scope="module")
def colour_data(ref, colours):
    return ref.load_folder(colours)


def test_load_folder(ref, colours, colour_data):
    d = colour_data
    assert d["classes"] == ["class0", "class1", "class2", "class3"] and d["test_split"] == "test"
    assert d["train_images"].shape == (48, 3, 32, 32) and d["train_images"].dtype == torch.uint8
    assert d["test_images"].shape == (24, 3, 32, 32)
    assert d["train_labels"].dtype == torch.int64 and d["train_labels"].tolist() == [c for c in range(4) for _ in range(12)]
    assert d["test_labels"].tolist() == [c for c in range(4) for _ in range(6)]
    png = np.array(Image.open(colours / "train" / "class2" / "005.png").convert("RGB"))
    assert torch.equal(d["train_images"][2 * 12 + 5], torch.from_numpy(png).permute(2, 0, 1))


def test_val_is_the_held_out_split_where_there_is_no_test(ref, tmp_path):
    write_images(tmp_path, "train", 2, seed=0, ext="png")
    write_images(tmp_path, "val", 1, seed=1, ext="png")
    d = ref.load_folder(tmp_path)
    assert d["test_split"] == "val" and len(d["test_images"]) == 4
    write_images(tmp_path, "test", 2, seed=2, ext="png")  # both: test/ it is
    d = ref.load_folder(tmp_path)
    assert d["test_split"] == "test" and len(d["test_images"]) == 8


def test_an_image_not_32x32_is_named(ref, tmp_path):
    write_images(tmp_path, "train", 2, seed=0, ext="png")
    write_images(tmp_path, "test", 1, seed=1, ext="png")
    Image.new("RGB", (32, 28)).save(tmp_path / "test" / "class1" / "odd.png")
    with pytest.raises(ValueError, match=r"odd\.png.*32x28"):
        ref.load_folder(tmp_path)


def test_the_cache_is_reused_while_the_files_are_the_same(ref, tmp_path, monkeypatch):
    write_images(tmp_path, "train", 2, seed=0, ext="png")
    write_images(tmp_path, "test", 1, seed=1, ext="png")
    cache = tmp_path / "cache" / "data.pt"
    first = ref.load_folder(tmp_path, cache=cache)
    assert cache.is_file()

    def no_decoding(path):
        raise AssertionError(f"decoded {path}: the cache was not used")

    monkeypatch.setattr(ref, "decode", no_decoding)
    again = ref.load_folder(tmp_path, cache=cache)
    assert torch.equal(again["train_images"], first["train_images"]) and again["classes"] == first["classes"]
    write_images(tmp_path, "train", 3, seed=2, ext="png")  # one more image per class: another file list
    with pytest.raises(AssertionError, match="cache was not used"):
        ref.load_folder(tmp_path, cache=cache)
    monkeypatch.undo()
    assert len(ref.load_folder(tmp_path, cache=cache)["train_images"]) == 12


# -----------------------------------------------------------------------------
# Training

def test_it_learns_the_colours(ref, colour_data):
    r = ref.train(colour_data, depth=8, iterations=30, milestones=(20, 25), batch_size=16, seed=0,
                  eval_every=10, progress=False)
    assert r["iterations"] == 30 and r["epochs"] == 10.0  # 3 steps an epoch, across 10 epochs
    assert r["train_loss"] < 0.5 * r["first_loss"]  # the loss falls (from about ln 4)
    assert r["test_error"] <= 25.0  # chance is 75%; the colours need no more than a glance
    assert r["train_error"] <= 25.0
    assert [p["iteration"] for p in r["curve"]] == [10, 20, 30] and r["curve"][-1]["test_error"] == r["test_error"]
    assert r["final_lr"] == pytest.approx(0.001)  # 0.1 divided by 10 at step 20 and at 25
    for key in ("seconds", "seed", "depth", "residual", "precision", "device", "train_error"):
        assert key in r
    assert r["depth"] == 8 and r["residual"] is True and r["precision"] == "float32" and r["device"] == "cpu"
    json.dumps(r)


def test_testing_uses_the_running_statistics(ref):
    """evaluate: model.eval() (BN with its running statistics, here far from
    any batch's), in batches, and the model back in train mode after."""
    torch.manual_seed(0)
    model = ref.ResNet(8)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-2, 2)
            m.running_var.uniform_(0.2, 5)
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    mean = ref.pixel_mean(images)
    with torch.no_grad():
        in_train_mode = model(ref.test_view(images, mean)).argmax(1)  # (this moves the running statistics)
        model.eval()
        labels = model(ref.test_view(images, mean)).argmax(1)
        model.train()
    assert (in_train_mode != labels).any()  # the check below can tell the two apart
    assert ref.evaluate(model, images, labels, mean, batch_size=7) == 0.0
    assert model.training
    assert ref.evaluate(model, images, (labels + 1) % 10, mean) == 100.0


def test_same_seed_same_network_other_seed_another(ref, colour_data):
    kw = dict(depth=8, iterations=7, milestones=(4, 6), batch_size=20, progress=False, return_model=True)
    a, b, c = ref.train(colour_data, seed=0, **kw), ref.train(colour_data, seed=0, **kw), ref.train(colour_data, seed=1, **kw)
    assert a["epochs"] == (48 + 48 + 20) / 48  # 20, 20, 8 a epoch: the short batch kept
    for key in ("test_error", "train_error", "train_loss", "first_loss"):
        assert a[key] == b[key], key
    sa, sb, sc = (r.pop("model").state_dict() for r in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a["first_loss"] != c["first_loss"]


def test_plain_and_bf16_run(ref, colour_data):
    kw = dict(depth=8, iterations=3, milestones=(2, 3), batch_size=16, seed=0, progress=False)
    plain = ref.train(colour_data, residual=False, **kw)
    assert plain["residual"] is False and np.isfinite(plain["train_loss"])
    full, half = ref.train(colour_data, **kw), ref.train(colour_data, precision="bf16", **kw)
    assert half["precision"] == "bf16" and np.isfinite(half["train_loss"])
    assert half["first_loss"] != full["first_loss"]  # bfloat16 arithmetic, not float32's
    assert half["first_loss"] == pytest.approx(full["first_loss"], rel=0.05)


# -----------------------------------------------------------------------------
# Command line

def test_the_command_line(colours, tmp_path):
    out = tmp_path / "runs.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--data", str(colours), "--depth", "8", "--iterations", "6",
                          "--seeds", "0,1", "--device", "cpu", "--json", str(out), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 2, run.stdout
    for seed, line in enumerate(lines):
        assert re.fullmatch(rf"reference resnet-8 seed {seed}: test error \d+\.\d\d%, train error \d+\.\d%, "
                            rf"6 steps in \d+ s", line), line
    runs = json.loads(out.read_text())
    assert [r["seed"] for r in runs] == [0, 1]
    assert all(r["milestones"] == [3, 5] and r["iterations"] == 6 and r["depth"] == 8 for r in runs)
    assert f"test error {runs[1]['test_error']:.2f}%" in lines[1]


def test_the_default_milestones_are_the_papers(ref):
    assert ref.default_milestones(64000) == (32000, 48000)
    assert ref.default_milestones(6) == (3, 5)


@pytest.mark.parametrize("layout", ["missing", "no-train", "no-test"])
def test_bad_data_is_one_line_and_exit_2(ref, tmp_path, capsys, layout):
    root = tmp_path / "data"
    if layout != "missing":
        write_images(root, "train" if layout == "no-test" else "test", 1, seed=0, ext="png")
    with pytest.raises(SystemExit) as exit:
        ref.main(["--data", str(root), "--iterations", "1", "--device", "cpu", "--no-progress"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(root) in lines[0] and {"missing": "no such folder", "no-train": "train/",
                                      "no-test": "test/ or val/"}[layout] in lines[0]
