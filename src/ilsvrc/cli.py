"""The ``ilsvrc`` command: parses arguments and calls the Python API.

A ``UserError``, an argument mistake or an error the operating system reports
(read-only folder, no space left, permission denied) is printed as one line on
stderr with exit code 2; a diverged run exits with 3, an interrupted one with
130 (README, "Exit codes and errors"). Everything here can be done from
Python: ``ilsvrc.train``, ``ilsvrc.evaluate``, ``ilsvrc.predict``,
``ilsvrc.stats``.
"""

import argparse
import json
import signal
import sys
import warnings
from pathlib import Path

from . import __version__, recipes
from .data.sources import KINDS as LOADERS
from .device import PRECISIONS
from .errors import Diverged, Interrupted, UserError
from .evaluate import VIEWS
from .experiments import BUDGETS
from .export import FORMATS as EXPORT_FORMATS
from .models.alexnet import REMOVABLE
from .models.layers import ACTIVATIONS
from .step import ALIASES, MODES


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is in --help), and no
    abbreviated flags (``--epoch`` is not silently ``--epochs``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_bool(text: str) -> bool:
    """A boolean from the command line: true/false, 1/0, yes/no or on/off, in any case."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


def parse_compile(text: str) -> bool | str:
    """A compile setting from the command line: a boolean or a mode name."""
    text = ALIASES.get(text, text)
    if text in MODES:
        return text
    try:
        return parse_bool(text)
    except ValueError:
        raise ValueError(f"expected true, false or one of {', '.join(MODES)}, not {text!r}") from None


def _typed(parse):
    """An argparse type from ``parse`` (text -> value, ValueError for a bad
    one): the ValueError's message is argparse's error."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


def _val_labels(p: argparse.ArgumentParser) -> None:
    p.add_argument("--val-labels", metavar="FILE",
                   help="the labels of a flat val/ (or test/): Kaggle's LOC_val_solution.csv, lines IMAGE,CLASS or IMAGE"
                   " CLASS, or one class a line in file name order (WordNet ids, or the devkit's"
                   " ILSVRC2012_validation_ground_truth.txt with its meta.mat beside it); Kaggle's layout needs none")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (default: the GPU if any), cpu, cuda, cuda:N")
    p.add_argument("--workers", type=int, default=None, help="loader worker processes (default: one per core, up to 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ilsvrc", description="The ConvNets that won ImageNet, as their papers describe them.")
    parser.add_argument("--version", action="version", version=f"ilsvrc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_train_arguments, _eval_arguments, _predict_arguments, _pack_arguments, _export_arguments,
                _models_arguments, _experiment_arguments, _report_arguments, _data_arguments, _stats_arguments):
        add(sub)
    return parser


def _train_arguments(sub) -> None:
    t = sub.add_parser("train", help="train a recipe (default: the AlexNet paper's)")
    t.add_argument("--recipe", default="alexnet", help="recipe name (default: alexnet; `ilsvrc models` lists them)")
    t.add_argument("--model", help="another network of the recipe than its default (e.g. resnet-110 with --recipe resnet-cifar)")
    t.add_argument("--data", help="a dataset's name (`ilsvrc data` lists them: cifar10, imagenette...), an ImageFolder root with"
                   " train/ and val/, or Kaggle's ImageNet (default: $ILSVRC_DATA/imagenette, or Imagenette downloaded to"
                   " the cache)")
    _val_labels(t)
    t.add_argument("--out", help="run directory (default: runs/RECIPE)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--epochs", type=int, help="recipe override: epochs")
    t.add_argument("--batch-size", type=int, help="recipe override: batch size")
    t.add_argument("--lr", type=float, help="recipe override: initial learning rate")
    t.add_argument("--image-size", type=int, help="recipe override: network input size (the rescaled size follows: 224 of 256)")
    t.add_argument("--max-steps", type=int, help="stop after this many optimizer steps in all")
    t.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    t.add_argument("--preset", choices=recipes.PRESETS,
                   help="demo: the recipe's network and pipeline at a size that trains in minutes on a CPU (its [demo]"
                   " values; the flags given win)")
    t.add_argument("--runs", type=int, default=1, metavar="N",
                   help="train N runs, seeds SEED to SEED+N-1, side by side into OUT/seed<S>, and print each figure's"
                   " mean ± std over them (default: 1)")
    t.add_argument("--stack", action="store_true",
                   help="with --runs: the runs take their steps as one stacked step (the whole step on resident data,"
                   " networks without dropout) instead of taking turns")
    t.add_argument("--loader", default="auto", choices=LOADERS,
                   help="resident: decode once, keep on the device; stream: decode a packed store on the device batch by batch;"
                   " workers: decode on the CPU every epoch (default: auto)")
    t.add_argument("--compile", type=_typed(parse_compile), metavar="MODE",
                   help="how the training step runs: true, false, or eager, default (the compiled network),"
                   " graph (the whole step compiled as one graph, replayed as one CUDA graph on a GPU) (default:"
                   " graph on one GPU, default under torchrun, eager on the CPU)")
    t.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="the forward pass's arithmetic: auto (bf16 autocast on a GPU, float32 on a CPU), float32, or"
                   " bf16 (autocast on a CPU too, to check the GPU's arithmetic without one) (default: auto)")
    t.add_argument("--checkpoint-minutes", type=float, default=10.0, help="also save last.pt within an epoch this often (default: 10)")
    t.add_argument("--init-from", metavar="CHECKPOINT", help="start from a trained network's weights (VGG: a trained configuration A)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any recipe value, e.g. --set scale=[256,256] --set shortcut=A (repeatable)")
    _ablation_arguments(t)
    _common(t)


