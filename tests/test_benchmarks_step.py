"""benchmarks/step.py runs and reports a figure for every network (no timing
thresholds: speed lives in benchmarks/, not in tests)."""

import json
import math

import pytest

from conftest import load_benchmark



@pytest.fixture(scope="module")
def step():
    return load_benchmark("step")


def test_step_benchmark_reports_every_network(step, tmp_path, capsys):
    path = tmp_path / "step.json"
    argv = ["--device", "cpu", "--batch-size", "2", "--image-size", "64", "--steps", "1", "--warmup", "1",
            "--repeats", "2", "--no-compile", "--reference-lrn", "--json", str(path)]
    out = step.main(argv)
    printed = capsys.readouterr().out

    names = ["ilsvrc eager", "ilsvrc, reference LRN eager", "stock eager", "torchvision eager"]
    assert list(out["results"]) == names
    for name in names:
        r = out["results"][name]
        for key in ("images_per_s", "ms_per_step"):
            assert math.isfinite(r[key]) and r[key] > 0, (name, key, r[key])
        assert len(r["ms_per_step_runs"]) == 2
        assert name in printed
    assert set(out["ratios"]) == {"ilsvrc eager / stock eager", "ilsvrc eager / torchvision eager"}
    assert all(math.isfinite(v) and v > 0 for v in out["ratios"].values())
    for word in ("date", "device", "torch", "torchvision", "images/s", "ms/step"):
        assert word in printed
    assert json.loads(path.read_text()) == json.loads(json.dumps(out))
    assert out["batch_size"] == 2 and out["image_size"] == 64 and out["compile_mode"] is None


def test_compiled_entries_are_listed_unless_no_compile(step):
    names = [name for name, _, _ in step.entries(step.parse_args(["--device", "cpu"]))]
    assert names == ["ilsvrc eager", "ilsvrc compiled", "stock eager", "stock compiled",
                     "torchvision eager", "torchvision compiled"]
    assert [n for n, _, c in step.entries(step.parse_args(["--device", "cpu", "--no-compile"]))] == \
        ["ilsvrc eager", "stock eager", "torchvision eager"]


def test_variants_show_each_gain_on_its_own(step):
    names = [n for n, _, _ in step.entries(step.parse_args(["--device", "cpu", "--variants"]))]
    assert names[:4] == ["ilsvrc eager", "ilsvrc compiled", "ilsvrc compiled, towers as groups",
                         "ilsvrc compiled, LRN kernel"]
    groups = step.ilsvrc_alexnet(64, tower_layout="groups")
    assert groups.features.conv2.groups == 2 and step.ilsvrc_alexnet(64).features.tower_layout == "halves"


def test_stock_network_has_the_papers_layers(step):
    """The stock rewrite is the same network: the paper's parameter count
    (Sec. 3.5) and the same output shape as ilsvrc's."""
    import torch

    stock = step.stock_alexnet(1000, 224)
    assert sum(p.numel() for p in stock.parameters()) == 60_965_224
    ours = step.ilsvrc_alexnet(224)
    assert sum(p.numel() for p in ours.parameters()) == 60_965_224
    lrns = [m for m in stock.modules() if isinstance(m, torch.nn.LocalResponseNorm)]
    assert [(m.size, m.alpha, m.beta, m.k) for m in lrns] == [(5, 5e-4, 0.75, 2.0)] * 2
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert stock.eval()(x).shape == ours.eval()(x).shape == (1, 1000)


def test_bad_settings_are_refused(step):
    with pytest.raises(SystemExit):
        step.parse_args(["--device", "cpu", "--image-size", "32"])
    with pytest.raises(SystemExit):
        step.parse_args(["--device", "cpu", "--steps", "0"])


def test_the_whole_step_entry_runs(step, monkeypatch):
    """--whole-step times the step as ilsvrc train runs it on a GPU (here
    traced by dynamo and run as traced, the same graph without C++ to compile)."""
    import ilsvrc.step

    monkeypatch.setattr(ilsvrc.step, "BACKEND", "eager")
    args = ["--device", "cpu", "--batch-size", "2", "--image-size", "64", "--steps", "1", "--warmup", "1",
            "--repeats", "1", "--whole-step"]
    listed = step.entries(step.parse_args(args))
    assert [n for n, _, _ in listed][:3] == ["ilsvrc eager", "ilsvrc compiled", "ilsvrc whole step"]
    entries = step.entries
    monkeypatch.setattr(step, "entries", lambda a: [e for e in entries(a) if e[0] in ("ilsvrc whole step", "stock eager")])
    out = step.main(args)
    r = out["results"]["ilsvrc whole step"]
    assert math.isfinite(r["ms_per_step"]) and r["ms_per_step"] > 0
