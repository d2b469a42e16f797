"""The papers' claims as the experiments check them: AlexNet Figure 1's
learning-rate sweep and ratio, ResNet Figure 6's differences with their
standard errors (on stand-in runs whose figures are known), the laptop
budgets planned as docs/results.md ran them, and both run end to end at a
tiny size, printing their verdicts."""

import json
import math
import statistics
from pathlib import Path

import pytest

from conftest import make_cifar_like
from ilsvrc import experiments
from ilsvrc.cli import main
from ilsvrc.experiments import alexnet_fig1, resnet_cifar
from ilsvrc.spread import Spread


class StandIn:
    """What an experiment's ``run`` sees: its budget, and ``train`` returning
    made-up runs (``curves[(name)]``: one training-error curve per seed)."""

    def __init__(self, tmp_path: Path, budget: dict, curves: dict, published: dict, seeds: int = 1):
        self.out, self.budget, self.curves, self.published, self.seeds = tmp_path, budget, curves, published, seeds
        self.runs, self.asked = [], []

    def train(self, run, recipe, model=None, *, may_diverge=False, **settings):
        self.asked.append((run, settings, may_diverge))
        each = []
        for k, errors in enumerate(self.curves[run]):
            r = {"name": run, "final": {"train_error": errors[-1], "val_top1_error": errors[-1] + 5.0},
                 "curve": {"epoch": list(range(1, len(errors) + 1)), "step": list(range(10, 10 * len(errors) + 1, 10)),
                           "train_error": errors, "val_top1_error": [e + 5.0 for e in errors]}}
            if errors[-1] != errors[-1]:
                r["diverged"] = "the training loss is nan"
            each.append(r)
            self.runs.append(r)
        final = {k: Spread([r["final"][k] for r in each]) if len(each) > 1 else each[0]["final"][k]
                 for k in ("train_error", "val_top1_error")}
        return {**each[0], "final": final, "each": each}


FIG1 = {"target_error": 25.0, "speedup": 6.0, "source": "Krizhevsky et al. 2012, Figure 1"}


def test_the_sweep_takes_each_units_fastest_rate_and_the_ratio_seed_by_seed(tmp_path):
    curves = {
        "relu-lr0.001": [[60, 40, 30, 26], [61, 41, 31, 27]],         # not at 25% in 4 epochs
        "relu-lr0.003": [[50, 30, 20], [50, 35, 22]],                 # 25% at 2.5 and 2.77: the fastest
        "relu-lr0.01": [[55, 45, float("nan")], [55, 45, float("nan")]],  # diverged
        "tanh-lr0.01": [[70, 50, 40, 35], [70, 52, 41, 36]],          # not reached: training error 35.5 at the end
        "tanh-lr0.03": [[65, 45, 35, 30, 26, 24], [66, 44, 34, 29, 26, 25]],  # 25% at 5.5 and 6.0
    }
    ex = StandIn(tmp_path, {"lr": {"relu": [0.001, 0.003, 0.01], "tanh": [0.01, 0.03]}, "stop_at_target": True},
                 curves, FIG1, seeds=2)
    result = alexnet_fig1.run(ex)
    assert all(settings == {"activation": a, "lr": lr, "until_train_error": 25.0} and diverge
               for (run, settings, diverge), (a, lr) in zip(ex.asked, [("relu", 0.001), ("relu", 0.003), ("relu", 0.01),
                                                                       ("tanh", 0.01), ("tanh", 0.03)]))
    chosen, sweep, speedup = result["tables"]
    assert [row[:2] for row in chosen["rows"]] == [["relu", 0.003], ["tanh", 0.03]]
    relu = [2 + 5 / 10, 2 + 10 / 13]  # 30 -> 20 crosses 25 halfway; 35 -> 22 at 10/13 of the way
    tanh = [5 + 1 / 2, 6.0]
    assert chosen["rows"][0][2] == pytest.approx(statistics.fmean(relu))
    assert [row[4] for row in sweep["rows"]] == ["", "yes", "", "", "yes"]
    assert sweep["rows"][2][2] == "diverged" and sweep["rows"][0][2] is None and sweep["rows"][3][2] is None
    ratios = [t / r for t, r in zip(tanh, relu)]
    assert float(speedup["rows"][0][0]) == pytest.approx(statistics.fmean(ratios))
    assert speedup["rows"][0][0].std == pytest.approx(statistics.stdev(ratios))
    claim, = result["claims"]
    se = statistics.stdev(ratios) / math.sqrt(2)
    assert claim["ratio"] == round(statistics.fmean(ratios), 2) and claim["standard_error"] == round(se, 2)
    assert claim["holds"] is (statistics.fmean(ratios) - 1 > 2 * se)


