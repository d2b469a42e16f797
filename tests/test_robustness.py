"""Nothing silently wrong (issue 14): a diverged run, a non-finite checkpoint,
an operating-system error, a Ctrl-C at any moment, a hostile experiment
record, an existing export, an abandoned pack, Tiny ImageNet's layout and a
tampered store each end in one line on stderr with a documented exit code
(README, "Exit codes and errors"), and what was already written stays as it
was."""

import builtins
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch

from ilsvrc.cli import main
from ilsvrc.data.datasets import open_dataset

from conftest import cli_with, make_images, snapshot, started, user_error
from test_report import experiment

CPU = ["--device", "cpu", "--workers", "0", "--no-progress"]
RESNET = ["--recipe", "resnet-cifar", "--model", "resnet-20", "--batch-size", "5", *CPU]  # 24 images: 5 steps an epoch


def steps(n: int) -> list[str]:
    return ["--set", f"iterations={n}"]


@pytest.fixture(scope="module")
def good_run(tiny_data, tmp_path_factory) -> Path:
    """A run stopped after 4 of its 5 first steps: last.pt, best.pt, one row."""
    out = tmp_path_factory.mktemp("robust") / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), *RESNET, *steps(4)]) == 0
    return out


@pytest.fixture
def run(good_run, tmp_path) -> Path:
    """A copy of ``good_run`` to resume or damage."""
    return Path(shutil.copytree(good_run, tmp_path / "run"))


def strict_json_lines(path: Path) -> list[dict]:
    """Every line of ``path`` as JSON that any parser reads (no NaN, no Infinity)."""
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}, which is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def files(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes: what must not change."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}


# -- 1. divergence ------------------------------------------------------------------------------

@pytest.fixture
def poison(monkeypatch):
    """``poison(k)``: the k-th optimizer step of this process leaves NaN in the first weight."""
    def at(k: int):
        step, calls = torch.optim.SGD.step, []

        def poisoned(self, *args, **kwargs):
            out = step(self, *args, **kwargs)
            calls.append(1)
            if len(calls) == k:
                with torch.no_grad():
                    self.param_groups[0]["params"][0].fill_(float("nan"))
            return out

        monkeypatch.setattr(torch.optim.SGD, "step", poisoned)
    return at


def test_a_run_whose_loss_turns_nan_exits_3_and_writes_nothing_of_it(capsys, tiny_data, tmp_path, poison):
    poison(1)  # the second step's loss is NaN
    out = tmp_path / "run"
    line = user_error(capsys, ["train", "--data", str(tiny_data), "--out", str(out), *RESNET, *steps(3)], code=3)
    assert "training diverged by step 3: the training loss is nan" in line and "no checkpoint was written" in line
    assert not {"last.pt", "best.pt", "metrics.jsonl"} & {p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["seed"] == 0


def test_weights_that_turn_nan_after_the_last_loss_read_are_never_saved(capsys, tiny_data, run, poison):
    """The update of the last step makes the weights NaN; its loss, read
    before the update, is finite. best.pt and last.pt stay the good ones."""
    before = files(run)
    poison(1)  # resumed at step 4: the update of step 5, the last
    line = user_error(capsys, ["train", "--data", str(tiny_data), "--out", str(run), "--resume", *RESNET, *steps(5)], code=3)
    assert "training diverged by step 5: conv1.conv.weight holds NaN or infinite values" in line
    assert f"the last good checkpoint is {run / 'last.pt'}" in line
    after = files(run)
    assert all(after[name] == before[name] for name in ("last.pt", "best.pt", "metrics.jsonl"))
    strict_json_lines(run / "metrics.jsonl")


@pytest.mark.parametrize("flags", [["--set", "weight_decay=nan"], ["--set", "momentum=inf"], ["--lr", "nan"]])
def test_a_setting_that_is_not_finite_is_refused_before_anything_is_written(capsys, tiny_data, tmp_path, flags):
    line = user_error(capsys, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), *RESNET, *flags])
    assert "must be a finite number" in line and not (tmp_path / "run").exists()


# -- 2. non-finite checkpoints ---------------------------------------------------------------------

@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_a_checkpoint_with_nan_weights_is_refused(capsys, tiny_data, tmp_path, good_run, command):
    ckpt = torch.load(good_run / "last.pt", weights_only=True)
    ckpt["model"]["conv1.conv.weight"][0, 0, 0, 0] = float("inf")
    torch.save(ckpt, tmp_path / "diverged.pt")
    image = next((tiny_data / "val" / "class0").iterdir())
    argv = {"eval": ["eval", str(tmp_path / "diverged.pt"), "--data", str(tiny_data), *CPU],
            "predict": ["predict", str(tmp_path / "diverged.pt"), str(image), "--device", "cpu"],
            "export": ["export", str(tmp_path / "diverged.pt"), str(tmp_path / "m.pt")]}[command]
    line = user_error(capsys, argv)
    assert "diverged.pt holds NaN or infinite weights (conv1.conv.weight)" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diverged.pt"]


