"""`ilsvrc experiment`: every experiment's quick budget runs and writes what
SCHEMA.md promises (valid PNG figures, tables with every row, finite
numbers), the report renders them, and the pieces with arithmetic of their
own (the nearest-neighbour search, the epochs-to-target interpolation) give
the right answers. Generated images keep it fast: 3 classes of a few images."""

import json
import math

import pytest
import torch
from PIL import Image

from conftest import make_images, narrow_heads
from ilsvrc import experiments
from ilsvrc.cli import main
from ilsvrc.experiments.alexnet_fig1 import epochs_to
from ilsvrc.experiments.alexnet_fig4 import nearest

PNG = b"\x89PNG\r\n\x1a\n"
CIFAR_LIKE = {"alexnet-fig1", "resnet-cifar", "nin-cifar"}  # 32x32 images; the others take larger ones


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Two generated datasets: 32x32 (CIFAR-like) and 40x52 (photo-like)."""
    root = tmp_path_factory.mktemp("experiment-data")
    make_images(root / "cifar", 3, 8, size=(32, 32), seed=1, split="train")
    make_images(root / "cifar", 3, 4, size=(32, 32), seed=2, split="test")
    make_images(root / "photos", 3, 8, seed=3, split="train")
    make_images(root / "photos", 3, 4, seed=4, split="val")
    return root


def shorter(plan):
    """``plan`` with its quick budget cut to 4 steps or 1 epoch a network
    (on 24 images an epoch is a step, so the quick budget's 40 steps are 40
    validations and 80 checkpoints): what is checked here is what each
    experiment writes and computes from its runs, not what they learn."""
    def cut(name):
        p = plan(name)
        quick = p["budget"]["quick"]
        if "max_steps" in quick:
            quick["max_steps"] = 4
            quick.setdefault("settings", {})["milestones"] = [2, 3]
        elif quick.get("settings", {}).get("epochs", 0) > 1 and name != "alexnet-fig1":  # (fig1: epochs to a target)
            quick["settings"]["epochs"] = 1
        return p
    return cut


@pytest.fixture(scope="module")
def done(small, tmp_path_factory):
    """Every experiment run once at the quick budget (``shorter``), AlexNet's
    and VGG's hidden layers narrow (``narrow_heads``: 46 -> 21 s of a core):
    name -> its folder."""
    out = tmp_path_factory.mktemp("experiments")
    folders = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(experiments, "plan", shorter(experiments.plan))
        narrow_heads(patch)
        for name in experiments.names():
            data = small / ("cifar" if name in CIFAR_LIKE else "photos")
            folders[name] = experiments.run(name, data, out / name, budget="quick", device="cpu", progress=False,
                                            workers=0).parent
        yield folders


def _numbers(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)


def test_every_experiment_is_listed():
    assert experiments.names() == ["alexnet-ablations", "alexnet-fig1", "alexnet-fig3", "alexnet-fig4", "nin-cifar",
                                   "resnet-cifar", "vgg-depth"]


@pytest.mark.parametrize("name", experiments.names())
def test_quick_budget_writes_its_record_figures_and_tables(done, name):
    folder = done[name]
    record = json.loads((folder / "experiment.json").read_text())
    assert record["experiment"] == name and record["budget"] == "quick" and record["format"] == 1
    assert math.isfinite(record["duration_s"]) and record["versions"]["torch"] == torch.__version__
    assert all(math.isfinite(v) for v in _numbers(record)), "every number is finite"
    assert record["figures"], "every experiment draws a figure"
    for f in record["figures"]:
        data = (folder / f["file"]).read_bytes()
        assert data.startswith(PNG)
        with Image.open(folder / f["file"]) as img:
            img.verify()
    for table in record["tables"]:
        assert table["rows"] and all(len(row) == len(table["columns"]) for row in table["rows"])
    for run in record["runs"]:
        assert (folder / run["dir"] / "metrics.jsonl").exists() and run["steps"] >= 1
    plan = experiments.plan(name)
    rows = record["tables"][0]["rows"] if record["tables"] else []
    final = {run["name"]: run["final"] for run in record["runs"]}  # what each table row must repeat
    if name == "resnet-cifar":  # plain and residual at each depth of the budget, the paper's number beside the residual ones
        depths = plan["budget"]["quick"]["depths"]
        assert [(r[0], r[1]) for r in rows] == [(k, d) for k in ("plain", "residual") for d in depths]
        assert [r[4] for r in rows] == [None] * len(depths) + [plan["published"][f"resnet-{d}"] for d in depths]
        for kind, depth, train_error, test_error, _ in rows:
            run = final[f"{'plain' if kind == 'plain' else 'resnet'}-{depth}"]
            assert (train_error, test_error) == (run["train_error"], run["val_top1_error"])
        assert len(record["comparisons"]) == len(depths)
    elif name == "alexnet-ablations":
        assert [r[0] for r in rows] == [v["name"] for v in plan["variants"]]
        assert [r[5] for r in rows] == [v.get("paper_top1") for v in plan["variants"]]
        for r in rows:
            run = final[r[0].replace(" ", "-").replace("/", "-")]
            assert (r[1], r[2]) == (run["val_top1_error"], run["val_top5_error"])
        assert [r[3] for r in rows[1:]] == [round(r[1] - rows[0][1], 2) for r in rows[1:]]  # change from the paper network
    elif name == "alexnet-fig1":
        assert [r[0] for r in rows] == ["relu", "tanh"]
        for r in rows:
            assert (r[3], r[4]) == (final[r[0]]["train_error"], final[r[0]]["val_top1_error"])
        assert record["comparisons"][0]["paper"] == 6.0
    elif name == "vgg-depth":
        assert [r[0] for r in rows] == plan["configurations"]
        assert [r[1] for r in rows] == [11, 11, 13, 16, 16, 19]
        for r in rows:
            assert (r[2], r[3]) == (final[r[0]]["val_top1_error"], final[r[0]]["val_top5_error"])
        assert {r["name"]: r["settings"].get("init_from") is not None for r in record["runs"]} == {
            n: n in plan["init_from_a"] for n in plan["configurations"]}
    elif name == "alexnet-fig4":
        assert len(rows) == plan["figure"]["images"]  # 8 of the 12 held-out images, spread over the classes
        assert len(record["tables"][1]["rows"]) == plan["figure"]["queries"]
    elif name == "nin-cifar":
        (run,) = final.values()
        assert rows == [[rows[0][0], run["train_error"], run["val_top1_error"], 8.81]]
        assert record["comparisons"][0]["paper"] == 8.81


def test_the_vgg_table_layers_are_the_configurations_weight_layers():
    from ilsvrc.experiments.vgg_depth import LAYERS
    from ilsvrc.models import build

    for name, layers in LAYERS.items():
        model = build(name, 10, 32)
        assert sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in model.modules()) == layers


def test_the_report_of_every_experiment_loads_in_a_browser_with_its_figures(done, tmp_path):
    from ilsvrc.report import report

    paths = report(list(done.values()), tmp_path / "report")
    md = paths["markdown"].read_text()
    for name, folder in done.items():
        assert json.loads((folder / "experiment.json").read_text())["title"] in md
    html = paths["html"].read_text()
    figures = sum(len(json.loads((f / "experiment.json").read_text())["figures"]) for f in done.values())
    assert html.count("data:image/png;base64,") == figures


def test_running_again_reuses_the_finished_runs(small, tmp_path):
    out = tmp_path / "fig1"
    first = json.loads(experiments.run("alexnet-fig1", small / "cifar", out, device="cpu", progress=False, workers=0).read_text())
    lines = (out / "runs" / "relu" / "metrics.jsonl").read_text()
    again = json.loads(experiments.run("alexnet-fig1", small / "cifar", out, device="cpu", progress=False, workers=0).read_text())
    assert (out / "runs" / "relu" / "metrics.jsonl").read_text() == lines  # nothing trained twice
    assert [r["final"] for r in again["runs"]] == [r["final"] for r in first["runs"]]


def test_nearest_in_chunks_is_the_nearest_over_all_rows():
    g = torch.Generator().manual_seed(0)
    rows, queries = torch.randn(1000, 64, generator=g), torch.randn(5, 64, generator=g)
    queries[2] = rows[417]  # a query that is a row: its nearest, at distance 0
    dist, idx = nearest(queries, rows.split(96), 6)
    full = torch.cdist(queries, rows).topk(6, dim=1, largest=False)
    assert torch.equal(idx, full.indices)
    torch.testing.assert_close(dist, full.values)
    assert idx[2, 0] == 417 and dist[2, 0] < 1e-3
    d, i = nearest(queries, rows[:4].split(3), 6)  # fewer rows than asked for
    assert i.shape == (5, 4)


def test_epochs_to_the_target_interpolates_between_epochs():
    assert epochs_to(25.0, [1, 2, 3], [60.0, 30.0, 20.0]) == pytest.approx(2.5)
    assert epochs_to(25.0, [1, 2], [20.0, 10.0]) == 1.0  # reached within the first epoch: no earlier point to interpolate from
    assert epochs_to(25.0, [1, 2], [60.0, 40.0]) is None


@pytest.mark.parametrize("argv, message", [
    (["experiment", "alexnet-fig9"], "unknown experiment 'alexnet-fig9'"),
    (["experiment", "resnet-cifar", "--checkpoint", "x.pt", "--data", "."], "trains its own networks"),
    (["experiment", "nin-cifar", "--data", "/no/such/folder"], "does not exist"),
    (["report", "/no/such/run", "--out", "/tmp/never-written"], "/no/such/run"),
])
def test_user_errors_are_one_line_and_exit_2(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("ILSVRC_DATA", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_list(capsys):
    assert main(["experiment", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in experiments.names())


@pytest.mark.parametrize("name", experiments.names())
def test_the_planning_pass_finds_every_run_without_training(name, small, tmp_path):
    """The stand-in results carry every experiment's code to its end (or to
    the network it looks at), and the runs it lists are those it trains."""
    from importlib import import_module

    ex = experiments.Experiment(name, small / "cifar", tmp_path, "quick", "cpu", False, 0, runs=2)
    jobs = ex.planned(import_module(f"ilsvrc.experiments.{name.replace('-', '_')}"))
    assert jobs and not any(tmp_path.iterdir())  # nothing trained, nothing written
    assert [j["seed"] for j in jobs] == [0, 1] * (len(jobs) // 2)
    assert len({j["out"] for j in jobs}) == len(jobs)
    if name == "resnet-cifar":
        depths = experiments.plan(name)["budget"]["quick"]["depths"]
        assert sorted(j["out"].name for j in jobs) == sorted(
            f"{kind}-{d}{s}" for kind in ("plain", "resnet") for d in depths for s in ("", "-seed1"))
    if name == "vgg-depth":  # the deeper configurations start from A's weights: they wait for it
        assert any(j.get("init_from") for j in jobs)


def test_two_runs_per_network_trained_together_report_mean_and_std(small, tmp_path):
    from ilsvrc.report import report

    out = tmp_path / "fig1"
    record = json.loads(experiments.run("alexnet-fig1", small / "cifar", out, device="cpu", progress=False, workers=0,
                                        runs=2, together=4).read_text())
    assert sorted(r["name"] for r in record["runs"]) == ["relu", "relu-seed1", "tanh", "tanh-seed1"]
    table = record["tables"][0]
    for row in table["rows"]:
        final = row[table["columns"].index("final training error")]
        assert final["n"] == 2 and final["std"] >= 0
        seeds = [r["final"]["train_error"] for r in record["runs"] if r["name"].startswith(row[0])]
        assert final["mean"] == pytest.approx(sum(seeds) / 2, abs=1e-4)
    md = report([out], tmp_path / "report")["markdown"].read_text()
    assert "(2 runs)" in md and " ± " in md


def test_seeds_of_each_network_stacked(small, tmp_path, monkeypatch, capsys):
    """--stack: each unit's two seeds take one stacked step (the whole step, made the CPU's
    mode here, compiled by aot_eager); ReLU and tanh, whose weights have the same shapes, apart."""
    import sys

    import ilsvrc.step

    trainer = sys.modules["ilsvrc.train"]
    monkeypatch.setattr(ilsvrc.step, "BACKEND", "aot_eager")
    monkeypatch.setattr(trainer, "pick_mode", lambda compile, device, distributed: "graph")
    record = json.loads(experiments.run("alexnet-fig1", small / "cifar", tmp_path / "fig1", device="cpu", progress=False,
                                        workers=0, runs=2, together=4, stack=True).read_text())
    assert "stacked: relu + relu-seed1; tanh + tanh-seed1" in capsys.readouterr().out
    finals = {r["name"]: r["final"]["train_error"] for r in record["runs"]}
    assert sorted(finals) == ["relu", "relu-seed1", "tanh", "tanh-seed1"]
