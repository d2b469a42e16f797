"""Training (AlexNet Sec. 5): it learns, it logs, and it resumes exactly.

The tests of what the trainer does around AlexNet (resuming, logging, the
schedule, the checkpoint's use) build its fc6 and fc7 narrow (``narrow``,
conftest.narrow_heads); the learning test trains the paper's network."""

import json
import math
import os
import random
import signal
import subprocess

import pytest
import torch
from torch.nn import functional as F

from ilsvrc import UserError, evaluate, predict, train
from ilsvrc.cli import main
from ilsvrc.data.datasets import open_dataset
from ilsvrc.models import build

from conftest import NARROW_PATCH, cli_with, started

SMALL = dict(image_size=64, device="cpu", workers=0, progress=False)


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def heldout_errors(checkpoint, data=None, crops: int | None = None) -> dict:
    """Top-1 and top-5 error (percent) of a checkpoint on the held-out split
    of ``data`` (default: the data it was trained on), recomputed here apart
    from evaluate.py, metrics.py and the batch sources, one image at a time
    in float32: the stored square minus the training set's mean (image or
    RGB), rescaled to test_resize; its centre crop (``crops`` 1) or the ten
    crops (the corners and centre of the square and of its reflection); the
    softmax averaged over them; a miss where the label is not the first (not
    among the first five). ``crops``: default the recipe's test_crops, as
    training validates."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    plan, d = ckpt["config"], ckpt["config"]["data"]
    model = build(plan["network"], len(ckpt["classes"]), d["image_size"], **plan["model"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    split = open_dataset(data or ckpt["data_root"], need_train=False).heldout
    s, q = d["image_size"], d.get("test_resize") or d["resize"]
    mean = ckpt["stats"]["mean_image"] if d["mean"] == "image" else ckpt["stats"]["mean_rgb"].view(3, 1, 1)
    room = q - s
    c = round(room / 2.0)  # torchvision's center_crop
    places = [(c, c)] if (crops or d["test_crops"]) == 1 else [(0, 0), (0, room), (room, 0), (room, room), (c, c)]
    misses = [0, 0]
    with torch.no_grad():
        for i, label in enumerate(split.labels):
            x = split.read(i, d["resize"]).float() - mean
            if x.shape[-1] != q:
                x = F.interpolate(x[None], size=(q, q), mode="bilinear", antialias=True, align_corners=False)[0]
            squares = (x,) if len(places) == 1 else (x, x.flip(-1))
            views = torch.stack([sq[:, t : t + s, l : l + s] for sq in squares for t, l in places])
            top = F.softmax(model(views), dim=1).mean(0).topk(min(5, len(ckpt["classes"]))).indices.tolist()
            misses[0] += top[0] != int(label)
            misses[1] += int(label) not in top
    n = len(split.labels)
    return {"top1_error": 100.0 * misses[0] / n, "top5_error": 100.0 * misses[1] / n, "images": n}


def unbalanced_heldout(data, out, counts=(4, 2, 1)):
    """A held-out split of ``counts[c]`` of the images of data/val/class``c``
    (links): 7 images, so that no error of its (k/7) is one of the 12
    balanced held-out images' or the 24 training images' (k/12, k/24) but
    0 and 100, and a network that answers one class for every image (as a
    few steps of AlexNet on these images do) scores 3/7, 5/7 or 6/7, never
    2/3 as on every balanced split."""
    for c, count in enumerate(counts):
        (out / "val" / f"class{c}").mkdir(parents=True)
        for image in sorted((data / "val" / f"class{c}").iterdir())[:count]:
            (out / "val" / f"class{c}" / image.name).symlink_to(image)
    return out


def test_training_lowers_the_loss_and_beats_chance(learn_data, tmp_path):
    """Four classes (chance: 75% top-1 error), 6 epochs of 600 images on the CPU.

    The paper's biases of 1 make the first steps of a small-batch run blow up
    the loss (fc7's outputs all start near 1, so fc8's gradient is coherent),
    so this test starts the biases at 0; everything else is the paper's."""
    train("alexnet", learn_data, tmp_path / "run", epochs=6, batch_size=32, bias_init=0.0, **SMALL)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6] and all(r["complete"] for r in rows)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.1
    assert rows[-1]["val_top1_error"] < 65.0


@pytest.mark.parametrize("data_loader", ["resident", "workers"])
def test_resume_ends_where_the_uninterrupted_run_ends(tiny_data, tmp_path, data_loader, narrow):
    # 24 images in batches of 5: 5 steps an epoch; stop mid-epoch at 4, go on to 8
    common = dict(epochs=3, batch_size=5, seed=7, data_loader=data_loader, **SMALL)
    train("alexnet", tiny_data, tmp_path / "once", max_steps=8, **common)
    train("alexnet", tiny_data, tmp_path / "twice", max_steps=4, **common)
    ckpt = torch.load(tmp_path / "twice" / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["position"], ckpt["step"]) == (0, 4, 4)
    if data_loader == "workers":  # a checkpoint of format 1 (the position under "batch") resumes the same
        ckpt["format"], ckpt["batch"] = 1, ckpt.pop("position")
        torch.save(ckpt, tmp_path / "twice" / "last.pt")
    train("alexnet", tiny_data, tmp_path / "twice", max_steps=8, resume=True, **common)
    a, b = weights(tmp_path / "once" / "last.pt"), weights(tmp_path / "twice" / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)


