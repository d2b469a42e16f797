"""benchmarks/epoch.py and benchmarks/time_to_accuracy.py run end to end on a
tiny generated dataset and report finite figures (no timing thresholds:
speed lives in benchmarks/, not in tests)."""

import json
import math
from pathlib import Path

import pytest

from conftest import load_benchmark, make_images
from test_train import heldout_errors


@pytest.fixture(scope="module")
def epoch():
    return load_benchmark("epoch")


@pytest.fixture(scope="module")
def tta():
    return load_benchmark("time_to_accuracy")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Three classes of 40x50 JPEGs: 8 train images each; 4, 2 and 1 val
    images, so that the val errors are k/7 (of a network that answers one
    class for every image, as a few steps give: 3/7, 5/7 or 6/7), none of
    them a balanced split's but 0 and 100."""
    root = tmp_path_factory.mktemp("bench-epoch-data")
    make_images(root, 3, 8, size=(40, 50), seed=5, split="train")
    make_images(root, 3, 4, size=(40, 50), seed=6, split="val")
    for c, keep in ((1, 2), (2, 1)):
        for image in sorted((root / "val" / f"class{c}").iterdir())[keep:]:
            image.unlink()
    return root


def recomputed_errors(bench, monkeypatch) -> list[dict]:
    """The val errors of each run's last.pt, recomputed (``heldout_errors``)
    on the data the run read as the run ends, before the benchmark removes
    its temporary run folder."""
    kept, train = [], bench.ilsvrc.train

    def keep_errors(recipe, data, out, **kwargs):
        row = train(recipe, data, out, **kwargs)
        kept.append(heldout_errors(Path(out) / "last.pt", data))
        return row

    monkeypatch.setattr(bench.ilsvrc, "train", keep_errors)
    return kept


