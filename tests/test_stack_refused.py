"""--stack where the runs cannot be stacked (together.py, stacked.py): they
take turns instead, the message says so, and each run ends exactly as it
does when trained together without --stack."""

import pytest

from ilsvrc import together
from ilsvrc.together import train_together

from test_together import assert_same_run

# 24 images in batches of 8: three steps an epoch; the learning rate drops after step 2
RESNET = dict(recipe="resnet-cifar", device="cpu", workers=0, data_loader="resident", batch_size=8, iterations=4,
              milestones=[2])
REFUSED = ("no runs stacked (a stack takes the whole step on resident data, --compile graph, and networks without"
           " dropout): they take turns")


def jobs(data, folder):
    """Two seeds of ResNet-20: runs that a stack would take."""
    return [dict(RESNET, data=data, model="resnet-20", seed=s, out=folder / f"seed{s}") for s in (0, 1)]


@pytest.fixture(scope="module")
def unstacked(tiny_data, tmp_path_factory):
    """The runs trained together without --stack: what the refused stack must give."""
    runs = jobs(tiny_data, tmp_path_factory.mktemp("turns"))
    assert [r["step"] for r in train_together(runs, device="cpu", progress=False)] == [4, 4]
    return runs


def test_runs_of_the_eager_step_take_turns_and_end_as_unstacked(tiny_data, tmp_path, unstacked, capsys):
    """The CPU's eager step has no whole step to stack (stack_key: None)."""
    runs = jobs(tiny_data, tmp_path)
    assert [r["step"] for r in train_together(runs, device="cpu", progress=False, stack=True)] == [4, 4]
    assert REFUSED in capsys.readouterr().out.splitlines()
    for run, ref in zip(runs, unstacked):
        assert_same_run(run["out"], ref["out"])


def test_a_stack_that_cannot_be_built_falls_back_to_turns(tiny_data, tmp_path, unstacked, capsys, monkeypatch):
    """Runs that look alike to ``stack_key`` but that ``StackedStep`` refuses
    (here: every step given one key, so that the eager steps are grouped and
    StackedStep's own check refuses them, as it refuses shortcuts it cannot
    gate) train in turns, as if never grouped."""
    monkeypatch.setattr(together, "stack_key", lambda step: "one key for every step")
    runs = jobs(tiny_data, tmp_path)
    assert [r["step"] for r in train_together(runs, device="cpu", progress=False, stack=True)] == [4, 4]
    assert REFUSED in capsys.readouterr().out.splitlines()
    for run, ref in zip(runs, unstacked):
        assert_same_run(run["out"], ref["out"])
