"""Rerun the console samples of the README that take minutes, and write their output back.

Issue 16: numbers and outputs in the docs come from commands. A sample that
runs in seconds is checked by the test suite (tests/test_docs_console.py);
one that trains, evaluates or packs a real dataset is marked in the Markdown
with a line ``<!-- refresh -->`` before its ```console block, and this script
reruns it:

    python docs/refresh.py            # every marked block of README.md, in order (about 15 min on 2 CPU cores)
    python docs/refresh.py --doc docs/experiments.md   # another page's
    python docs/refresh.py --list     # the marked blocks and their commands, without running them
    python docs/refresh.py --only 6   # block 6 alone (a block that reads an earlier block's RUN needs that one too)

Each block's ``$`` commands run one after another in bash, in one scratch
folder shared by all the blocks (so ``RUN`` of one sample is the run folder
the next sample reads), with the ``ilsvrc`` of this Python on the PATH,
``ILSVRC_DATA`` pointing at ../shared/datasets, and a small generated
dataset in ``DATA``. Everything a command prints (stdout and stderr, less
its progress bars) replaces the lines under it; a JSON object longer than ``WIDTH``
characters is cut after a key and ends with ``...}``. The line after the
block says when, where and how long each command took.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
MARK = "<!-- refresh -->"
NOTE = "(Refreshed by `python docs/refresh.py`"
WIDTH = 110


def marked_blocks(lines: list[str]):
    """(first, last) line indexes of each console block after a MARK line (the fences included)."""
    for i, line in enumerate(lines):
        if line.strip() == MARK:
            first = i + 1
            if lines[first].strip() != "```console":
                raise SystemExit(f"line {first + 1}: {MARK} must come right before a ```console block")
            last = next(j for j in range(first + 1, len(lines)) if lines[j].strip() == "```")
            yield first, last


def commands(body: list[str]) -> list[dict]:
    """The block's commands: their text (continuation lines joined), the lines
    that show them, and whether a blank line followed their output."""
    found, i = [], 0
    while i < len(body):
        if not body[i].startswith("$ "):
            i += 1
            continue
        shown = [body[i]]
        while shown[-1].endswith("\\") and i + 1 < len(body):
            i += 1
            shown.append(body[i])
        text = " ".join(line.strip().rstrip("\\") for line in shown)[2:]
        i += 1
        while i < len(body) and not body[i].startswith("$ "):
            i += 1
        found.append({"text": text, "shown": shown, "blank_after": i > 0 and body[i - 1] == "" and i < len(body)})
    return found


def cut(line: str) -> str:
    """A long JSON object, cut after a key: ``{"a": 1, "b": 2, ...}``."""
    if len(line) <= WIDTH or not line.startswith("{"):
        return line
    try:
        row = json.loads(line)
    except ValueError:
        return line
    kept = "{"
    for key, value in row.items():
        part = f"{json.dumps(key)}: {json.dumps(value)}, "
        if len(kept) + len(part) + 4 > WIDTH:
            break
        kept += part
    return kept + "...}"


def make_data(root: Path) -> None:
    """DATA: three classes of eight 40x40 training and two validation JPEGs (fixed noise)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 2)):
        for c in range(3):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) // (c + 1)
                Image.fromarray(pixels).save(folder / f"{k}.jpg", quality=90)


def run(command: str, cwd: Path, env: dict, last_rc: int) -> tuple[list[str], int, float]:
    if command == "echo $?":
        return [str(last_rc)], 0, 0.0
    start = time.perf_counter()
    r = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    return [cut(line) for line in printed(r.stdout)], r.returncode, time.perf_counter() - start


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # tqdm moves the cursor between bars
BAR = re.compile(r"\d+%\||\[\d+:\d\d(<|,|\])")  # "37%|" or "[00:12<00:30": a progress bar's redraw


def printed(text: str) -> list[str]:
    """What a reader of the command's output keeps: its lines without the
    progress bars' redraws (each after a carriage return) and cursor moves."""
    kept = []
    for line in text.split("\n"):
        for segment in line.split("\r"):
            segment = ANSI.sub("", segment).rstrip()
            if segment.strip() and not BAR.search(segment):
                kept.append(segment)
    return kept


def note(seconds: list[tuple[str, float]]) -> str:
    import torch  # (only for its version)

    cores, load = os.cpu_count(), os.getloadavg()[0]
    took = ", ".join(f"{name} {s:.0f} s" for name, s in seconds if s >= 0.5)
    return (f"{NOTE} on {date.today().isoformat()}: {cores} CPU cores, load {load:.1f}, torch {torch.__version__},"
            f" Python {platform.python_version()}{'; ' + took if took else ''}.)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doc", default=str(REPO / "README.md"), help="the Markdown file (default: README.md)")
    parser.add_argument("--list", action="store_true", help="show the marked blocks' commands, run nothing")
    parser.add_argument("--only", type=int, nargs="+", metavar="N", help="refresh only these blocks (numbers as --list shows)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (its path is printed)")
    a = parser.parse_args()
    doc = Path(a.doc)
    lines = doc.read_text().splitlines()
    blocks = list(marked_blocks(lines))
    if a.list:
        for n, (first, last) in enumerate(blocks, 1):
            print(f"block {n} (line {first + 1}):")
            for c in commands(lines[first + 1:last]):
                print(f"  $ {c['text']}")
        return 0
    data_root = REPO.parent / "shared" / "datasets"
    if not data_root.is_dir():
        print(f"refresh: {data_root} is needed (the samples read Imagenette and CIFAR-10)", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="ilsvrc-refresh-"))
    make_data(scratch / "DATA")
    env = dict(os.environ, ILSVRC_DATA=str(data_root.resolve()), PYTHONUNBUFFERED="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    out, at, rc = [], 0, 0
    try:
        for n, (first, last) in enumerate(blocks, 1):
            if a.only and n not in a.only:
                continue
            body, seconds = ["```console"], []
            for c in commands(lines[first + 1:last]):
                print(f"block {n}: $ {c['text']}", flush=True)
                printed, rc, took = run(c["text"], scratch, env, rc)
                body += c["shown"] + printed + ([""] if c["blank_after"] else [])
                seconds.append((c["text"].split()[1] if c["text"].startswith("ilsvrc ") else c["text"], took))
            body.append("```")
            after = last + 1
            while after < len(lines) and lines[after] == "":
                after += 1
            if after < len(lines) and lines[after].startswith(NOTE):  # the old note goes
                after += 1
            out += lines[at:first] + body + ["", note(seconds), ""]
            at = after
        out += lines[at:]
        doc.write_text("\n".join(out) + "\n")
        print(f"refreshed {len(a.only) if a.only else len(blocks)} block(s) of {doc}")
    finally:
        if a.keep:
            print(f"scratch folder: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
