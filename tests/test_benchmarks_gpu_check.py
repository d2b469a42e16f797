"""benchmarks/gpu_check.py: the one-command GPU check runs its sections
under their limits and writes one summary (on the CPU, at tiny sizes)."""

import argparse
import json
import math
import sys

import pytest

from conftest import load_benchmark


def test_help_and_list(capsys):
    bench = load_benchmark("gpu_check")
    with pytest.raises(SystemExit) as e:
        bench.main(["--help"])
    assert e.value.code == 0 and "--smoke" in capsys.readouterr().out
    assert bench.main(["unused", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in ("lrn_kernel", "alexnet_step", "together", "cifar_recipe", "resnet_cifar_paper"):
        assert name in listed


def test_smoke_run_writes_the_summary_and_json(tmp_path):
    """Its one section is benchmarks/together.py at tiny sizes: its figures
    come back in the summary (on the CPU only that they are figures)."""
    bench = load_benchmark("gpu_check")
    assert bench.main([str(tmp_path), "--smoke"]) == 0
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    machine, together = summary["sections"]
    assert machine["name"] == "machine" and machine["result"]["torch"]
    assert together["name"] == "together" and together["status"] == "ok", together
    result = together["result"]  # the section's own JSON, gathered
    assert result["models"] == ["alexnet-fig1", "alexnet-fig1"]  # two seeds
    for way in ("alone", "together", "stacked"):
        assert math.isfinite(result["ways"][way]["images_per_s"])
        if way != "alone":
            assert math.isclose(result["ratios"][way], result["ways"]["alone"]["seconds"] / result["ways"][way]["seconds"])
    assert result["ways"]["stacked"]["stacks"] == ["alexnet-fig1+alexnet-fig1"]
    md = (tmp_path / "summary.md").read_text()
    assert "| together | ok |" in md and "together / one after another" in md and "stacked / one after another" in md


def test_a_slow_section_is_cut_and_the_next_still_runs(tmp_path):
    bench = load_benchmark("gpu_check")

    def section(name, code, limit=20, needs=None):
        return {"name": name, "limit": limit, "argv": [sys.executable, "-c", code], "json": tmp_path / f"{name}.json",
                "needs": needs, "default": True, "env": {}}

    summary = bench.check([section("slow", "import time; print('started', flush=True); time.sleep(60)", limit=2),
                           section("absent", "print('never')", needs=tmp_path / "no-such-data"),
                           section("next", "print('done')")], tmp_path, budget=60)
    status = {s["name"]: s["status"] for s in summary["sections"]}
    assert status["slow"] == "timed out" and status["next"] == "ok" and status["absent"].startswith("skipped")
    assert "started" in (tmp_path / "log").read_text()


def test_the_fidelity_section_comes_first_and_asks_fidelity_py_for_the_papers_run(tmp_path):
    """Five seeds of the reference and of ilsvrc's GPU step at 64k steps, its
    runs outside OUT (a call brings back at most 8 files), its figures in OUT."""
    bench = load_benchmark("gpu_check")
    fidelity = load_benchmark("fidelity")
    first = bench.sections(argparse.Namespace(out=str(tmp_path), smoke=False, cifar=".gpu/cifar10-32",
                                              imagenette_folder="x"))[0]
    assert first["name"] == "fidelity" and first["default"] and first["limit"] <= 540
    a = fidelity.parser().parse_args(first["argv"][2:])
    assert (a.iterations, a.seeds, a.variants, a.device) == (64000, 5, "reference-bf16,graph-bf16", "cuda")
    assert not a.out.is_relative_to(tmp_path) and a.json == str(tmp_path / "fidelity.json")
