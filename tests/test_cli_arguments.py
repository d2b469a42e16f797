"""Argument mistakes are named with their command and never guessed at
(issue 16, item 6)."""

from ilsvrc.cli import main


def test_an_unknown_flag_names_the_command(capsys):
    assert main(["train", "--foo", "1"]) == 2
    assert capsys.readouterr().err.strip() == "ilsvrc train: error: unrecognized arguments: --foo 1"


def test_an_abbreviated_flag_is_not_taken_for_the_full_one(capsys):
    assert main(["train", "--epoch", "1"]) == 2  # not --epochs
    assert "unrecognized arguments: --epoch 1" in capsys.readouterr().err


def test_bad_data_is_reported_before_a_full_run_folder(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--recipe", "resnet-cifar", "--data", str(tiny_data), "--out", str(run), "--device", "cpu",
                 "--workers", "0", "--no-progress", "--set", "iterations=1"]) == 0
    capsys.readouterr()
    assert main(["train", "--recipe", "resnet-cifar", "--data", str(tmp_path / "README.md"), "--out", str(run)]) == 2
    assert "does not exist" in capsys.readouterr().err  # the data, not "already holds a run"
