"""--data NAME: a dataset's name is found under $ILSVRC_DATA, then the
cache, before it is taken as a path; `ilsvrc data` lists what is there."""

import json

import pytest

from ilsvrc import UserError, train
from ilsvrc.cli import main
from ilsvrc.data.default import find


@pytest.fixture
def home(tmp_path, tiny_data, monkeypatch):
    """$ILSVRC_DATA holding one dataset, `mini` (a link to the tiny data)."""
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "mini").symlink_to(tiny_data)
    monkeypatch.setenv("ILSVRC_DATA", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # no folder named mini here
    return tmp_path / "home"


def test_a_name_resolves_under_ilsvrc_data(home):
    assert find("mini") == home / "mini"


def test_a_name_resolves_in_the_cache(tmp_path, tiny_data, monkeypatch):
    monkeypatch.delenv("ILSVRC_DATA", raising=False)
    monkeypatch.setenv("ILSVRC_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "datasets").mkdir(parents=True)
    (tmp_path / "cache" / "datasets" / "imagenette2-320").symlink_to(tiny_data)
    assert find("imagenette") == tmp_path / "cache" / "datasets" / "imagenette2-320"


def test_a_path_stays_a_path(home, tiny_data):
    assert find(tiny_data) == tiny_data
    assert find("./home/mini").resolve() == (home / "mini").resolve()


def test_train_takes_a_name(home, tmp_path):
    row = train("resnet-cifar", "mini", tmp_path / "run", model="resnet-20", device="cpu", workers=0, progress=False,
                iterations=1)
    assert row["step"] == 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data_root"] == str((home / "mini").resolve())


def test_an_unknown_name_is_one_line(home, capsys):
    assert main(["train", "--data", "nosuch", "--out", "run", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no dataset 'nosuch'" in err and "ilsvrc data" in err
    with pytest.raises(UserError):
        find("nosuch")


def test_ilsvrc_data_lists_what_it_finds(home, capsys):
    assert main(["data", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(d["name"], d["classes"], d["kind"]) for d in found] == [("mini", 3, "image folder")]
    assert main(["data"]) == 0
    assert "mini" in capsys.readouterr().out


def test_one_lookup_by_name_for_ilsvrc_the_experiments_and_the_benchmarks(home, tmp_path, tiny_data, monkeypatch):
    """The experiments' default data and the benchmarks' are found as --data NAME is (issue 25: default_data was
    written four times, with three different searches)."""
    import ilsvrc.experiments as experiments
    from ilsvrc.data.default import located

    shared = tmp_path / "shared"
    (shared / "cifar10").mkdir(parents=True)
    (shared / "mini").mkdir()
    assert located("mini") == home / "mini"
    assert located("cifar10") is None and located("cifar10", also=[shared]) == shared / "cifar10"
    assert located("mini", also=[shared]) == home / "mini"  # $ILSVRC_DATA first
    seen = []

    def find(data):  # what the experiment looks its data up with; stops it there
        seen.append(data)
        raise UserError("looked up")

    monkeypatch.setattr(experiments, "find", find)
    for name, dataset in (("resnet-cifar", "cifar10"), ("vgg-depth", "imagenette")):
        with pytest.raises(UserError, match="looked up"):
            experiments.run(name, out=tmp_path / "exp")
        with pytest.raises(UserError, match="looked up"):
            experiments.run(name, data="mine", out=tmp_path / "exp")
    assert seen == ["cifar10", "mine", "imagenette", "mine"]
