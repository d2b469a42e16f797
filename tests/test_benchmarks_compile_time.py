"""benchmarks/compile_time.py measures each configuration in two fresh
processes sharing one cache folder (on the CPU with aot_eager, which caches
nothing: that it runs and reports finite figures, not what it measures)."""

import json
import math

import pytest

from conftest import load_benchmark


def test_alone_and_stacked_cold_and_warm(tmp_path, capsys):
    bench = load_benchmark("compile_time")
    out = tmp_path / "c.json"
    # the smallest network with a recipe (its compilation: 36 s of CPU in the four processes, resnet-20's 61)
    assert bench.main(["--device", "cpu", "--recipe", "alexnet-fig1", "--models", "alexnet-fig1", "--copies", "1,2",
                       "--batch-size", "4", "--images", "12", "--backend", "aot_eager", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["copies"]) for r in rows] == [("alexnet-fig1", 1), ("alexnet-fig1", 2)]
    for r in rows:
        for run in ("cold", "warm"):
            assert r[run]["batch_size"] == 4 and math.isfinite(r[run]["first_s"]) and math.isfinite(r[run]["step_s"])
    assert "cold / warm" in capsys.readouterr().out


def test_a_network_the_recipe_does_not_train_is_a_usage_error(capsys):
    bench = load_benchmark("compile_time")
    with pytest.raises(SystemExit):
        bench.main(["--device", "cpu", "--models", "alexnet"])
    assert "does not train with recipe resnet-cifar" in capsys.readouterr().err
