"""What a run says while it runs (issue 16): its plan before the first step,
one bar over the whole run (so its time left is the run's), a bar for
validation, and a word when a CPU run would take hours."""

import re

from ilsvrc import recipes, train
from ilsvrc.train import _say_if_long


def test_a_plan_line_then_one_bar_for_the_whole_run(tiny_data, tmp_path, capsys):
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
