"""Ctrl-C while several runs train together (``ilsvrc train --runs N``,
together.py): every run stops after the same step and saves its place, the
command ends with one line and exit code 130 (README, "Exit codes and
errors"), nothing written is damaged, and ``--resume`` ends each run exactly
where it would have ended uninterrupted."""

import contextlib
import json
import signal
import subprocess

import torch

from ilsvrc.cli import main

from conftest import cli_with, started
from test_together import assert_same_run

# 24 images in batches of 2: twelve steps an epoch; far more steps than the test waits for. The signal
# comes at most one poll (50 ms) after both runs have ended their first epoch, so the runs stop early in the
# second, at a place that only the interruption's own last.pt can hold.
ARGS = ["--recipe", "resnet-cifar", "--model", "resnet-20", "--batch-size", "2", "--set", "iterations=100000",
        "--device", "cpu", "--workers", "0", "--no-progress", "--runs", "2"]


def ended(proc: subprocess.Popen, timeout: float = 120) -> str:
    """``proc``'s stderr once it has ended; killed if it has not within ``timeout``
    (a run that does not stop would otherwise outlive the test)."""
    try:
        return proc.communicate(timeout=timeout)[1]
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def test_ctrl_c_stops_every_run_at_the_same_step_saved_and_resumable(tiny_data, tmp_path, capsys):
    out = tmp_path / "runs"
    cmd = cli_with(tmp_path) + ["train", "--data", str(tiny_data), "--out", str(out), *ARGS]
    proc = started(cmd, until=out / "seed1" / "metrics.jsonl")  # both runs have logged their first epoch
    assert proc.poll() is None, ended(proc)
    proc.send_signal(signal.SIGINT)
    err = ended(proc)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines == ["ilsvrc train: interrupted; each run's last.pt holds its place, continue them with --resume"], err
    seeds = [out / "seed0", out / "seed1"]
    steps = [torch.load(s / "last.pt", weights_only=True)["step"] for s in seeds]
    assert steps[0] == steps[1] > 12, steps  # the same step, past the first epoch's twelve
    for s in seeds:
        assert not list(s.glob(".*.tmp")) and not list(s.glob("*.tmp"))  # no file left half written
        rows = [json.loads(line) for line in (s / "metrics.jsonl").read_text().splitlines()]
        assert rows and all(r["complete"] for r in rows)  # validated epochs only: the cut one has no row
        assert rows[-1]["step"] < steps[0]  # the place is the interruption's, not the last epoch's end
    # resumed to two steps further, each run ends bitwise where the same runs end never interrupted
    stop = ["--max-steps", str(steps[0] + 2)]
    assert main(["train", "--data", str(tiny_data), "--out", str(out), *ARGS, *stop, "--resume"]) == 0
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "once"), *ARGS, *stop]) == 0
    capsys.readouterr()
    for s in seeds:
        assert torch.load(s / "last.pt", weights_only=True)["step"] == steps[0] + 2
        assert_same_run(s, tmp_path / "once" / s.name)


def test_a_signal_during_the_second_runs_turn_still_stops_both_at_one_step(tiny_data, tmp_path):
    """Ctrl-C pressed while seed1 takes its step 15, after seed0 has issued
    step 16 in that round (the runs' schedules are told of each step in turn:
    seed0, seed1, seed0, ...): seed1 must not stop a step before seed0."""
    kick = """
        from ilsvrc import schedule
        after_step, calls = schedule.Schedule.after_step, []

        def counted(self, step):
            after_step(self, step)
            calls.append(step)
            if len(calls) == 2 * 15:  # seed1's step 15
                os.kill(os.getpid(), signal.SIGINT)

        schedule.Schedule.after_step = counted
    """
    out = tmp_path / "runs"
    cmd = cli_with(tmp_path, kick) + ["train", "--data", str(tiny_data), "--out", str(out), *ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = ended(proc)
    assert proc.returncode == 130, err
    steps = [torch.load(out / s / "last.pt", weights_only=True)["step"] for s in ("seed0", "seed1")]
    assert steps == [16, 16]