def _ablation_arguments(t: argparse.ArgumentParser) -> None:
    v = t.add_argument_group("paper ablations (each one switch; default: the paper's value)")
    v.add_argument("--lrn", type=_typed(parse_bool), metavar="BOOL", help="local response normalisation after conv1 and conv2")
    v.add_argument("--pool", metavar="WINDOW/STRIDE", help="max-pooling: 3/2 (overlapping) or 2/2")
    v.add_argument("--towers", type=int, choices=(1, 2), help="two towers (groups=2 in conv2, conv4, conv5) or one")
    v.add_argument("--activation", choices=tuple(ACTIVATIONS))
    v.add_argument("--dropout", type=float, metavar="P", help="dropout on fc6 and fc7 (0 turns it off)")
    v.add_argument("--remove-conv", choices=REMOVABLE, help="drop one middle conv layer")
    v.add_argument("--bias-init", type=float, metavar="B", help="bias of conv2, conv4, conv5, fc6, fc7 (paper: 1)")
    v.add_argument("--pca-lighting", type=float, metavar="STD", help="std of the PCA lighting draws (paper: 0.1; 0 turns it off)")
    v.add_argument("--mean", choices=recipes.MEANS, help="subtract the mean image or the per-channel mean")
    v.add_argument("--test-crops", type=int, choices=recipes.TEST_CROPS, help="validation views per image")


