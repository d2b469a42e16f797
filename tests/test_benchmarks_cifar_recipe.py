"""benchmarks/cifar_recipe.py runs both loops end to end on a tiny generated
32x32 dataset and reports finite figures for each (no timing thresholds)."""

import json
import math

import pytest

from conftest import load_benchmark, make_images


@pytest.fixture(scope="module")
def cifar_like(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar-like")
    make_images(root, 3, 12, size=(32, 32), seed=7, split="train")
    make_images(root, 3, 4, size=(32, 32), seed=8, split="test")
    return root


def test_both_loops_run_the_recipe_and_report(cifar_like, tmp_path, capsys):
    bench = load_benchmark("cifar_recipe")
    out = tmp_path / "r.json"
    assert bench.main(["--data", str(cifar_like), "--iterations", "4", "--device", "cpu", "--workers", "0",
                       "--no-progress", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["schedule"] == {"iterations": 4, "milestones": [2, 3]}  # 32k and 48k of 64k, kept in place
    for side in ("stock", "ilsvrc"):
        assert r[side]["steps"] == 4
        assert math.isfinite(r[side]["images_per_s"]) and r[side]["images_per_s"] > 0
        assert 0 <= r[side]["test_error"] <= 100 and r[side]["wall_s"] > 0
    assert r["ratios"]["images_per_s"] > 0
    o = r["ilsvrc"]  # where the wall time went: the steps and the validations are parts of it
    assert 0 < o["steps_s"] and 0 < o["validation_s"] and o["steps_s"] + o["validation_s"] < o["wall_s"]
    printed = capsys.readouterr().out
    assert "ilsvrc / stock" in printed and "test error" in printed and "+ validation" in printed


def test_without_data_it_says_what_to_pass(monkeypatch, tmp_path, capsys):
    bench = load_benchmark("cifar_recipe")
    monkeypatch.setattr(bench, "default_data", lambda dataset: None)
    with pytest.raises(SystemExit) as e:
        bench.main(["--device", "cpu"])
    assert e.value.code == 2 and "--data" in capsys.readouterr().err


def test_from_a_packed_store_the_stock_loop_reads_its_files_and_can_be_shorter(cifar_like, tmp_path, capsys):
    """The store is what travels to a GPU machine: both loops read it, and
    --stock-iterations shortens the tutorial loop alone (its rate is still a
    rate; the wall-time ratio is left out)."""
    from ilsvrc.data.store import pack

    store = tmp_path / "store"
    pack(cifar_like, store, size=32, encoding="jpeg", workers=0, progress=False)
    bench = load_benchmark("cifar_recipe")
    out = tmp_path / "r.json"
    assert bench.main(["--data", str(store), "--iterations", "4", "--stock-iterations", "2", "--device", "cpu",
                       "--workers", "0", "--no-progress", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["stock"]["steps"] == 2 and r["ilsvrc"]["steps"] == 4
    assert 0 <= r["stock"]["test_error"] <= 100 and r["stock"]["images_per_s"] > 0
    assert set(r["ratios"]) == {"images_per_s"}
    assert "less wall time" not in capsys.readouterr().out
