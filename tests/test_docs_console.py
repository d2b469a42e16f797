"""The console samples in README.md and docs/ that run in seconds print what
the docs show (issue 16: numbers and outputs in docs come from commands).

Each ```console block is read as commands (``$ ...``) and the lines they
print; the commands in ``CHECKED`` are run (in this process, through the
CLI's ``main``) and their output compared line by line. A line ``...`` in a
sample stands for any number of lines, ``...`` within a line for any text. Samples that train or read a whole
dataset take minutes and are dated in the docs instead."""

import os
import re
import shlex
from pathlib import Path

import pytest

from conftest import REPO, shared_datasets
from ilsvrc.cli import main

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CHECKED = {  # command -> needs the shared datasets
    "ilsvrc data": True,
    "ilsvrc models": False,
    "ilsvrc experiment --list": False,
    "ilsvrc train --data /nowhere": False,
    "ilsvrc train --data DATA --recipe resnet-cifar --lr 1e300": False,
}


def samples(path: Path):
    """(command, its env exports so far in the block, expected lines) of every console block."""
    lines, i = path.read_text().splitlines(), 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        env, command, expected = {}, None, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            line = lines[i]
            if line.startswith("$ "):
                if command is not None:
                    yield command, dict(env), expected
                command, expected = line[2:], []
                while command.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    command = command[:-1] + lines[i].strip()
                if command.startswith("export "):
                    key, _, value = command[len("export "):].partition("=")
                    env[key] = value
                    command = None
            elif command is not None:
                expected.append(line)
            i += 1
        if command is not None:
            yield command, dict(env), expected
        i += 1


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; an expected line ``...`` matches any number of lines, and
    ``...`` within a line any text (the docs shorten long titles so)."""
    if not expected:
        return not actual
    if expected[0].strip() == "...":
        return any(matches(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    pattern = ".*".join(re.escape(part) for part in expected[0].rstrip().split("..."))
    return bool(actual) and re.fullmatch(pattern, actual[0].rstrip()) is not None and matches(expected[1:], actual[1:])


CASES = [(path.name, command, env, expected) for path in DOCS for command, env, expected in samples(path)
         if command.split("  #")[0].strip() in CHECKED and expected]  # a command shown without its output: nothing to check


def test_every_checked_command_has_a_sample():
    assert {c[1].split("  #")[0].strip() for c in CASES} == set(CHECKED)


@pytest.mark.parametrize("doc, command, env, expected", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_the_sample_prints_what_the_docs_show(doc, command, env, expected, capsys, monkeypatch):
    command = command.split("  #")[0].strip()
    if CHECKED[command] and shared_datasets() is None:
        pytest.skip("needs ../shared/datasets")
    monkeypatch.chdir(REPO)  # the docs' relative paths are from the checkout
    monkeypatch.delenv("ILSVRC_DATA", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = shlex.split(command)[1:]
    main(argv)
    out, err = capsys.readouterr()
    home = str(Path(os.environ["ILSVRC_CACHE"]))  # the tests' cache; the docs show the default one
    actual = (out + err).replace(home, "~/.cache/ilsvrc").splitlines()
    assert matches(expected, actual), "\n".join(["docs:", *expected, "printed:", *actual])