def _eval_arguments(sub) -> None:
    e = sub.add_parser("eval", help="top-1 and top-5 error of a checkpoint on the held-out split")
    e.add_argument("checkpoint", help="a .pt file or a run directory (its best.pt, else last.pt)")
    e.add_argument("--data", help="ImageFolder root (default: the data the checkpoint was trained on)")
    _val_labels(e)
    e.add_argument("--ten-crop", action="store_true", help="average the softmax over ten crops (same as --views ten-crop)")
    e.add_argument("--views", choices=VIEWS, help="test views: centre (default), ten-crop, dense (fully convolutional,"
                   " multi-scale), multi-crop (5x5 grid per scale), 144-crop (GoogLeNet)")
    e.add_argument("--scales", type=_sizes, metavar="Q,Q,...", help="test scales for dense, multi-crop and 144-crop (default: the recipe's)")
    e.add_argument("--batch-size", type=int, help="images per batch (default: as training validates: on a GPU a"
                   " training batch's pixels at 224 px, counted in views; on a CPU a training batch's images)")
    e.add_argument("--loader", default="auto", choices=LOADERS,
                   help="where centre and ten-crop batches come from, as in train (default: auto)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    _common(e)


def _predict_arguments(sub) -> None:
    p = sub.add_parser("predict", help="the five most probable classes of each image, or the challenge's submission file"
                       " for its test set")
    p.add_argument("checkpoint", help="a .pt file or a run directory")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files; with --submission, the folder of the test images")
    p.add_argument("--top", type=int, default=None, help="how many classes to show (default: 5)")
    p.add_argument("--ten-crop", action="store_true", help="average the softmax over ten crops")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--device", default="auto", help="auto (default: the GPU if any), cpu, cuda, cuda:N")
    s = p.add_argument_group("the challenge's test set (the devkit's readme, classification submission)")
    s.add_argument("--submission", metavar="OUT", help="write OUT: a line per image of the folder IMAGE in file-name order,"
                   " its five most probable classes as the devkit's ILSVRC2012_IDs, most probable first (OUT must not exist)")
    s.add_argument("--devkit", metavar="DEVKIT", help="with --submission: ILSVRC2012_devkit_t12.tar.gz, its unpacked folder"
                   " or its data/meta.mat, whose synsets number the classes")
    s.add_argument("--batch-size", type=int, help="with --submission: images per batch (default: as eval's)")
    s.add_argument("--workers", type=int, default=None, help="with --submission: loader worker processes (default: one per"
                   " core, up to 8)")
    s.add_argument("--no-progress", action="store_true", help="with --submission: no progress bar")


def _pack_arguments(sub) -> None:
    k = sub.add_parser("pack", help="write a dataset once, rescaled, into a compact memory-mappable store")
    k.add_argument("data", help="ImageFolder root with train/ and val/ (or test/), Kaggle's ImageNet, CIFAR's pickles"
                   " as torchvision downloads them (cifar-10-batches-py, cifar-100-python, or a folder holding one),"
                   " or a folder holding ILSVRC-2012's three archives as image-net.org serves them")
    k.add_argument("out", help="the store folder to create")
    _val_labels(k)
    k.add_argument("--size", type=int, default=None, help="side of the stored images (default: 256, the paper's; CIFAR's pickles: 32 only)")
    k.add_argument("--format", default=None, choices=("jpeg", "raw"), help="jpeg (compact, default) or raw pixels (CIFAR's pickles: raw only)")
    k.add_argument("--quality", type=int, default=90, help="JPEG quality (default: 90)")
    k.add_argument("--part-size", type=float, default=1024, metavar="MIB", help="largest part file in MiB (default: 1024)")
    k.add_argument("--workers", type=int, default=None)
    k.add_argument("--no-progress", action="store_true")


def _export_arguments(sub) -> None:
    x = sub.add_parser("export", help="write a checkpoint's network as a torch.export program, ONNX or TorchScript, to run without ilsvrc")
    x.add_argument("checkpoint", help="a .pt file or a run directory")
    x.add_argument("out", help="the file to write (a JSON description is written beside it)")
    x.add_argument("--format", default="pt2", choices=EXPORT_FORMATS,
                   help="pt2: torch.export.load(OUT).module() runs it (default); onnx: onnxruntime; torchscript: torch.jit.load")
    x.add_argument("--force", action="store_true", help="overwrite OUT (and OUT.json) if they exist")


def _models_arguments(sub) -> None:
    m = sub.add_parser("models", help="every model with its parameter count, paper and recipe")
    m.add_argument("--json", action="store_true", help="print the list as JSON")


def _experiment_arguments(sub) -> None:
    r = sub.add_parser("experiment", help="re-run a paper's experiment: its networks, figures and tables (ilsvrc report shows them)")
    r.add_argument("name", help="experiment name; --list shows them", nargs="?")
    r.add_argument("--list", action="store_true", help="list the experiments and exit")
    r.add_argument("--data", help="a dataset's name or an ImageFolder root (default: the dataset the experiment needs, cifar10 or imagenette, found by name)")
    r.add_argument("--budget", default="quick", choices=BUDGETS,
                   help="quick: small sizes, minutes on a CPU; paper: the paper's recipe, for a GPU (default: quick)")
    r.add_argument("--out", help="output folder (default: experiments/NAME-BUDGET); run again to resume")
    r.add_argument("--checkpoint", help="alexnet-fig3, alexnet-fig4: a trained AlexNet (.pt or run directory) instead of training one")
    r.add_argument("--runs", type=int, default=1, metavar="N",
                   help="train each network N times (seeds 0 to N-1); figures as mean ± std over them (default: 1)")
    r.add_argument("--together", type=int, metavar="N",
                   help="train at most N runs at once, side by side in one process (default: all on a GPU, 1 on a CPU)")
    r.add_argument("--stack", action="store_true",
                   help="runs trained at once that can (seeds of a network, a plain network and its residual twin) take"
                   " their steps as one stacked step instead of taking turns")
    r.add_argument("--device", default="auto")
    r.add_argument("--workers", type=int, default=None)
    r.add_argument("--no-progress", action="store_true")


def _report_arguments(sub) -> None:
    o = sub.add_parser("report", help="a Markdown and HTML page of experiment results beside the papers' numbers")
    o.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders written by ilsvrc experiment")
    o.add_argument("--out", required=True, help="folder for report.md, report.html and figures/")


def _data_arguments(sub) -> None:
    ds = sub.add_parser("data", help="the datasets that --data NAME finds ($ILSVRC_DATA, then the cache)")
    ds.add_argument("--json", action="store_true", help="print the list as JSON")


def _stats_arguments(sub) -> None:
    s = sub.add_parser("stats", help="compute (or show the cached) mean image and RGB eigenvectors of a training set")
    s.add_argument("data", help="ImageFolder root with train/")
    _val_labels(s)
    s.add_argument("--recipe", default="alexnet", help="recipe whose rescaled size to use (default: alexnet)")
    s.add_argument("--image-size", type=int, help="network input size; the rescaled size follows as in train")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.add_argument("--workers", type=int, default=None)
    s.add_argument("--no-progress", action="store_true")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes such as 256,384,512, not {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, not {text!r}")
    return sizes


SWITCHES = ("lrn", "pool", "towers", "activation", "dropout", "remove_conv", "bias_init", "pca_lighting", "mean", "test_crops")


def _train(a) -> int:
    from .train import train

    from .recipes import parse_setting

    overrides = dict(parse_setting(text) for text in a.set)
    overrides.update({k: v for k in ("epochs", "batch_size", "lr", "image_size", *SWITCHES) if (v := getattr(a, k)) is not None})
    run = dict(max_steps=a.max_steps, device=a.device, workers=a.workers, seed=a.seed, resume=a.resume,
               progress=not a.no_progress, checkpoint_minutes=a.checkpoint_minutes, data_loader=a.loader,
               compile=a.compile, precision=a.precision, model=a.model, init_from=a.init_from, preset=a.preset,
               val_labels=a.val_labels, **overrides)
    out = a.out or f"runs/{a.model or a.recipe}"
    if a.stack and a.runs == 1:
        raise UserError("--stack stacks the runs of --runs N: give N > 1")
    if a.runs != 1:
        from .together import train_runs

        result = train_runs(a.runs, out, recipe=a.recipe, data=a.data, stack=a.stack, **run)
        for k, v in result["spread"].items():
            print(f"{k}: {v}")
        return 0
    row = train(a.recipe, a.data, out, **run)
    print(json.dumps(row) if row else "nothing to do: the run has already reached its end")
    return 0


def _eval(a) -> int:
    from .evaluate import evaluate

    r = evaluate(
        a.checkpoint, a.data, ten_crop=a.ten_crop, views=a.views, scales=a.scales, batch_size=a.batch_size,
        device=a.device, workers=a.workers, progress=not a.no_progress, data_loader=a.loader, val_labels=a.val_labels,
    )
    if a.json:
        print(json.dumps(r))
    else:
        view = {"centre": "centre crop", "ten-crop": "ten crops"}.get(r["views"], f"{r['views']} at scales {r.get('scales')}")
        print(f"{r['split']} ({r['images']} images, {view}): top-1 error {r['top1_error']:.2f}%, top-5 error {r['top5_error']:.2f}%")
    return 0


def _export(a) -> int:
    from .export import export

    path = export(a.checkpoint, a.out, format=a.format, force=a.force)
    print(f"{path} ({a.format}); how to feed it: {path}.json")
    return 0


def _models(a) -> int:
    from .models import catalogue

    rows = catalogue()
    if a.json:
        print(json.dumps(rows))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        recipe = r["recipe"] or "(weights import only)"
        print(f"{r['name']:{width}s} {r['parameters']:>13,d} ({r['classes']:4d} classes)  {recipe:22s} {r['paper']}")
    return 0


def _predict(a) -> int:
    from .predict import predict

    if a.submission is not None:
        return _submission(a)
    given = next((flag for flag, value in (("--devkit", a.devkit), ("--batch-size", a.batch_size),
                                           ("--workers", a.workers)) if value is not None), None)
    if given is not None:
        raise UserError(f"{given} goes with --submission OUT")
    results = predict(a.checkpoint, a.images, top=5 if a.top is None else a.top, ten_crop=a.ten_crop, device=a.device)
    if a.json:
        print(json.dumps(results))
        return 0
    for r in results:
        print(r["image"])
        for t in r["top"]:
            label = t["name"] if t["name"] == t["class"] else f"{t['name']} ({t['class']})"
            print(f"  {t['probability']:7.2%}  {label}")
    return 0


def _submission(a) -> int:
    """``ilsvrc predict CHECKPOINT DIR --submission OUT --devkit DEVKIT`` (submission.py)."""
    from .submission import write_submission

    if len(a.images) != 1:
        raise UserError(f"--submission classifies one folder of test images, not {len(a.images)} paths")
    if a.devkit is None:
        raise UserError("--submission needs --devkit DEVKIT (ILSVRC2012_devkit_t12.tar.gz, its folder or its data/meta.mat):"
                        " its meta.mat numbers the classes as the challenge does")
    if a.top is not None or a.json:
        raise UserError(f"--submission writes five classes a line, as the challenge reads them: {'--json' if a.json else '--top'}"
                        " does not apply")
    r = write_submission(a.checkpoint, a.images[0], a.submission, a.devkit, ten_crop=a.ten_crop, batch_size=a.batch_size,
                         device=a.device, workers=a.workers, progress=not a.no_progress)
    views = "ten crops" if r["crops"] == 10 else "the centre crop"
    print(f"{r['out']}: {r['images']} lines, one per image of {r['folder']}, five ILSVRC2012_IDs each ({views})")
    if r["classes"] < r["devkit_classes"]:
        print(f"note: the network knows {r['classes']} of the devkit's {r['devkit_classes']} classes; its lines name only those")
    return 0


def _data(a) -> int:
    from .data.default import available, homes

    found = available()
    if a.json:
        print(json.dumps(found))
        return 0
    home = str(Path.home())
    shown = lambda path: str(path).replace(home, "~", 1) if str(path).startswith(home) else str(path)  # noqa: E731
    print(f"looked in: {', '.join(shown(h) for h in homes())}")
    for d in found:
        print(f"{d['name']:16s} {d['classes']:5d} classes  {d['kind']:22s} {shown(d['path'])}")
    if not found:
        print("no datasets there: set ILSVRC_DATA to a folder of datasets (NAME/train/<class>/<image>), or pass --data DIR")
    return 0


def _stats(a) -> int:
    from .data.datasets import for_dataset
    from .data.default import find

    root = find(a.data)
    size = recipes.resolve(a.recipe, image_size=a.image_size).data.resize
    st, path = for_dataset(root, size, workers=a.workers, progress=not a.no_progress, val_labels=a.val_labels)
    summary = {
        "size": st.size,
        "images": st.count,
        "skipped": len(st.skipped),
        "mean_rgb": [round(v, 3) for v in st.mean_rgb.tolist()],
        "eigval": [round(v, 6) for v in st.eigval.tolist()],
        "eigvec": [[round(v, 4) for v in row] for row in st.eigvec.tolist()],
        "cache": str(path),
    }
    if a.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k:9s} {v}")
    return 0


def _pack(a) -> int:
    from .data.archives import archives_at, pack_archives
    from .data.cifar import pack_cifar, pickles_at
    from .data.default import find
    from .data.store import pack

    data = find(a.data)
    given = {k: v for k, v in (("size", a.size), ("encoding", a.format)) if v is not None}  # else the packer's defaults
    if pickles_at(data):  # CIFAR as torchvision downloads it: its own pixels, raw
        if a.val_labels is not None:
            raise UserError(f"--val-labels labels a flat val/ folder; {data} holds CIFAR's pickles, labelled already")
        m = pack_cifar(data, a.out, **given, part_mib=a.part_size, progress=not a.no_progress)
    elif archives_at(data):  # ILSVRC-2012's three archives as image-net.org serves them, read in place
        if a.val_labels is not None:
            raise UserError(f"--val-labels labels a flat val/ folder; {data} holds ILSVRC-2012's archives,"
                            " whose devkit labels them")
        m = pack_archives(data, a.out, **given, quality=a.quality, part_mib=a.part_size, workers=a.workers,
                          progress=not a.no_progress)
    else:
        m = pack(data, a.out, **given, quality=a.quality, part_mib=a.part_size, workers=a.workers,
                 progress=not a.no_progress, val_labels=a.val_labels)
    for name, info in m["splits"].items():
        size = sum((Path(a.out) / p["file"]).stat().st_size for p in info["parts"])
        left_out = f", {len(info['skipped'])} unreadable left out" if info["skipped"] else ""
        print(f"{name}: {info['count']} images in {len(info['parts'])} part(s), {size / 2**20:.1f} MiB{left_out}")
    print(f"store: {a.out} ({m['encoding']}, {m['size']}x{m['size']}, {len(m['classes'])} classes)")
    return 0


def _experiment(a) -> int:
    from . import experiments

    if a.list or not a.name:
        for name in experiments.names():
            print(f"{name:18s} {experiments.plan(name)['title']}")
        return 0
    command = "ilsvrc " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("ilsvrc") else None
    path = experiments.run(a.name, a.data, a.out, budget=a.budget, device=a.device, progress=not a.no_progress,
                           workers=a.workers, checkpoint=a.checkpoint, command=command, runs=a.runs,
                           together=a.together, stack=a.stack)
    record = json.loads(path.read_text())
    print(f"{a.name} ({a.budget}) in {record['duration_s']:.0f} s on {record['device']}: {path}")
    for c in record["comparisons"]:
        measured = "not measured" if c["measured"] is None else f"{c['measured']:g}{c['unit']}"
        if c.get("runs"):
            measured += f" ± {c['std']:g} ({c['runs']} runs)"
        print(f"  {c['what']}: {measured} (paper {c['paper']:g}{c['unit']})")
    for c in record.get("claims", []):  # a difference (signed) or a ratio, ± its standard error
        value = f"{c['difference']:+g}" if c.get("difference") is not None else (
            f"{c['ratio']:g}x" if c.get("ratio") is not None else "")
        spread = f" ± {c['standard_error']:g}" if value and c["standard_error"] is not None else ""
        print(f"  claim, {c['what']}: {value}{spread}{': ' if value else ''}{c['verdict']}")
    print(f"see it: ilsvrc report {path.parent} --out REPORT_DIR")
    return 0


def _report(a) -> int:
    from .report import report

    paths = report(a.runs, a.out)
    print(f"{paths['markdown']}\n{paths['html']}")
    return 0


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


COMMANDS = {"train": _train, "eval": _eval, "predict": _predict, "pack": _pack, "stats": _stats,
            "models": _models, "data": _data, "export": _export, "experiment": _experiment, "report": _report}


def _os_message(e: OSError) -> str:
    """An error the operating system reports, as its words and the file it concerns."""
    return f"{e.strerror or e}: {e.filename}" if e.filename is not None else str(e.strerror or e)


def main(argv=None) -> int:
    command = "ilsvrc"  # until the arguments are read: a Ctrl-C may come that early
    try:
        args, unknown = _parser().parse_known_args(argv)
        command = f"ilsvrc {args.command}"
        if unknown:  # named with the command they were given to, which plain argparse leaves out
            print(f"{command}: error: unrecognized arguments: {' '.join(unknown)}", file=sys.stderr)
            return 2
        warnings.formatwarning = _one_line_warning
        return COMMANDS[args.command](args)
    except Diverged as e:  # work stopped; the message names the last good checkpoint
        print(f"{command}: error: {e}", file=sys.stderr)
        return 3
    except UserError as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # the operating system's refusal (read-only, no space, not a folder...): not a bug of
        # ours, and every file is written atomically, so nothing already written is lost.
        # An OSError without an errno (io.UnsupportedOperation, a library's own) stays a bug.
        if e.errno is None:
            raise
        print(f"{command}: error: {_os_message(e)}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as e:  # Interrupted: training saved its place first
        if argv is None:  # the process is the command and ends now: another Ctrl-C would only break its exit
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"{command}: {e if isinstance(e, Interrupted) else 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