def test_run_directory_contents(tiny_data, tmp_path, narrow):
    out = tmp_path / "run"
    row = train("alexnet", tiny_data, out, epochs=2, batch_size=8, **SMALL)
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "tb", "last.pt", "best.pt"}
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tb").iterdir())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[-1] == row
    for key in ("train_loss", "train_error", "val_top1_error", "val_top5_error", "lr", "images_per_s", "epoch_time_s",
                "val_time_s"):
        assert key in row
    assert math.isfinite(row["val_time_s"])  # its size is the machine's
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["classes"] == ["class0", "class1", "class2"]
    assert ckpt["config"]["optim"]["momentum"] == 0.9 and ckpt["config"]["data"]["resize"] == 73
    assert ckpt["stats"]["mean_image"].shape == (3, 73, 73)
    assert not list(out.glob(".*tmp"))  # no temporary files left behind


def test_learning_rate_is_divided_when_validation_stops_improving(tiny_data, tmp_path, narrow):
    # lr 0 keeps the validation error flat, so with patience 0 every epoch
    # after the first divides it, three times and no more
    train("alexnet", tiny_data, tmp_path / "run", epochs=6, batch_size=24, lr=1e-30, patience=0, **SMALL)
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lrs[0] == pytest.approx(1e-30)
    assert lrs[-1] == pytest.approx(1e-33)  # three divisions by 10 (Sec. 5)
    assert sorted(set(lrs), reverse=True) == pytest.approx([1e-30, 1e-31, 1e-32, 1e-33])