def _timed(value) -> bool:
    """A time or a rate as the JSON holds it: a finite number. Its size is the
    machine's, never asserted (no assertion about wall-clock time in the suite)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


# The tests that train take AlexNet's recipe with its fc6 and fc7 narrow (``narrow``, conftest.narrow_heads)
TINY = ["--device", "cpu", "--image-size", "64", "--batch-size", "4", "--no-compile", "--workers", "0"]


def test_epoch_benchmark_reports_every_source(epoch, data, tmp_path, capsys, monkeypatch, narrow):
    path, stores = tmp_path / "epoch.json", tmp_path / "stores"
    kept = recomputed_errors(epoch, monkeypatch)
    out = epoch.main(["--data", str(data), *TINY, "--max-steps", "2", "--store-dir", str(stores),
                      "--model-warmup", "1", "--model-repeats", "2", "--runs-dir", str(tmp_path), "--json", str(path)])
    printed = capsys.readouterr().out

    assert list(out["results"]) == ["resident", "stream", "workers"]
    assert _timed(out["model_only"]["images_per_s"]) and out["model_only"]["entry"] == "ilsvrc eager"
    assert out["model_only"]["num_classes"] == 3
    assert (out["model_only"]["warmup"], out["model_only"]["repeats"], out["model_only"]["steps"]) == (1, 2, 1)
    assert len(kept) == 3 and all(mine["images"] == 7 for mine in kept)
    for (name, r), mine in zip(out["results"].items(), kept):
        assert r["source"] == name
        for key in ("images_per_s", "ratio_to_model_only", "epoch_time_s", "wall_s"):
            assert _timed(r[key]), (name, key, r[key])
        assert math.isfinite(r["load_s"])
        assert r["steps"] == 2 and r["images"] == 8 and r["complete"] is False
        assert r["ratio_to_model_only"] == pytest.approx(r["images_per_s"] / out["model_only"]["images_per_s"])
        assert len(r["rows"]) == 1 and r["val_top1_error"] == mine["top1_error"]  # of the network it ended with
        assert f"{name} (" in printed
    assert out["results"]["resident"]["reads"] == "store" and out["results"]["workers"]["reads"] == "folder"
    assert out["ratios"] == {n: r["ratio_to_model_only"] for n, r in out["results"].items()}
    for word in ("date", "device", "torch", "torchvision", "model-only", "train img/s", "wall s"):
        assert word in printed
    assert out["batch_size"] == 4 and out["image_size"] == 64 and out["resize"] == 73 and out["compile"] is False
    assert json.loads(path.read_text()) == json.loads(json.dumps(out))

    # The packed store was made once in --store-dir (at the rescaled size) and is reused.
    assert Path(out["store"]).parent == stores and out["store_reused"] is False
    from ilsvrc.data.datasets import open_dataset

    assert epoch.store_for(open_dataset(data), stores, 73, 0, False) == (Path(out["store"]), None)
    # Every temporary run directory is gone.
    assert not list(tmp_path.glob("ilsvrc-bench-epoch-*"))


def test_epoch_benchmark_refuses_bad_settings(epoch, data):
    for bad in (["--loaders", "resident,disk"], ["--loaders", ""], ["--batch-size", "0"], ["--image-size", "32"],
                ["--model-repeats", "0"]):
        with pytest.raises(SystemExit):
            epoch.parse_args(["--data", str(data), "--device", "cpu", *bad])
    args = epoch.parse_args(["--data", str(data), "--device", "cpu"])
    assert (args.batch_size, args.max_steps, args.compile, args.epochs) == (16, 20, False, 1)
    assert args.loaders == ["resident", "stream", "workers"] and args.resident_from == "store"
    args = epoch.parse_args(["--data", str(data), "--device", "cpu", "--loaders", "resident", "--compile", "--full-epoch"])
    assert (args.resident_from, args.compile, args.epochs, args.max_steps) == ("folder", True, 2, None)


def test_time_to_accuracy_stops_at_the_first_validation_that_reaches_the_target(tta, data, tmp_path, capsys,
                                                                                monkeypatch, narrow):
    path = tmp_path / "tta.json"
    kept = recomputed_errors(tta, monkeypatch)
    out = tta.main(["--data", str(data), *TINY, "--epochs", "3", "--target", "100", "--loader", "workers",
                    "--json", str(path)])
    printed = capsys.readouterr().out
    r = out["result"]

    assert r["reached"] is True and r["epochs"] == 1 and len(out["rows"]) == 1
    assert r["steps"] == 6 and r["loader"] == "workers"  # 24 images in batches of 4: one whole epoch, not three
    for key in ("wall_s", "wall_excluding_stats_and_load_s", "train_call_s", "training_steps_s"):
        assert _timed(r[key]), (key, r[key])
    assert all(_timed(r[key]) for key in ("stats_s", "load_s", "from_rows_s"))
    (mine,) = kept  # the val error of the network it ended with, on the 7 val images
    assert r["val_top1_error"] == mine["top1_error"] and mine["images"] == 7
    assert out["overrides"] == {"epochs": 3, "batch_size": 4, "image_size": 64}
    assert out["settings"]["lr"] == 0.01 and out["settings"]["momentum"] == 0.9  # the paper's, not overridden
    assert out["target_top1_error"] == 100.0 and out["compile"] is False
    for word in ("date", "device", "torch", "recipe", "overrides", "reached", "wall"):
        assert word in printed
    assert json.loads(path.read_text()) == json.loads(json.dumps(out))


def test_time_to_accuracy_says_when_the_target_is_not_reached(tta, data, tmp_path, narrow):
    out = tta.main(["--data", str(data), *TINY, "--max-steps", "1", "--target", "0", "--out", str(tmp_path / "run")])
    assert out["result"]["reached"] is False and out["result"]["epochs"] == 1 and out["result"]["steps"] == 1
    assert (tmp_path / "run" / "metrics.jsonl").exists()  # --out keeps the run