def test_tanh_above_the_target_at_its_last_epoch_bounds_the_ratio_from_below(tmp_path):
    """Seed 0's tanh reaches 25% at 3.5 epochs; seed 1's is above it after its 4: its ratio is at least 4 / ReLU's."""
    curves = {"relu": [[50, 30, 20, 18], [50, 35, 20]], "tanh": [[70, 60, 30, 20], [70, 60, 50, 45]]}
    ex = StandIn(tmp_path, {"lr": {"relu": 0.003, "tanh": 0.03}}, curves, FIG1, seeds=2)
    result = alexnet_fig1.run(ex)
    relu = [2.5, 2 + 10 / 15]
    ratios = [3.5 / relu[0], 4 / relu[1]]
    measured, how, paper = result["tables"][-1]["rows"][0]
    assert float(measured) == pytest.approx(statistics.fmean(ratios)) and how == "at least (a lower bound)" and paper == 6.0
    assert result["notes"] == [f"tanh did not reach 25% training error in 4 epochs (1 of 2 seeds): the ratio is a lower "
                               f"bound (its last epoch / ReLU's epochs), at least {statistics.fmean(ratios):.2f}"]
    assert result["comparisons"][0]["what"].endswith("(at least)")
    assert result["claims"][0]["verdict"].startswith(f"ReLU at least {statistics.fmean(ratios):.2f}x as fast")
    assert [a[2] for a in ex.asked] == [False, False]  # one rate each: a divergence would stop the experiment


def test_relu_that_never_reaches_the_target_gives_no_ratio(tmp_path):
    curves = {"relu": [[50, 40, 30]], "tanh": [[70, 60, 30, 20]]}
    result = alexnet_fig1.run(StandIn(tmp_path, {"lr": {"relu": 0.003, "tanh": 0.03}}, curves, FIG1))
    assert result["tables"][-1]["rows"][0][0] is None
    assert result["notes"] == ["relu did not reach 25% training error in 3 epochs: no ratio"]
    assert not result["claims"][0]["holds"] and result["claims"][0]["ratio"] is None


def _resnet_trained(errors: dict) -> dict:
    return {m: {"final": {"train_error": Spread(t), "val_top1_error": Spread(v)}} for m, (t, v) in errors.items()}


def test_figure_6s_claims_are_differences_with_their_standard_errors():
    trained = _resnet_trained({"plain-20": ([40.0, 41.0, 42.0], [45.0, 46.0, 44.0]),
                               "plain-56": ([50.0, 52.0, 51.0], [53.0, 54.0, 58.0]),
                               "resnet-56": ([39.0, 38.0, 40.0], [44.0, 46.0, 45.0])})
    c = resnet_cifar.claim("plain-56", "plain-20", trained, "train_error")
    se = math.sqrt(1.0 / 3 + 1.0 / 3)
    assert c["what"] == "plain-56 - plain-20, training error"
    assert c["difference"] == 10.0 and c["standard_error"] == round(se, 2)
    assert c["holds"] and c["verdict"] == f"higher, by {10 / se:.1f} standard errors"
    c = resnet_cifar.claim("plain-56", "plain-20", trained, "val_top1_error")
    assert c["what"] == "plain-56 - plain-20, test error" and c["difference"] == 10.0
    close = _resnet_trained({"a": ([40.0, 44.0], [1.0, 1.0]), "b": ([41.0, 42.0], [1.0, 1.0])})
    c = resnet_cifar.claim("a", "b", close, "train_error")
    assert not c["holds"] and c["verdict"].startswith("NOT higher by 2 standard errors")
    one = resnet_cifar.claim("a", "b", {m: {"final": {"train_error": v}} for m, v in (("a", 50.0), ("b", 40.0))}, "train_error")
    assert one["standard_error"] is None and one["verdict"].startswith("higher (one seed")


def test_the_resnet_experiment_claims_degradation_and_the_residual_gain(tmp_path):
    curves = {"plain-20": [[60, 40], [62, 41], [61, 42]], "plain-56": [[70, 55], [72, 56], [71, 54]],
              "resnet-56": [[60, 38], [61, 37], [62, 39]]}
    ex = StandIn(tmp_path, {"depths": [20, 56], "residual_depths": [56]}, curves, {"source": "He et al."}, seeds=3)
    result = resnet_cifar.run(ex)
    assert [run for run, _, _ in ex.asked] == ["plain-20", "plain-56", "resnet-56"]
    assert [c["what"] for c in result["claims"]] == [
        "plain-56 - plain-20, training error", "plain-56 - plain-20, test error",
        "plain-56 - resnet-56, training error", "plain-56 - resnet-56, test error"]
    assert [c["difference"] for c in result["claims"]] == [14.0, 14.0, 17.0, 17.0]
    assert all(c["holds"] for c in result["claims"])
    assert result["tables"][1]["rows"][0][:2] == ["plain-56 - plain-20, training error", 14.0]


