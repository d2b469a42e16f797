"""benchmarks/cifar_recipe.py runs both loops end to end on a tiny generated
32x32 dataset and reports finite figures for each (no timing thresholds),
and test errors that are those of the networks the loops end with."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_benchmark, make_images
from ilsvrc.data.store import is_store, open_store
from test_train import heldout_errors


@pytest.fixture(scope="module")
def cifar_like(tmp_path_factory):
    """36 training images, 12 of each class; 7 test images: 4, 2 and 1 of the
    classes, so that the test errors are k/7 (of a network that answers one
    class for every image, as a few steps give: 3/7, 5/7 or 6/7), none of
    them a balanced split's but 0 and 100."""
    root = tmp_path_factory.mktemp("cifar-like")
    make_images(root, 3, 12, size=(32, 32), seed=7, split="train")
    make_images(root, 3, 4, size=(32, 32), seed=8, split="test")
    for c, keep in ((1, 2), (2, 1)):
        for image in sorted((root / "test" / f"class{c}").iterdir())[keep:]:
            image.unlink()
    return root


def final_networks(bench, monkeypatch) -> dict:
    """What the two loops end with, kept as they run: the stock loop's
    network (from the benchmark's ``build``) and the test errors of ilsvrc's
    last.pt, recomputed (``heldout_errors``) before its temporary run folder
    goes."""
    kept, build, train = {}, bench.build, bench.ilsvrc.train

    def keep_network(*args, **kwargs):
        kept["stock"] = build(*args, **kwargs)
        return kept["stock"]

    def keep_errors(recipe, data, out, **kwargs):
        row = train(recipe, data, out, **kwargs)
        kept["ilsvrc"] = heldout_errors(Path(out) / "last.pt", data)
        return row

    monkeypatch.setattr(bench, "build", keep_network)
    monkeypatch.setattr(bench.ilsvrc, "train", keep_errors)
    return kept


def tutorial_test_error(model: torch.nn.Module, data: Path) -> float:
    """Top-1 error (percent) of the stock loop's network on the test split of
    ``data`` (the files, or a packed store's JPEG files) as PIL decodes it,
    normalised as the tutorials do, recomputed here."""
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
    if is_store(data):
        split = open_store(data).heldout
        images = [(Image.open(io.BytesIO(split.encoded(i).tobytes())), int(split.labels[i]))
                  for i in range(len(split))]
    else:
        classes = sorted(p.name for p in (data / "test").iterdir())
        images = [(Image.open(f), c) for c, name in enumerate(classes)
                  for f in sorted((data / "test" / name).iterdir())]
    x = torch.stack([torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).float() / 255 for img, _ in images])
    model.eval()
    with torch.no_grad():
        predicted = model((x - mean.view(3, 1, 1)) / std.view(3, 1, 1)).argmax(1)
    return 100.0 * (predicted != torch.tensor([label for _, label in images])).sum().item() / len(images)


def test_both_loops_run_the_recipe_and_report(cifar_like, tmp_path, capsys, monkeypatch):
    bench = load_benchmark("cifar_recipe")
    kept = final_networks(bench, monkeypatch)
    out = tmp_path / "r.json"
    assert bench.main(["--data", str(cifar_like), "--iterations", "4", "--device", "cpu", "--workers", "0",
                       "--no-progress", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["schedule"] == {"iterations": 4, "milestones": [2, 3]}  # 32k and 48k of 64k, kept in place
    for side in ("stock", "ilsvrc"):
        assert r[side]["steps"] == 4
        assert math.isfinite(r[side]["images_per_s"]) and math.isfinite(r[side]["wall_s"])  # sizes: the machine's
    # the test errors of the networks the loops ended with, on the 7 test images
    assert r["stock"]["test_error"] == tutorial_test_error(kept["stock"], cifar_like)
    assert r["ilsvrc"]["test_error"] == kept["ilsvrc"]["top1_error"] and kept["ilsvrc"]["images"] == 7
    assert r["ratios"]["images_per_s"] == r["ilsvrc"]["images_per_s"] / r["stock"]["images_per_s"]
    o = r["ilsvrc"]  # where the wall time went: the steps and the validations (printed; their sizes not asserted)
    assert math.isfinite(o["steps_s"]) and math.isfinite(o["validation_s"])
    printed = capsys.readouterr().out
    assert "ilsvrc / stock" in printed and "test error" in printed and "+ validation" in printed


def test_without_data_it_says_what_to_pass(monkeypatch, tmp_path, capsys):
    bench = load_benchmark("cifar_recipe")
    monkeypatch.setattr(bench, "default_data", lambda dataset: None)
    with pytest.raises(SystemExit) as e:
        bench.main(["--device", "cpu"])
    assert e.value.code == 2 and "--data" in capsys.readouterr().err


def test_from_a_packed_store_the_stock_loop_reads_its_files_and_can_be_shorter(cifar_like, tmp_path, capsys,
                                                                                monkeypatch):
    """The store is what travels to a GPU machine: both loops read it, and
    --stock-iterations shortens the tutorial loop alone (its rate is still a
    rate; the wall-time ratio is left out)."""
    from ilsvrc.data.store import pack

    store = tmp_path / "store"
    pack(cifar_like, store, size=32, encoding="jpeg", workers=0, progress=False)
    bench = load_benchmark("cifar_recipe")
    kept = final_networks(bench, monkeypatch)
    out = tmp_path / "r.json"
    assert bench.main(["--data", str(store), "--iterations", "4", "--stock-iterations", "2", "--device", "cpu",
                       "--workers", "0", "--no-progress", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["stock"]["steps"] == 2 and r["ilsvrc"]["steps"] == 4
    assert math.isfinite(r["stock"]["images_per_s"])
    # the test errors of the networks the loops ended with, on the store's 7 test images
    assert r["stock"]["test_error"] == tutorial_test_error(kept["stock"], store)
    assert r["ilsvrc"]["test_error"] == kept["ilsvrc"]["top1_error"] and kept["ilsvrc"]["images"] == 7
    assert set(r["ratios"]) == {"images_per_s"}
    assert "less wall time" not in capsys.readouterr().out
