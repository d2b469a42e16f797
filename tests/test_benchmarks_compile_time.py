"""benchmarks/compile_time.py measures each configuration in two fresh
processes sharing one cache folder: the table and JSON from stand-in
measurements (their arithmetic and order), and one real child process (on
the CPU with aot_eager, which caches nothing: that it measures a stacked
step and reports it, not what it measures). A real run of the whole
command compiled four times: 36-42 s of the suite, for nothing the two
parts do not check."""

import argparse
import json
import math
from pathlib import Path

import pytest

from conftest import load_benchmark


def test_each_configuration_runs_cold_then_warm_on_one_cache_and_the_table_is_their_ratio(tmp_path, capsys, monkeypatch):
    bench = load_benchmark("compile_time")
    calls = []

    def child(a, name, copies, cache):
        calls.append((name, copies, cache, Path(cache).is_dir()))
        first = 10.0 * copies if len([c for c in calls if c[:2] == (name, copies)]) == 1 else 2.5  # cold, then warm
        return {"first_s": first, "step_s": 0.004 * copies, "batch_size": 4}

    monkeypatch.setattr(bench, "child", child)
    out = tmp_path / "c.json"
    assert bench.main(["--device", "cpu", "--models", "resnet-20,resnet-56", "--copies", "1,3", "--json", str(out)]) == 0
    assert [c[:2] for c in calls] == [("resnet-20", 1)] * 2 + [("resnet-20", 3)] * 2 + [("resnet-56", 1)] * 2 + [("resnet-56", 3)] * 2
    caches = [c[2] for c in calls]
    assert all(c[3] for c in calls)  # a folder that exists while both processes run
    assert caches[0::2] == caches[1::2] and len(set(caches)) == 4  # warm shares cold's cache; each configuration its own
    assert not any(Path(c).exists() for c in caches)  # removed afterwards
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["copies"], r["cold"]["first_s"], r["warm"]["first_s"]) for r in rows] == [
        ("resnet-20", 1, 10.0, 2.5), ("resnet-20", 3, 30.0, 2.5), ("resnet-56", 1, 10.0, 2.5), ("resnet-56", 3, 30.0, 2.5)]
    table = capsys.readouterr().out.splitlines()
    assert table[-1].split() == ["resnet-56", "3", "30.0", "2.5", "12.0x", "12.0"]  # cold / warm, the warm step in ms


def test_a_child_process_measures_a_stacked_step(tmp_path):
    """Two seeds of the smallest network with a recipe, stacked, in a fresh
    process: its line of figures comes back."""
    bench = load_benchmark("compile_time")
    a = argparse.Namespace(recipe="alexnet-fig1", images=12, classes=10, device="cpu", batch_size=4, backend="aot_eager")
    got = bench.child(a, "alexnet-fig1", 2, str(tmp_path))
    assert got["batch_size"] == 4 and set(got) == {"first_s", "step_s", "batch_size"}
    assert all(math.isfinite(got[k]) for k in ("first_s", "step_s"))  # times: their size is the machine's, never asserted


def test_a_network_the_recipe_does_not_train_is_a_usage_error(capsys):
    bench = load_benchmark("compile_time")
    with pytest.raises(SystemExit):
        bench.main(["--device", "cpu", "--models", "alexnet"])
    assert "does not train with recipe resnet-cifar" in capsys.readouterr().err