# -- 3. the operating system's errors --------------------------------------------------------------

@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: creating or writing anything in ``folder`` fails
    with "Permission denied", as in a folder without write permission (a
    real chmod, and the same refusal simulated, since root ignores chmod)."""
    made = []

    def denied(path) -> bool:
        return any(Path(os.fsdecode(path)).resolve().is_relative_to(f) for f in made)

    def refuse(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    real_mkdir, real_os_open, real_open = os.mkdir, os.open, builtins.open

    def mkdir(path, *args, **kwargs):
        if denied(path) and not os.path.lexists(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if denied(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and denied(file) and set(mode) & set("wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o555)
        made.append(folder.resolve())
        return folder

    yield make
    for folder in made:
        os.chmod(folder, 0o755)


@pytest.mark.parametrize("command", ["train", "pack", "export", "stats", "report"])
def test_a_read_only_folder_is_one_line(capsys, monkeypatch, tiny_data, tmp_path, good_run, read_only, command):
    ro = read_only(tmp_path / "ro")
    exp = experiment(tmp_path / "exp", "vgg", [])
    if command == "stats":
        monkeypatch.setenv("ILSVRC_CACHE", str(ro / "cache"))
    argv = {"train": ["train", "--data", str(tiny_data), "--out", str(ro), *RESNET, *steps(1)],
            "pack": ["pack", str(tiny_data), str(ro / "store"), "--size", "16", "--workers", "0", "--no-progress"],
            "export": ["export", str(good_run), str(ro / "m.pt")],
            "stats": ["stats", str(tiny_data), "--recipe", "resnet-cifar", "--workers", "0", "--no-progress"],
            "report": ["report", str(exp), "--out", str(ro / "report")]}[command]
    line = user_error(capsys, argv)
    assert "Permission denied" in line and str(ro) in line
    assert snapshot(ro) == {}


def test_out_naming_a_file_is_one_line(capsys, tiny_data, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    line = user_error(capsys, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "notes.txt"), *RESNET])
    assert "is a file, not a folder" in line and (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell which file a descriptor is")
def test_a_full_disk_while_saving_keeps_the_old_checkpoint(capsys, monkeypatch, tiny_data, run):
    """The disk fills up as last.pt is written: one line naming it, exit 2,
    the old last.pt in place (a --resume goes on from it), no temporary file."""
    last = (run / "last.pt").read_bytes()
    fsync = os.fsync

    def full(fd):
        if "last.pt" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    line = user_error(capsys, ["train", "--data", str(tiny_data), "--out", str(run), "--resume", *RESNET, *steps(6)])
    assert line == f"ilsvrc train: error: No space left on device: {run / 'last.pt'}"
    assert (run / "last.pt").read_bytes() == last and not list(run.glob(".*.tmp"))
    monkeypatch.setattr(os, "fsync", fsync)
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--resume", *RESNET, *steps(6)]) == 0
    assert [r["step"] for r in strict_json_lines(run / "metrics.jsonl")] == [4, 5, 6]


# -- 4. Ctrl-C ------------------------------------------------------------------------------------

def finishes(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "terminate called" not in err, err
    return lines[0]


def test_a_second_ctrl_c_inside_a_checkpoint_write_waits_for_the_file(tiny_data, tmp_path):
    """Both Ctrl-C come while torch.save writes last.pt (its C++ writer calls
    the file's write): the file is finished, then the run stops at once."""
    kick = """
        import torch
        save = torch.save

        class Kicking:  # a file that presses Ctrl-C on its 2nd and 3rd writes
            def __init__(self, f):
                self.f, self.n = f, 0
            def write(self, b):
                self.n += 1
                if self.n in (2, 3):
                    os.kill(os.getpid(), signal.SIGINT)
                return self.f.write(b)
            def __getattr__(self, name):
                return getattr(self.f, name)

        def kicking_save(obj, f, *args, **kwargs):
            return save(obj, Kicking(f) if isinstance(obj, dict) and "optimizer" in obj else f, *args, **kwargs)

        torch.save = kicking_save
    """
    out = tmp_path / "run"
    r = finishes(cli_with(tmp_path, kick) + ["train", "--data", str(tiny_data), "--out", str(out), *RESNET,
                                             *steps(20), "--checkpoint-minutes", "0"])
    assert r.returncode == 130 and one_line(r.stderr) == "ilsvrc train: interrupted", r.stderr
    assert torch.load(out / "last.pt", weights_only=True)["step"] >= 1 and not list(out.glob(".*.tmp"))


def test_ctrl_c_twice_while_training_is_one_line_and_130(tiny_data, tmp_path):
    out = tmp_path / "run"
    cmd = cli_with(tmp_path) + ["train", "--data", str(tiny_data), "--out", str(out), *RESNET, *steps(100000),
                                "--checkpoint-minutes", "0"]  # a checkpoint every step: the second Ctrl-C may well land in one
    proc = started(cmd, until=out / "metrics.jsonl")  # an epoch is done: the run is well under way
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert one_line(err).startswith("ilsvrc train: interrupted")
    torch.load(out / "last.pt", weights_only=True)


@pytest.mark.parametrize("moment", ["ilsvrc.data.folders:_items", "ilsvrc.data.stats:compute"])
def test_ctrl_c_during_start_up_is_one_line_and_130(tiny_data, tmp_path, moment):
    """While the data folder is listed, or its statistics computed."""
    module, name = moment.split(":")
    patch = f"""
        import {module} as module
        real = module.{name}

        def interrupted(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)
            return real(*args, **kwargs)

        module.{name} = interrupted
    """
    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))  # statistics not yet cached
    r = finishes(cli_with(tmp_path, patch) + ["train", "--data", str(data), "--out", str(tmp_path / "run"), *RESNET])
    assert r.returncode == 130 and one_line(r.stderr) == "ilsvrc train: interrupted"
    assert not (tmp_path / "run").exists()


