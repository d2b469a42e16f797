"""What a run says while it runs (issue 16): its plan before the first step,
one bar over the whole run (so its time left is the run's), a bar for
validation, and a word when a CPU run would take hours."""

import re

from ilsvrc import recipes, train
from ilsvrc.train import _say_if_long


def test_a_plan_line_then_one_bar_for_the_whole_run(tiny_data, tmp_path, capsys, narrow):
    # 24 images in batches of 8: 3 steps an epoch, 2 epochs: the bar counts to 6
    common = dict(epochs=2, batch_size=8, image_size=64, device="cpu", workers=0)
    train("alexnet", tiny_data, tmp_path / "run", max_steps=4, progress=False, **common)
    plan = capsys.readouterr().out.splitlines()[0]
    assert plan.startswith("alexnet (alexnet) on ") and "24 training, 12 held-out images" in plan
    assert "cpu, eager step" in plan and "2 epochs x 3 steps of 8, stopping at step 4" in plan
    assert plan.endswith(f"into {tmp_path / 'run'}")
    train("alexnet", tiny_data, tmp_path / "run", resume=True, **common)
    out, err = capsys.readouterr()
    assert ", from step 4," in out.splitlines()[0]
    assert re.search(r"epoch 2/2: .*\| 6/6 \[", err), err[-2000:]  # the whole run's steps, not the epoch's
    assert "evaluate:" in err


def test_a_long_cpu_run_is_told_of_the_demo_preset(capsys):
    _say_if_long("", 30 * 3600.0, "alexnet")
    assert "about 30 h on this CPU" in capsys.readouterr().out
    _say_if_long("", 1800.0, "alexnet")
    assert capsys.readouterr().out == ""


def test_every_recipe_has_a_demo_preset_that_resolves():
    for name in recipes.names():
        demo = recipes.preset(name, "demo")
        assert demo, name
        recipes.resolve(name, **demo)  # the values are of the recipe's kinds


def test_explicit_settings_win_over_the_preset(tiny_data, tmp_path):
    row = train("resnet-cifar", tiny_data, tmp_path / "run", preset="demo", model="resnet-20", iterations=2,
                device="cpu", workers=0, progress=False)
    assert row["step"] == 2  # the preset's 400 steps gave way to iterations=2


def test_the_plan_line_says_why_the_batches_are_not_resident(tiny_data, tmp_path, capsys, monkeypatch, narrow):
    """Too large for memory, a folder trains from CPU workers, and the plan
    line says so with the size; on a GPU it names `ilsvrc pack` (which lets a
    store stream, decoded on the GPU); resident or asked for, it says nothing."""
    import torch

    from ilsvrc.data import sources

    monkeypatch.setattr(sources, "fits", lambda *args, **kwargs: False)  # as if the machine had no memory to spare
    train("alexnet", tiny_data, tmp_path / "run", max_steps=1, epochs=1, batch_size=8, image_size=64, device="cpu",
          workers=0, progress=False)
    plan = capsys.readouterr().out.splitlines()[0]
    gib = 24 * 3 * 73 * 73 / 2**30  # 24 images at the recipe's 256 of 224, scaled to 64: 73 px
    assert f"workers batches (too large to keep in memory ({gib:.1f} GiB at 73x73): 0 CPU workers decode" in plan
    assert "images/s (8 images made here at" in plan  # the rate they can give, measured: expected_rate
    cuda = sources.reason("auto", "workers", range(10), 256, torch.device("cuda"), 8)
    assert "8 CPU workers" in cuda and "`ilsvrc pack`" in cuda
    assert "decoded on the GPU" in sources.reason("auto", "stream", range(10), 256, torch.device("cuda"), 8)
    assert sources.reason("auto", "resident", range(10), 256, torch.device("cpu"), 0) == ""
    assert sources.reason("workers", "workers", range(10), 256, torch.device("cpu"), 0) == ""


def test_the_expected_rate_is_the_workers_times_one_core_s_rate(monkeypatch):
    """8 images over the split, each made once as a worker makes it, on a
    clock that advances 25 ms an image: 40 images/s a core."""
    from ilsvrc.data import sources

    made, now = [], [0.0]

    class Split:
        def __len__(self):
            return 100

        def __getitem__(self, key):
            made.append(key)
            now[0] += 0.025

    monkeypatch.setattr(sources.time, "perf_counter", lambda: now[0])
    assert sources.expected_rate(Split(), 4) == ", at most about 160 images/s (8 images made here at 25.0 ms each on one core)"
    assert [i for i, _ in made] == [0, 14, 28, 42, 57, 71, 85, 99]
    assert sources.expected_rate(Split(), 0).startswith(", at most about 40 images/s")  # 0: the main process alone
