"""What ``ilsvrc report`` does with a malformed experiment.json (report.py,
experiments/SCHEMA.md): a missing optional key takes its default; a wrong
format number, an entry that is not an object, a duration that is not a
finite number of seconds is one line on stderr, exit code 2, naming the
file and what is wrong, before anything is written; a figure that is not a
number (NaN, as ``ilsvrc experiment`` records a run that diverged before its
first epoch) is shown as it is, with no difference to the paper's."""

import json
import math

import pytest

from ilsvrc.cli import main

from conftest import user_error
from test_report import experiment


def record(tmp_path, **changes):
    """An experiment folder whose experiment.json has ``changes`` (None: the key removed)."""
    exp = experiment(tmp_path / "exp", "resnet-cifar", [{"what": "ResNet-20 test error", "measured": 9.1, "paper": 8.75,
                                                         "unit": "%", "source": "Table 6", "lower_is_better": True}])
    rec = json.loads((exp / "experiment.json").read_text())
    for key, value in changes.items():
        if value is None:
            del rec[key]
        else:
            rec[key] = value
    (exp / "experiment.json").write_text(json.dumps(rec))  # (json writes NaN and Infinity as Python's json reads them)
    return exp


def refused(capsys, tmp_path, **changes) -> str:
    exp = record(tmp_path, **changes)
    line = user_error(capsys, ["report", str(exp), "--out", str(tmp_path / "out")])
    assert line.startswith(f"ilsvrc report: error: {exp / 'experiment.json'}") and not (tmp_path / "out").exists()
    return line


@pytest.mark.parametrize("changes, words", [
    ({"format": None}, "is not an experiment.json of format 1"),
    ({"format": 2}, "is not an experiment.json of format 1"),
    ({"format": "1"}, "is not an experiment.json of format 1"),
    ({"runs": {"plain-20": {}}}, "'runs' is not a list"),
    ({"runs": ["plain-20"]}, "an entry of 'runs' is not an object: 'plain-20'"),
    ({"tables": [["network", "depth"]]}, "an entry of 'tables' is not an object"),
    ({"tables": [{"title": "T", "columns": ["a"], "rows": [1, 2]}]}, "table 'T' has columns or rows that are not lists"),
    ({"comparisons": [8.75]}, "an entry of 'comparisons' is not an object: 8.75"),
    ({"title": None, "experiment": 6}, "'experiment' is not text: 6"),
    ({"versions": ["torch 2.14"]}, "'versions' is not an object"),
])
def test_a_malformed_record_is_one_line_and_exit_2(capsys, tmp_path, changes, words):
    assert words in refused(capsys, tmp_path, **changes)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "3 min", True])
def test_a_duration_that_is_not_a_finite_number_of_seconds_is_one_line(capsys, tmp_path, value):
    line = refused(capsys, tmp_path, duration_s=value)
    assert line.endswith(f"'duration_s' is {value!r}, not a number of seconds")
    run = {"name": "plain-20", "recipe": "resnet-cifar", "seconds": value}
    line = refused(capsys, tmp_path / "run", runs=[run])
    assert line.endswith(f"'seconds' of run 'plain-20' is {value!r}, not a number of seconds")


def test_missing_optional_keys_take_their_defaults(capsys, tmp_path):
    exp = record(tmp_path, title=None, experiment=None, runs=None, tables=None, comparisons=None, notes=None,
                 duration_s=None, versions=None)
    assert main(["report", str(exp), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## exp\n" in md  # the folder's name for the experiment and its title
    assert "- exp: budget quick, cpu, 3 min 12 s" in md  # the duration from started and finished


def test_a_figure_that_is_not_a_number_is_shown_with_no_difference(capsys, tmp_path):
    nan = {"what": "ResNet-20 test error", "measured": math.nan, "paper": 8.75, "unit": "%", "source": "Table 6",
           "lower_is_better": True}
    diverged = {"name": "resnet-20", "recipe": "resnet-cifar", "model": "resnet-20", "settings": {"lr": 10.0},
                "steps": 0, "epochs": 0, "seconds": 1.5,
                "final": {"train_error": math.nan, "val_top1_error": math.nan, "val_top5_error": math.nan}}
    exp = record(tmp_path, comparisons=[nan], runs=[diverged])
    assert main(["report", str(exp), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| ResNet-20 test error | nan % | 8.75 % | \u2014 | Table 6 |" in md  # not "misses by nan points"
    assert "| resnet-20 | resnet-cifar | resnet-20 | lr=10.0 | 0 | 0 | 1.5 s | nan | nan | nan |" in md