def test_ctrl_c_while_torch_is_imported_is_one_line_and_130():
    """The command's entry point (src/ilsvrc_command.py) runs before the
    package and torch are imported; a Ctrl-C during that import (simulated:
    an import hook raises KeyboardInterrupt where torch is imported, as the
    signal would) ends with one line, not a traceback."""
    code = textwrap.dedent("""
        import sys

        class CtrlC:
            def find_spec(self, name, path=None, target=None):
                if name == "torch":
                    raise KeyboardInterrupt

        sys.meta_path.insert(0, CtrlC())
        import ilsvrc_command
        sys.exit(ilsvrc_command.main(["models"]))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 130 and r.stderr == "ilsvrc: interrupted\n"
    commands = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert commands["ilsvrc"] == "ilsvrc_command:main"  # the installed command starts there


# -- 5. ilsvrc report -----------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["absolute", "parent", "link"])
def test_report_reads_no_figure_outside_the_experiment_folder(capsys, tmp_path, where):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not yours")
    exp = experiment(tmp_path / "exp", "vgg", [])
    record = json.loads((exp / "experiment.json").read_text())
    if where == "link":
        (exp / "link.png").symlink_to(secret)
    record["figures"] = [{"file": {"absolute": str(secret), "parent": "../secret.png", "link": "link.png"}[where]}]
    (exp / "experiment.json").write_text(json.dumps(record))
    line = user_error(capsys, ["report", str(exp), "--out", str(tmp_path / "out")])
    assert "is outside" in line and str(exp) in line and not (tmp_path / "out").exists()


def test_report_markdown_shows_record_text_as_text(tmp_path):
    exp = experiment(tmp_path / "exp", "<script>alert(1)</script>", [], notes=["<img src=x onerror=alert(2)>"],
                     command="ilsvrc `<b>`")
    assert main(["report", str(exp), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "<script>" not in md and "<img" not in md and "<b>" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "&lt;img src=x onerror=alert(2)&gt;" in md
    assert "<script>alert(1)" not in (tmp_path / "out" / "report.html").read_text()


# -- 6. export ------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")
def test_export_overwrites_only_with_force(capsys, good_run, tmp_path):
    out = tmp_path / "m.pt"
    assert main(["export", str(good_run), str(out)]) == 0
    before = files(tmp_path)
    capsys.readouterr()
    line = user_error(capsys, ["export", str(good_run), str(out)])
    assert "exists; pass --force" in line and files(tmp_path) == before
    out.unlink()  # the sidecar alone is not overwritten either
    assert "m.pt.json exists" in user_error(capsys, ["export", str(good_run), str(out)])
    assert main(["export", str(good_run), str(out), "--force"]) == 0 and out.is_file()


# -- 7. pack --------------------------------------------------------------------------------------

def a_dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_pack_removes_the_partial_folder_of_a_pack_that_died(capsys, tiny_data, tmp_path):
    partial = tmp_path / f".store.partial-{a_dead_pid()}"
    (partial / "train-00000.bin").parent.mkdir()
    (partial / "train-00000.bin").write_bytes(b"half")
    assert main(["pack", str(tiny_data), str(tmp_path / "store"), "--size", "16", "--workers", "0", "--no-progress"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_pack_leaves_a_living_packs_partial_folder_alone(capsys, tiny_data, tmp_path):
    partial = tmp_path / f".store.partial-{os.getppid()}"  # a process that is surely alive
    partial.mkdir()
    line = user_error(capsys, ["pack", str(tiny_data), str(tmp_path / "store"), "--size", "16", "--workers", "0"])
    assert f"process {os.getppid()} is packing into" in line and str(partial) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [partial.name]


# -- 8. Tiny ImageNet's layout ---------------------------------------------------------------------

WNIDS = ["n01443537", "n01629819", "n01641577"]


def tiny_imagenet(root: Path) -> list[tuple[str, str]]:
    """Tiny ImageNet's layout, three classes: train/<wnid>/images/, and
    val/images/ with val_annotations.txt; returns the (file, wnid) of val."""
    make_images(root / "gen", 3, 5, split="train", seed=5)
    make_images(root / "gen", 3, 2, split="val", seed=6)
    val = []
    for c, wnid in enumerate(WNIDS):
        (root / "train" / wnid / "images").mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i, f in enumerate(sorted((root / "gen" / "train" / f"class{c}").iterdir())):
            f.rename(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
        for f in sorted((root / "gen" / "val" / f"class{c}").iterdir()):
            val.append((f"val_{len(val)}.JPEG", wnid))
            (root / "val" / "images").mkdir(parents=True, exist_ok=True)
            f.rename(root / "val" / "images" / val[-1][0])
    shutil.rmtree(root / "gen")
    (root / "val" / "val_annotations.txt").write_text("".join(f"{f}\t{w}\t0\t0\t31\t31\n" for f, w in val))
    return val


def test_tiny_imagenet_is_read_with_its_val_annotations(capsys, tmp_path):
    val = tiny_imagenet(tmp_path / "tiny")
    d = open_dataset(tmp_path / "tiny")
    assert d.classes == WNIDS and len(d.train) == 15 and all("/images/" in p for p, _ in d.train.items)
    assert [(Path(p).name, d.classes[c]) for p, c in d.heldout.items] == val
    assert main(["train", "--data", str(tmp_path / "tiny"), "--out", str(tmp_path / "run"), *RESNET, *steps(2)]) == 0
    assert strict_json_lines(tmp_path / "run" / "metrics.jsonl")[-1]["step"] == 2


def test_a_bad_val_annotation_line_is_one_line(capsys, tmp_path):
    tiny_imagenet(tmp_path / "tiny")
    with open(tmp_path / "tiny" / "val" / "val_annotations.txt", "a") as f:
        f.write("missing.JPEG\tn01443537\t0\t0\t1\t1\n")
    line = user_error(capsys, ["stats", str(tmp_path / "tiny"), "--recipe", "resnet-cifar", "--workers", "0"])
    assert "val_annotations.txt, line 7" in line and "missing.JPEG does not exist" in line


# -- 9. a tampered store ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store") / "store"
    assert main(["pack", str(tiny_data), str(out), "--size", "32", "--workers", "0", "--no-progress"]) == 0
    return out


@pytest.mark.parametrize("file, tamper", [
    ("stats.pt", lambda p: torch.save([1, 2, 3], p)),
    ("stats.pt", lambda p: torch.save({"mean_image": "a word"}, p)),
    ("stats.pt", lambda p: p.write_bytes(b"\x80\x04junk")),
    ("train.labels.npy", lambda p: np.save(p, np.array([{"a": 1}] * 24, dtype=object), allow_pickle=True)),
    ("train.labels.npy", lambda p: np.save(p, np.arange(23))),
    ("val.labels.npy", lambda p: np.save(p, np.full(12, 7))),
], ids=["list", "dict", "junk", "object-array", "short", "out-of-range"])
def test_a_tampered_store_file_is_one_line_naming_it(capsys, store, tmp_path, file, tamper):
    copy = Path(shutil.copytree(store, tmp_path / "store"))
    tamper(copy / file)
    line = user_error(capsys, ["stats", str(copy), "--recipe", "resnet-cifar", "--workers", "0", "--no-progress"])
    assert str(copy / file) in line and "pack the store again" in line
