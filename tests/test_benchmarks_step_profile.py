"""benchmarks/step_profile.py runs each step mode on random resident images
and reports finite figures (no timing thresholds: on the CPU there is no
GPU time to report)."""

import json
import math

import pytest

from conftest import load_benchmark


def test_each_mode_reports_its_step(tmp_path, capsys, monkeypatch):
    import ilsvrc.step

    monkeypatch.setattr(ilsvrc.step, "BACKEND", "eager")  # dynamo's graph run as traced: no C++, no AOTAutograd
    bench = load_benchmark("step_profile")
    out = tmp_path / "p.json"
    assert bench.main(["--device", "cpu", "--modes", "graph,eager", "--batch-size", "4", "--images", "16",
                       "--steps", "3", "--warmup", "2", "--profile-steps", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["mode"] for r in rows] == ["graph", "eager"]
    for r in rows:
        assert r["batch_size"] == 4 and math.isfinite(r["ms_per_step"]) and r["host_ms"] > 0
        assert r["graphs"] == 0  # CUDA graphs are a GPU's
    printed = capsys.readouterr().out
    assert "busy %" in printed and "graph / eager" in printed


def test_too_few_images_for_the_steps_is_a_usage_error(capsys):
    bench = load_benchmark("step_profile")
    with pytest.raises(SystemExit, match="fewer than"):
        bench.main(["--device", "cpu", "--modes", "eager", "--batch-size", "8", "--images", "8", "--steps", "1"])
