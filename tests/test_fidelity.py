"""benchmarks/fidelity.py: ilsvrc's ResNet against the independent reference
at a tiny size, end to end (its figures are the runs' own, its verdict the
arithmetic of their spread), the batch-norm check's data, a packed store
written out for the reference byte for byte; and the difference arithmetic
of ``ilsvrc.spread`` it prints."""

import json
import math
import statistics

import pytest
import torch

from conftest import load_benchmark, make_cifar_like
from ilsvrc.spread import Spread, difference, verdict

fidelity = load_benchmark("fidelity")


@pytest.fixture(scope="module")
def cifar_like(tmp_path_factory):
    return make_cifar_like(tmp_path_factory.mktemp("fidelity-data"), 4, 10, 5, seed=5)


def test_the_difference_and_its_standard_error():
    a, b = Spread([30.0, 28.0, 29.0]), Spread([27.0, 31.0])
    diff, se = difference(a, b)
    assert diff == pytest.approx(29.0 - 29.0)
    assert se == pytest.approx(math.sqrt(statistics.variance([30, 28, 29]) / 3 + statistics.variance([27, 31]) / 2))
    assert math.isnan(difference(Spread([1.0]), b)[1])  # one run: no spread


def test_the_verdict_says_how_many_standard_errors():
    assert verdict(1.0, 0.6) == "within 2 standard errors"
    assert verdict(-1.3, 0.6).startswith("NOT within 2 standard errors (2.2 SE)")
    assert verdict(1.0, math.nan).startswith("no verdict")


def test_milestones_are_the_papers_fractions():
    assert fidelity.milestones(64000) == [32000, 48000]
    assert fidelity.milestones(800) == [400, 600]


@pytest.fixture(scope="module")
def compared(cifar_like, tmp_path_factory):
    """Two seeds of the reference and of ilsvrc's eager step in float32, 3
    steps each. (bf16 autocast on this CPU costs 27 s for the same two runs;
    the bf16 variants' runs and pairing: ``test_a_bf16_variant_...``.)"""
    out = tmp_path_factory.mktemp("fidelity-runs")
    js = out / "fidelity.json"
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert fidelity.main(["--data", str(cifar_like), "--iterations", "3", "--seeds", "2", "--device", "cpu",
                              "--variants", "reference-float32,eager-float32", "--out", str(out / "runs"),
                              "--json", str(js), "--workers", "0", "--no-progress"]) == 0
    return out, json.loads(js.read_text()), printed.getvalue()


def test_each_variant_reports_its_runs_and_the_verdict_is_their_arithmetic(compared):
    out, record, printed = compared
    assert set(record["runs"]) == {"reference-float32", "eager-float32"}
    for variant, runs in record["runs"].items():
        assert [r["seed"] for r in runs] == [0, 1]
        errors = [r["test_error"] for r in runs]
        assert record["spreads"][variant]["test_error"]["mean"] == pytest.approx(statistics.fmean(errors), abs=1e-4)
    ilsvrc_rows = [json.loads(line) for line in (out / "runs" / "ilsvrc-eager-float32" / "seed1" / "metrics.jsonl")
                   .read_text().splitlines()]
    assert record["runs"]["eager-float32"][1]["test_error"] == ilsvrc_rows[-1]["val_top1_error"]
    assert ilsvrc_rows[-1]["step"] == 3
    reference = json.loads((out / "runs" / "reference-float32" / "seed0.json").read_text())[0]
    assert reference["iterations"] == 3 and reference["milestones"] == [2, 2]  # round(1.5), round(2.25)
    assert [c["variant"] for c in record["comparisons"]] == ["eager-float32"]
    for c in record["comparisons"]:
        a = [r["test_error"] for r in record["runs"][c["variant"]]]
        b = [r["test_error"] for r in record["runs"]["reference-float32"]]
        diff, se = difference(Spread(a), Spread(b))
        assert c["reference"] == "reference-float32"
        assert c["difference"] == pytest.approx(diff, abs=1e-4)
        assert c["verdict"] == verdict(diff, se)
        line = f"ilsvrc {c['variant']} - reference-float32: {diff:+.2f} ± {se:.2f} points: {verdict(diff, se)}"
        assert line in printed
    assert "batch norm, ilsvrc eager-float32 seed 0: test error" in printed


