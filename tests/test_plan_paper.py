"""The paper budget's plan for every experiment (experiments/__init__.py,
``Experiment.planned``): planning trains nothing and writes nothing, and the
runs it lists are those the experiment's TOML asks for at that budget, each
with settings its recipe accepts. The paper budget is meant for a GPU and
hours; a typo in it would otherwise show only there."""

import sys
from importlib import import_module

import pytest

import ilsvrc.train  # noqa: F401  (the module, for the stand-in below)
from ilsvrc import experiments, recipes

JOB = {"recipe", "data", "out", "model", "seed", "device", "workers", "resume", "max_steps"}  # Experiment.job's own keys
TRAIN_ONLY = {"init_from", "until_train_error"}  # train() arguments that are no recipe values


def expected(name: str, plan: dict) -> list[tuple[str, str, str | None, dict]]:
    """(run, recipe, model, recipe values) of each run the paper budget trains, read from the TOML."""
    budget = plan["budget"]["paper"]
    settings = budget.get("settings", {})
    if name == "alexnet-ablations":
        return [(v["name"].replace(" ", "-").replace("/", "-"), "alexnet", None, {**settings, **v["settings"]})
                for v in plan["variants"]]
    if name == "alexnet-fig1":
        assert not budget.get("stop_at_target")  # Figure 1's curves run their 35 epochs
        return [(act, "alexnet-fig1", None, {**settings, "activation": act, "lr": budget["lr"][act]})
                for act in ("relu", "tanh")]
    if name in ("alexnet-fig3", "alexnet-fig4"):
        return [("alexnet", "alexnet", None, settings)]
    if name == "nin-cifar":
        return [("nin-cifar", "nin-cifar", None, settings)]
    if name == "resnet-cifar":
        return [(f"{prefix}-{d}", "resnet-cifar", f"{prefix}-{d}", settings) for prefix in ("plain", "resnet")
                for d in budget.get(f"{'plain' if prefix == 'plain' else 'residual'}_depths", budget["depths"])]
    if name == "vgg-depth":
        return [(c, "vgg", c, settings) for c in plan["configurations"]]
    raise AssertionError(f"no expectation written for experiment {name}: add it here")


@pytest.mark.parametrize("name", experiments.names())
def test_the_paper_budget_plans_the_tomls_runs_without_training(name, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("planning trained a network")

    monkeypatch.setattr(sys.modules["ilsvrc.train"], "train", refuse)  # (the package's ``train`` is the function)
    plan = experiments.plan(name)
    assert "per_class" not in plan["budget"]["paper"] and "max_steps" not in plan["budget"]["paper"]  # all the data
    (tmp_path / "out").mkdir()
    ex = experiments.Experiment(name, tmp_path / "data", tmp_path / "out", "paper", "cpu", False, 0)
    jobs = ex.planned(import_module(f"ilsvrc.experiments.{name.replace('-', '_')}"))
    assert not any((tmp_path / "out").iterdir()) and not (tmp_path / "data").exists()  # nothing written
    want = expected(name, plan)
    if name == "resnet-cifar":  # Table 6 and Figure 6: n = 3, 5, 7, 9, 18
        assert [run for run, *_ in want] == [f"{k}-{d}" for k in ("plain", "resnet") for d in (20, 32, 44, 56, 110)]
    assert [j["out"].name for j in jobs] == [run for run, *_ in want]
    for job, (run, recipe, model, settings) in zip(jobs, want):
        assert (job["recipe"], job["model"], job["seed"], job["max_steps"], job["resume"]) == (recipe, model, 0, None, False)
        assert job["out"] == tmp_path / "out" / "runs" / run and job["data"] == tmp_path / "data"
        values = {k: v for k, v in job.items() if k not in JOB | TRAIN_ONLY}
        assert values == settings, run
        recipes.resolve(recipe, network=model, **values)  # values its recipe has, of the right kinds
    if name == "vgg-depth":  # Sec. 3.1: B to E start from A's weights; A and A-LRN from random ones
        init = {j["out"].name: j.get("init_from") for j in jobs}
        later = set(plan["init_from_a"])
        assert all(init[c] is None for c in init if c not in later)
        assert all(str(init[c]).endswith("runs/vgg-a/last.pt") for c in later)
