"""Bad input at the command line: one line on stderr, exit code 2, and the
run directory left exactly as it was."""

import shutil
import subprocess
import sys

import pytest
import torch

from ilsvrc.cli import main

from conftest import make_images, snapshot, user_error

FAST = ["--image-size", "64", "--device", "cpu", "--workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--epochs", "1", "--batch-size", "8", *FAST]) == 0
    return out


def test_missing_data_folder(capsys, tmp_path):
    line = user_error(capsys, ["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), *FAST])
    assert "does not exist" in line and not (tmp_path / "run").exists()


def test_empty_data_folder(capsys, tmp_path):
    (tmp_path / "data").mkdir()
    line = user_error(capsys, ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *FAST])
    assert "no val/ or test/" in line and not (tmp_path / "run").exists()


def test_no_class_folders(capsys, tmp_path):
    for split in ("train", "val"):
        (tmp_path / "data" / split).mkdir(parents=True)
    line = user_error(capsys, ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *FAST])
    assert "no class folders" in line and not (tmp_path / "run").exists()


def test_train_and_val_with_different_classes(capsys, tmp_path):
    make_images(tmp_path / "data", 2, 2, split="train")
    make_images(tmp_path / "data", 3, 2, split="val")
    line = user_error(capsys, ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *FAST])
    assert "different classes" in line and not (tmp_path / "run").exists()


def test_unknown_recipe(capsys, tiny_data, tmp_path):
    line = user_error(capsys, ["train", "--recipe", "lenet", "--data", str(tiny_data), "--out", str(tmp_path / "run"), *FAST])
    assert "unknown recipe" in line and not (tmp_path / "run").exists()


def test_unknown_flag(capsys, tiny_data, tmp_path):
    line = user_error(capsys, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--wings", "2"])
    assert "unrecognized arguments: --wings" in line and not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, words", [
    (["--epochs", "0"], "epochs must be a positive"),
    (["--image-size", "32"], "too small"),
    (["--pool", "3x2"], "pool must read"),
    (["--max-steps", "0"], "max-steps"),
    (["--device", "cuda:7"], "cuda"),
])
def test_bad_values(capsys, tiny_data, tmp_path, flags, words):
    argv = ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), *FAST, *flags]
    assert words in user_error(capsys, argv) and not (tmp_path / "run").exists()


def test_an_existing_run_is_never_overwritten(capsys, tiny_data, trained_run):
    before = snapshot(trained_run)
    line = user_error(capsys, ["train", "--data", str(tiny_data), "--out", str(trained_run), *FAST])
    assert "--resume" in line and snapshot(trained_run) == before


def test_resume_with_another_model_is_refused(capsys, tiny_data, trained_run):
    before = snapshot(trained_run)
    line = user_error(capsys, ["train", "--data", str(tiny_data), "--out", str(trained_run), "--resume", "--lrn", "false", *FAST])
    assert "lrn" in line and snapshot(trained_run) == before


def test_resume_with_nothing_to_resume(capsys, tiny_data, tmp_path):
    line = user_error(capsys, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--resume", *FAST])
    assert "nothing to resume" in line and not (tmp_path / "run").exists()


def test_eval_on_data_with_other_classes(capsys, tmp_path, trained_run):
    make_images(tmp_path / "other", 5, 1, split="val")
    line = user_error(capsys, ["eval", str(trained_run / "last.pt"), "--data", str(tmp_path / "other"), "--workers", "0"])
    assert "classes" in line


def test_a_checkpoint_that_does_not_match_its_model(capsys, tmp_path, tiny_data, trained_run):
    ckpt = torch.load(trained_run / "last.pt", weights_only=True)
    ckpt["config"]["model"]["towers"] = 1  # the weights are two-tower ones
    torch.save(ckpt, tmp_path / "edited.pt")
    line = user_error(capsys, ["eval", str(tmp_path / "edited.pt"), "--data", str(tiny_data), "--workers", "0"])
    assert "does not match" in line


def test_not_a_checkpoint(capsys, tmp_path, tiny_data):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    assert "not a readable checkpoint" in user_error(capsys, ["eval", str(tmp_path / "junk.pt"), "--data", str(tiny_data)])
    assert "does not exist" in user_error(capsys, ["predict", str(tmp_path / "none.pt"), str(tmp_path / "junk.pt")])


def test_predict_a_missing_image(capsys, tmp_path, trained_run):
    assert "does not exist" in user_error(capsys, ["predict", str(trained_run), str(tmp_path / "nope.jpg")])


def test_no_data_offline_says_what_to_pass(capsys, tmp_path, monkeypatch):
    import ilsvrc.data.default as default

    def offline(root):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.delenv("ILSVRC_DATA", raising=False)
    monkeypatch.setattr(default, "download_imagenette", offline)
    line = user_error(capsys, ["train", "--out", str(tmp_path / "run"), *FAST])
    assert "--data" in line and "ILSVRC_DATA" in line and not (tmp_path / "run").exists()


def test_default_data_comes_from_ilsvrc_data(tmp_path, monkeypatch, tiny_data):
    from ilsvrc.data.default import default_data

    shutil.copytree(tiny_data, tmp_path / "imagenette")
    monkeypatch.setenv("ILSVRC_DATA", str(tmp_path))
    assert default_data() == tmp_path / "imagenette"
    monkeypatch.setenv("ILSVRC_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(Exception, match="ILSVRC_DATA"):
        default_data()


def test_console_script_reports_errors_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ilsvrc", "eval", str(tmp_path / "none.pt")], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "does not exist" in r.stderr