def test_a_bf16_variant_trains_in_bf16_and_is_held_to_the_reference_of_its_precision_or_else_float32(tmp_path):
    import argparse

    a = argparse.Namespace(depth=20, data=tmp_path, seeds=2, iterations=8, workers=0)
    jobs = fidelity.ilsvrc_jobs(a, ["eager-bf16", "graph-float32"], tmp_path)
    assert [(j["variant"], j["compile"], j["precision"], j["seed"]) for j in jobs] == [
        ("eager-bf16", "eager", "bf16", 0), ("eager-bf16", "eager", "bf16", 1),
        ("graph-float32", "graph", "float32", 0), ("graph-float32", "graph", "float32", 1)]
    assert jobs[0]["milestones"] == [4, 6] and jobs[0]["model"] == "resnet-20"

    def runs(*errors):
        return [{"test_error": e, "train_error": e / 2} for e in errors]

    ref32, ours16, ours32 = runs(30.0, 32.0, 31.0), runs(35.0, 36.0), runs(29.0, 30.0)
    _, comparisons = fidelity.summarise({"reference-float32": ref32, "eager-bf16": ours16, "eager-float32": ours32})
    assert [(c["variant"], c["reference"]) for c in comparisons] == [("eager-bf16", "reference-float32"),
                                                                     ("eager-float32", "reference-float32")]
    diff, se = difference(Spread([35.0, 36.0]), Spread([30.0, 32.0, 31.0]))
    assert (comparisons[0]["difference"], comparisons[0]["standard_error"]) == (diff, se) and diff == 4.5
    assert comparisons[0]["verdict"] == verdict(diff, se)
    ref16 = runs(40.0, 41.0)
    _, comparisons = fidelity.summarise({"reference-float32": ref32, "reference-bf16": ref16, "eager-bf16": ours16,
                                         "eager-float32": ours32})
    assert [(c["variant"], c["reference"]) for c in comparisons] == [("eager-bf16", "reference-bf16"),
                                                                     ("eager-float32", "reference-float32")]
    assert comparisons[0]["difference"] == difference(Spread([35.0, 36.0]), Spread([40.0, 41.0]))[0] == -5.0


def test_the_batchnorm_check_reads_the_run_and_recomputes_over_the_training_set(compared, monkeypatch):
    """Its first figure is the run's own validation; its statistics come from
    every training image, mean-subtracted, once."""
    out, record, _ = compared
    check = next(c for c in record["batchnorm"] if c["variant"] == "eager-float32")
    rows = [json.loads(line) for line in (out / "runs" / "ilsvrc-eager-float32" / "seed0" / "metrics.jsonl")
            .read_text().splitlines()]
    assert check["running"] == pytest.approx(rows[-1]["val_top1_error"])
    seen = []
    monkeypatch.setattr(torch.optim.swa_utils, "update_bn", lambda batches, model: seen.extend(batches))
    fidelity.batchnorm_check(out / "runs" / "ilsvrc-eager-float32" / "seed0", torch.device("cpu"), 0)
    x = torch.cat(seen)
    assert x.shape == (40, 3, 32, 32)
    from ilsvrc.checkpoint import load
    from ilsvrc.data.datasets import open_dataset

    from ilsvrc.data.stats import Stats

    ckpt = load(out / "runs" / "ilsvrc-eager-float32" / "seed0" / "last.pt")
    train = open_dataset(ckpt["data_root"]).train
    mean = Stats.from_dict(ckpt["stats"]).mean_image
    expected = torch.stack([train.read(i, 32).float() - mean for i in range(len(train))])
    torch.testing.assert_close(x, expected)  # every training image, in order, its centre view, the mean subtracted


def test_running_again_reads_the_finished_runs_back(compared, cifar_like):
    out, record, _ = compared
    metrics = (out / "runs" / "ilsvrc-eager-float32" / "seed0" / "metrics.jsonl").read_text()
    reference = (out / "runs" / "reference-float32" / "seed1.json").read_text()
    again = out / "again.json"
    assert fidelity.main(["--data", str(cifar_like), "--iterations", "3", "--seeds", "2", "--device", "cpu",
                          "--variants", "reference-float32,eager-float32", "--out", str(out / "runs"), "--bn-check", "0",
                          "--json", str(again), "--workers", "0", "--no-progress"]) == 0
    assert (out / "runs" / "ilsvrc-eager-float32" / "seed0" / "metrics.jsonl").read_text() == metrics
    assert (out / "runs" / "reference-float32" / "seed1.json").read_text() == reference
    assert json.loads(again.read_text())["runs"]["eager-float32"] == record["runs"]["eager-float32"]


def test_a_packed_store_is_written_out_byte_for_byte_for_the_reference(cifar_like, tmp_path):
    from ilsvrc.data.store import pack

    store = tmp_path / "store"
    pack(cifar_like, store, size=32, encoding="jpeg", workers=0, progress=False)
    folder = fidelity.image_folder(store, tmp_path / "work")
    for split in ("train", "test"):
        ours = sorted(p.read_bytes() for p in (folder / split).rglob("*.jpg"))
        theirs = sorted(p.read_bytes() for p in (cifar_like / split).rglob("*.jpg"))
        assert ours == theirs
        for cls in (cifar_like / split).iterdir():  # each file under its own class
            assert sorted(p.read_bytes() for p in cls.iterdir()) == sorted(
                p.read_bytes() for p in (folder / split / cls.name).iterdir())
    assert fidelity.image_folder(cifar_like, tmp_path / "work") == cifar_like


def test_bad_data_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        fidelity.main(["--data", str(tmp_path), "--device", "cpu"])
    assert e.value.code == 2 and "no CIFAR-10 there" in capsys.readouterr().err
