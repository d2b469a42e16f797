"""Runs trained together (together.py) end as each does alone: same weights,
same metrics, through a learning-rate drop and a resume, with dropout."""

import json

import pytest
import torch

from ilsvrc import UserError, train
from ilsvrc.together import train_together

# 24 images in batches of 128: one step per epoch, so 6 steps are 6 epochs
# with a validation and a checkpoint after each, the drop at step 3.
RESNET = dict(recipe="resnet-cifar", device="cpu", workers=0, data_loader="resident", iterations=6, milestones=[3, 5])


def weights(run):
    return torch.load(run / "last.pt", map_location="cpu", weights_only=True)["model"]


def rows(run):
    return [{k: v for k, v in json.loads(line).items() if k not in ("time", "images_per_s", "epoch_time_s", "val_time_s")}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:  # the same operations in the same order: equal, not merely close
        assert torch.equal(wa[k], wb[k]), k
    assert rows(a) == rows(b)


def alone(job: dict) -> None:
    train(**{**job, "progress": False})


def test_two_seeds_and_plain_beside_residual_end_as_alone(tiny_data, tmp_path):
    jobs = [dict(RESNET, data=tiny_data, model=m, seed=s, out=tmp_path / "together" / f"{m}-{s}")
            for m, s in (("resnet-20", 0), ("resnet-20", 1), ("plain-20", 0))]
    last = train_together(jobs, device="cpu", progress=False)
    assert [r["step"] for r in last] == [6, 6, 6]
    assert rows(jobs[0]["out"])[-1]["lr"] == pytest.approx(0.001)  # dropped twice: 0.1 -> 0.01 -> 0.001
    for job in jobs:
        alone({**job, "out": tmp_path / "alone" / job["out"].name})
        assert_same_run(job["out"], tmp_path / "alone" / job["out"].name)


def test_runs_stopped_together_resume_together_as_alone(tiny_data, tmp_path):
    jobs = [dict(RESNET, data=tiny_data, model=m, seed=3, out=tmp_path / "together" / m) for m in ("resnet-20", "plain-20")]
    train_together([{**job, "max_steps": 4} for job in jobs], device="cpu", progress=False)
    train_together([{**job, "resume": True} for job in jobs], device="cpu", progress=False)
    for job in jobs:
        alone({**job, "out": tmp_path / "alone" / job["out"].name})
        assert_same_run(job["out"], tmp_path / "alone" / job["out"].name)


def test_dropout_draws_stay_each_runs_own(tiny_data, tmp_path):
    """NIN's dropout draws from the process's generator: each run keeps its own stream."""
    jobs = [dict(recipe="nin-cifar", data=tiny_data, device="cpu", workers=0, data_loader="resident", seed=s, iterations=2,
                 batch_size=8, out=tmp_path / "together" / f"seed{s}") for s in (0, 1)]
    train_together(jobs, device="cpu", progress=False)
    for job in jobs:
        alone({**job, "out": tmp_path / "alone" / job["out"].name})
        assert_same_run(job["out"], tmp_path / "alone" / job["out"].name)


def test_a_failing_run_stops_alone_and_is_named(tiny_data, tmp_path):
    good = dict(RESNET, data=tiny_data, model="resnet-20", out=tmp_path / "good")
    bad = dict(RESNET, data=tiny_data, model="resnet-20", out=tmp_path / "bad", lr=1e12)  # diverges at once
    with pytest.raises(UserError, match="bad: training diverged"):
        train_together([good, bad], device="cpu", progress=False)
    assert rows(good["out"])[-1]["step"] == 6  # the good run trained to its end
    assert rows(bad["out"])[-1]["step"] < 6  # the bad one stopped when its loss was no longer finite


def test_one_folder_per_run(tiny_data, tmp_path):
    job = dict(RESNET, data=tiny_data, out=tmp_path / "same")
    with pytest.raises(UserError, match="one --out each"):
        train_together([job, job], device="cpu", progress=False)


def test_train_runs_prints_mean_and_std_over_seeds(tiny_data, tmp_path, capsys):
    from ilsvrc.cli import main

    out = tmp_path / "runs"
    assert main(["train", "--recipe", "resnet-cifar", "--model", "resnet-20", "--data", str(tiny_data), "--out", str(out),
                 "--runs", "2", "--seed", "5", "--device", "cpu", "--workers", "0", "--no-progress",
                 "--set", "iterations=2", "--set", "milestones=[1,2]"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["seed5", "seed6"]
    errors = [rows(out / s)[-1]["val_top1_error"] for s in ("seed5", "seed6")]
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("val_top1_error:"))
    mean = sum(errors) / 2
    std = abs(errors[0] - errors[1]) / 2 ** 0.5  # the sample standard deviation of two values
    assert line == f"val_top1_error: {mean:.2f} ± {std:.2f} (2 runs)"
