"""benchmarks/loader.py runs every loader on a tiny generated ImageFolder and
reports a figure for each (no timing thresholds: speed lives in benchmarks/,
not in tests)."""

import json
import math

import pytest
from conftest import load_benchmark, make_images



@pytest.fixture(scope="module")
def bench():
    return load_benchmark("loader")


def _finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_loader_benchmark_reports_every_loader(bench, tmp_path, capsys):
    data = tmp_path / "data"
    make_images(data, 2, 6, size=(40, 50), seed=5, split="train")
    make_images(data, 2, 2, size=(40, 50), seed=6, split="val")
    stores = tmp_path / "stores"
    path = tmp_path / "loader.json"
    # 12 images in batches of 4: 2 warm-up + 2 timed batches run on into a second epoch
    argv = ["--data", str(data), "--batches", "2", "--batch-size", "4", "--workers", "0", "--device", "cpu",
            "--store-dir", str(stores), "--json", str(path)]
    out = bench.main(argv)
    printed = capsys.readouterr().out

    assert list(out["results"]) == list(bench.ENTRIES)
    for name, r in out["results"].items():
        for key in ("images_per_s", "seconds", "images", "batches", "ratio_to_baseline"):
            assert _finite_positive(r[key]), (name, key, r[key])
        assert r["images"] == 8 and r["batches"] == 2
        assert name in printed
    assert out["results"][bench.ENTRIES[0]]["ratio_to_baseline"] == 1.0
    assert out["ratios"] and all(_finite_positive(v) for v in out["ratios"].values())
    assert set(out["one_time"]) == {"stats_s", "pack_s", "resident_load_s"}
    assert all(_finite_positive(v) for v in out["one_time"].values())  # a fresh store dir: packed this time
    assert out["best"] in bench.ENTRIES[1:]
    assert out["train_images"] == 12 and not out["synthetic"] and not out["store_reused"]
    for word in ("date", "device", "torch", "torchvision", "cores", "images/s", str(data.resolve()), "12 images"):
        assert word in printed
    assert json.loads(path.read_text()) == json.loads(json.dumps(out))

    # the store is made once and reused
    again = bench.main(argv[:-2] + ["--epoch"])
    assert again["store_reused"] and again["one_time"]["pack_s"] is None
    assert again["store"] == out["store"]
    for r in again["results"].values():  # one whole epoch: 12 images in 3 batches
        assert r["images"] == 12 and r["batches"] == 3 and _finite_positive(r["images_per_s"])


def test_synthetic_data_when_none_is_found(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "default_data", lambda: None)
    monkeypatch.setattr(bench, "SYNTHETIC", dict(classes=2, train=3, val=1, size=224))
    out = bench.main(["--batches", "1", "--warmup", "0", "--batch-size", "2", "--workers", "0", "--device", "cpu",
                      "--store-dir", str(tmp_path / "stores")])
    assert out["synthetic"] and out["train_images"] == 6
    assert "SYNTHETIC" in capsys.readouterr().out
    assert all(_finite_positive(r["images_per_s"]) for r in out["results"].values())


def test_bad_settings_are_refused(bench, tmp_path):
    for argv in (["--batches", "0"], ["--batch-size", "0"], ["--workers", "-1"], ["--data", str(tmp_path / "nowhere")]):
        with pytest.raises(SystemExit):
            bench.parse_args(argv + ["--device", "cpu"])