@pytest.mark.parametrize("name, runs", [
    ("resnet-cifar", ["plain-20", "plain-56", "resnet-56"]),
    ("alexnet-fig1", ["relu", "tanh"]),
])
def test_the_laptop_budget_plans_what_results_md_ran(name, runs, tmp_path):
    from importlib import import_module

    ex = experiments.Experiment(name, tmp_path, tmp_path, "laptop", "cpu", False, 0, runs=3)
    jobs = ex.planned(import_module(f"ilsvrc.experiments.{name.replace('-', '_')}"))
    assert [j["out"].name for j in jobs] == [f"{r}{s}" for r in runs for s in ("", "-seed1", "-seed2")]
    budget = experiments.plan(name)["budget"]["laptop"]
    assert "per_class" not in budget  # all of CIFAR-10's 50,000 training images
    if name == "resnet-cifar":
        assert all(j["iterations"] == budget["settings"]["iterations"] for j in jobs)
        assert all(j["lr"] == 0.01 and j["milestones"] == [270] for j in jobs)  # every network at the warm-up rate
    else:
        assert all(j["until_train_error"] == 25.0 and j["lr"] == budget["lr"][j["activation"]] for j in jobs)


def test_the_sweep_budget_tries_each_rate_of_its_grid(tmp_path):
    from importlib import import_module

    ex = experiments.Experiment("alexnet-fig1", tmp_path, tmp_path, "sweep", "cpu", False, 0)
    jobs = ex.planned(import_module("ilsvrc.experiments.alexnet_fig1"))
    grid = experiments.plan("alexnet-fig1")["budget"]["sweep"]["lr"]
    assert [(j["activation"], j["lr"]) for j in jobs] == [(a, lr) for a in ("relu", "tanh") for lr in grid[a]]


def test_a_budget_an_experiment_lacks_is_one_line(capsys, tmp_path):
    make_cifar_like(tmp_path / "d", 2, 2, 2)
    assert main(["experiment", "nin-cifar", "--budget", "laptop", "--data", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "experiment nin-cifar has no laptop budget; its budgets: quick, paper" in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_cifar_like(tmp_path_factory.mktemp("claims-data"), 3, 8, 4, seed=7)


def _shrunk(monkeypatch, name: str, **budget):
    """The experiment's laptop budget with ``budget``'s values instead (a tiny size)."""
    original = experiments.plan

    def plan(n):
        p = original(n)
        if n == name:
            p["budget"]["laptop"].update(budget)
        return p

    monkeypatch.setattr(experiments, "plan", plan)


def test_the_resnet_laptop_budget_runs_and_prints_its_claims(tiny, tmp_path, monkeypatch, capsys):
    _shrunk(monkeypatch, "resnet-cifar", settings={"iterations": 2, "milestones": [1, 2]})
    out = tmp_path / "resnet"
    assert main(["experiment", "resnet-cifar", "--budget", "laptop", "--data", str(tiny), "--out", str(out),
                 "--runs", "2", "--workers", "0", "--no-progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "experiment.json").read_text())
    assert sorted(r["name"] for r in record["runs"]) == sorted(
        f"{m}{s}" for m in ("plain-20", "plain-56", "resnet-56") for s in ("", "-seed1"))
    finals = {r["name"]: r["final"]["train_error"] for r in record["runs"]}
    c = record["claims"][0]
    expected = statistics.fmean([finals["plain-56"], finals["plain-56-seed1"]]) - statistics.fmean(
        [finals["plain-20"], finals["plain-20-seed1"]])
    assert c["what"] == "plain-56 - plain-20, training error" and c["difference"] == pytest.approx(expected, abs=0.01)
    assert f"  claim, {c['what']}: {c['difference']:+g}" in printed and c["verdict"] in printed


def test_the_fig1_laptop_budget_stops_each_run_at_the_target(tiny, tmp_path, monkeypatch, capsys):
    """A target of 100%: every run stops after its first epoch, and again run, none trains on."""
    _shrunk(monkeypatch, "alexnet-fig1", settings={"epochs": 3})
    original = experiments.plan
    monkeypatch.setattr(experiments, "plan", lambda n: {**original(n), "published": {**original(n)["published"],
                                                                                   "target_error": 100.0}})
    out = tmp_path / "fig1"
    assert main(["experiment", "alexnet-fig1", "--budget", "laptop", "--data", str(tiny), "--out", str(out),
                 "--workers", "0", "--no-progress", "--device", "cpu"]) == 0
    assert "claim, epochs to 100% training error, tanh / ReLU: 1x: NOT faster" in capsys.readouterr().out
    metrics = (out / "runs" / "relu" / "metrics.jsonl").read_text()
    assert len(metrics.splitlines()) == 1
    assert main(["experiment", "alexnet-fig1", "--budget", "laptop", "--data", str(tiny), "--out", str(out),
                 "--workers", "0", "--no-progress", "--device", "cpu"]) == 0
    assert (out / "runs" / "relu" / "metrics.jsonl").read_text() == metrics