def test_eval_and_predict_work_from_the_checkpoint_alone(tiny_data, tmp_path, capsys, narrow):
    out = tmp_path / "run"
    train("alexnet", tiny_data, out, epochs=1, batch_size=8, **SMALL)
    heldout = unbalanced_heldout(tiny_data, tmp_path / "heldout")
    r = evaluate(out / "last.pt", heldout, ten_crop=True, device="cpu", workers=0, progress=False)
    mine = heldout_errors(out / "last.pt", heldout, crops=10)  # recomputed apart from evaluate.py
    assert r["crops"] == 10 and r["split"] == str(heldout / "val")
    assert (r["images"], r["top1_error"], r["top5_error"]) == (7, mine["top1_error"], mine["top5_error"])
    # three classes, fewer than six: every label is among the top five, so the top-5 error is 0 (top-5 on
    # more classes: test_evaluate_views.py)
    assert r["top5_error"] == 0.0 <= r["top1_error"]
    capsys.readouterr()
    assert main(["eval", str(out / "last.pt"), "--data", str(heldout), "--ten-crop", "--json", "--workers", "0", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["top1_error"] == pytest.approx(r["top1_error"])
    assert main(["eval", str(out), "--workers", "0", "--no-progress"]) == 0  # the data it was trained on
    assert "top-1 error" in capsys.readouterr().out
    image = next((tiny_data / "val" / "class2").iterdir())
    (res,) = predict(out / "best.pt", [image], device="cpu")
    assert len(res["top"]) == 3 and sum(t["probability"] for t in res["top"]) == pytest.approx(1.0, abs=1e-5)
    assert main(["predict", str(out), str(image)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(image) and len(lines) == 4 and all("%" in line for line in lines[1:])


# The process kills itself at its k-th event: an optimizer step done, or a
# file about to be synced (a checkpoint written but not yet renamed into place).
KILL = """
    import torch
    from ilsvrc import schedule

    torch.set_num_threads(1)  # the run never killed trains beside the others, on the other core
    kill_at, events = int(os.environ["KILL_AT"]), [0]

    def event():
        events[0] += 1
        if events[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    after_step, fsync = schedule.Schedule.after_step, os.fsync

    def step_then_event(self, step):
        after_step(self, step)
        event()

    def event_then_fsync(fd):
        event()
        fsync(fd)

    schedule.Schedule.after_step, os.fsync = step_then_event, event_then_fsync
"""


def test_killed_training_ends_bitwise_where_the_uninterrupted_run_ends(tiny_data, tmp_path):
    """SIGKILL at 5 random moments (seeded), each followed by --resume (or a
    fresh start where no last.pt was written yet): the weights at the end are
    bitwise those of the run never killed, and every epoch is logged once.
    A checkpoint every step (--checkpoint-minutes 0) puts kills inside writes."""
    def cmd(out):
        return cli_with(tmp_path, KILL) + [
            "train", "--data", str(tiny_data), "--out", str(out), "--recipe", "resnet-cifar", "--model", "resnet-20",
            "--set", "iterations=24", "--batch-size", "4", "--checkpoint-minutes", "0", "--device", "cpu", "--workers", "0",
            "--no-progress"] + (["--resume"] if (out / "last.pt").exists() else [])

    def env(kill_at: int) -> dict:
        return os.environ | {"KILL_AT": str(kill_at)}

    once = subprocess.Popen(cmd(tmp_path / "once"), env=env(0), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out, rng = tmp_path / "killed", random.Random(14)
    for kill_at in [rng.randint(1, 9) for _ in range(5)]:  # at most 4 of the 24 steps each: every one is killed
        r = subprocess.run(cmd(out), env=env(kill_at), capture_output=True, text=True, timeout=300)
        assert r.returncode == -signal.SIGKILL, r.stderr
    r = subprocess.run(cmd(out), env=env(0), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert once.wait(timeout=300) == 0, once.stderr.read()
    a, b = weights(tmp_path / "once" / "last.pt"), weights(out / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def rows(run):
        return [(r["epoch"], r["step"], r["train_loss"], r["val_top1_error"])
                for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]

    assert rows(out) == rows(tmp_path / "once") and [r[1] for r in rows(out)] == [6, 12, 18, 24]


def test_sigterm_saves_the_place_and_exits_130(tiny_data, tmp_path):
    out = tmp_path / "run"
    cmd = cli_with(tmp_path, NARROW_PATCH) + ["train", "--data", str(tiny_data), "--out", str(out), "--epochs", "50",
           "--batch-size", "4", "--image-size", "64", "--device", "cpu", "--workers", "0", "--no-progress"]
    proc = started(cmd, until=out / "last.pt")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err.strip().splitlines()[-1]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] >= 6


def test_compiled_training_matches_eager(tiny_data, tmp_path, narrow):
    common = dict(epochs=1, batch_size=8, seed=1, max_steps=2, dropout=0.0, **SMALL)
    train("alexnet", tiny_data, tmp_path / "eager", compile=False, **common)
    train("alexnet", tiny_data, tmp_path / "compiled", compile=True, **common)
    a, b = weights(tmp_path / "eager" / "last.pt"), weights(tmp_path / "compiled" / "last.pt")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)


def test_files_written_atomically_get_ordinary_permissions(tmp_path):
    """Checkpoints and exports are shared: mkstemp's owner-only 0600 must not stick."""
    from ilsvrc.checkpoint import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "f", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("lr, words", [(float("nan"), "lr must be a finite number"), (float("inf"), "lr must be a finite number"),
                                       (0.0, "learning rate must be a positive number"),
                                       (-0.1, "learning rate must be a positive number")])
def test_a_learning_rate_that_is_not_a_positive_number_is_refused(tiny_data, tmp_path, lr, words):
    with pytest.raises(UserError, match=words):
        train("resnet-cifar", tiny_data, tmp_path / "run", device="cpu", workers=0, progress=False,
                     model="resnet-20", iterations=2, lr=lr)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_diverging_run_stops_with_an_error_and_saves_nothing_of_it(tiny_data, tmp_path):
    """lr 1e6: the loss or the weights are NaN after the first steps; the run
    stops at the next read of the sums (here the end of the first epoch),
    before a validation row or a checkpoint of NaN weights is written. Which
    of the two is NaN first depends on the arithmetic (torch 2.14: the loss;
    torch 2.6 and 2.7: the weights after the epoch's last update, the losses
    before it finite): either is news of the divergence."""
    run = tmp_path / "run"
    caught = r"(the training loss is (nan|inf)|\S+ holds NaN or infinite values)"
    with pytest.raises(UserError, match=f"training diverged by step 5: {caught}"):
        train("resnet-cifar", tiny_data, run, device="cpu", workers=0, progress=False, data_loader="resident",
                     model="resnet-20", batch_size=5, iterations=20, milestones=[10], lr=1e6)
    assert not (run / "last.pt").exists() and not (run / "best.pt").exists() and not (run / "metrics.jsonl").exists()


def test_a_second_run_into_a_folder_in_use_is_refused(tiny_data, tmp_path):
    """While one process trains into --out (it holds out/.lock), another
    train into the same folder, fresh or --resume, stops with one line and
    writes nothing there."""
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "a") as held:  # what a running `ilsvrc train` holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match="another ilsvrc train is writing to"):
            train("resnet-cifar", tiny_data, run, device="cpu", workers=0, progress=False, model="resnet-20", iterations=2)
        assert {p.name for p in run.iterdir()} == {".lock"}
    train("resnet-cifar", tiny_data, run, device="cpu", workers=0, progress=False, model="resnet-20", iterations=2)
    assert (run / "last.pt").exists()  # released: the folder takes a run again
