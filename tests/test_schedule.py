"""Learning-rate schedules of the recipes: AlexNet/VGG/ResNet-ImageNet's
plateau, ResNet-CIFAR's steps (and the 110-layer warm-up), GoogLeNet's 4%
every 8 epochs."""

import pytest
import torch

from ilsvrc import UserError, recipes
from ilsvrc.schedule import Schedule


def optimizer(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def lr_of(opt):
    return opt.param_groups[0]["lr"]


def test_steps_divide_by_ten_at_the_stated_iterations():
    opt = optimizer()
    s = Schedule(opt, {"kind": "steps", "factor": 0.1, "milestones": [32000, 48000], "iterations": 64000}, 0.1, "resnet-20")
    seen = {}
    for step in range(1, 64001):
        s.after_step(step)
        seen[step] = lr_of(opt)
    assert seen[31999] == pytest.approx(0.1) and seen[32000] == pytest.approx(0.01)
    assert seen[47999] == pytest.approx(0.01) and seen[48000] == pytest.approx(0.001)
    assert s.iterations == 64000 and s.epochs(391) == 164  # 64k steps of 128 of 50k images


def test_exponential_lowers_four_percent_every_eight_epochs():
    opt = optimizer(0.01)
    s = Schedule(opt, {"kind": "exponential", "factor": 0.96, "every": 8, "epochs": 40}, 0.01, "googlenet")
    lrs = []
    for epoch in range(1, 25):
        s.after_epoch(epoch, 50.0)
        lrs.append(lr_of(opt))
    assert lrs[6] == pytest.approx(0.01) and lrs[7] == pytest.approx(0.0096) and lrs[15] == pytest.approx(0.0096**2 / 0.01)


def test_plateau_divides_after_patience_and_at_most_max_reductions():
    opt = optimizer(0.01)
    s = Schedule(opt, {"kind": "plateau", "factor": 0.1, "patience": 2, "max_reductions": 3, "epochs": 90}, 0.01, "alexnet")
    s.after_epoch(1, 50.0)
    lrs = []
    for epoch in range(2, 20):
        s.after_epoch(epoch, 50.0)  # never better
        lrs.append(lr_of(opt))
    assert lrs[:3] == [0.01, 0.01, pytest.approx(0.001)]  # the third epoch without improvement divides
    assert lrs[-1] == pytest.approx(1e-5)  # three divisions, no more


def test_warm_up_holds_the_small_rate_until_the_training_error_is_below_the_threshold():
    table = recipes.load("resnet-cifar")["schedule"]
    opt = optimizer()
    s = Schedule(opt, table, 0.1, "resnet-110")
    assert lr_of(opt) == pytest.approx(table["warmup_lr"])
    s.after_step(10)
    s.after_interval(85.0)
    assert lr_of(opt) == pytest.approx(table["warmup_lr"])
    s.after_interval(table["warmup_until_error"] - 1)
    assert lr_of(opt) == pytest.approx(0.1)
    state = s.state_dict()
    opt2 = optimizer()
    s2 = Schedule(opt2, table, 0.1, "resnet-110")
    s2.load_state_dict(state)
    assert lr_of(opt2) == pytest.approx(0.1)  # a resumed run does not warm up again
    assert lr_of((o := optimizer(), Schedule(o, table, 0.1, "resnet-20"))[0]) == pytest.approx(0.1)  # only the deep ones


def test_warm_up_steps_end_the_warm_up_whatever_the_error_and_the_milestones_follow():
    table = {"kind": "steps", "factor": 0.1, "milestones": [6, 8], "iterations": 10, "warmup_lr": 0.01,
             "warmup_until_error": 80.0, "warmup_models": ["plain-56"], "warmup_steps": 3}
    opt = optimizer()
    s = Schedule(opt, table, 0.1, "plain-56")
    lrs = []
    for step in range(1, 11):
        s.after_interval(95.0)  # never below 80%: only the step count ends the warm-up
        lrs.append(lr_of(opt))
        s.after_step(step)
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    s2 = Schedule(o := optimizer(), table, 0.1, "plain-56")
    s2.after_step(1)
    s2.after_interval(50.0)  # below 80% first: the error ends it at step 1
    assert lr_of(o) == pytest.approx(0.1)
    s3 = Schedule(o3 := optimizer(), {**table, "warmup_steps": 0}, 0.1, "plain-56")  # 0: no limit
    s3.after_step(5)
    assert lr_of(o3) == pytest.approx(0.01)
    with pytest.raises(UserError):
        Schedule(optimizer(), {**table, "warmup_steps": -1}, 0.1, "x")


def test_an_unknown_or_incomplete_schedule_is_a_user_error():
    with pytest.raises(UserError):
        Schedule(optimizer(), {"kind": "cosine"}, 0.1, "x")
    with pytest.raises(UserError):
        Schedule(optimizer(), {"kind": "steps", "factor": 0.1}, 0.1, "x")
