"""benchmarks/pack_for_gpu.py: a store goes in calls that each fit what one
GPU call carries (64 MiB with the checkout, 8 paths)."""

import pytest

from conftest import load_benchmark


def sized(folder, sizes_mib):
    folder.mkdir()
    for i, mib in enumerate(sizes_mib):
        (folder / f"f{i}").write_bytes(b"\0" * int(mib * 2**20))
    return folder


def test_a_small_store_goes_whole_a_large_one_in_parts(tmp_path):
    bench = load_benchmark("pack_for_gpu")
    small = sized(tmp_path / "small", [1, 0.5])
    assert bench.calls(small, room_mib=10) == [[small]]
    large = sized(tmp_path / "large", [6, 5, 4, 0.1, 0.1])
    groups = bench.calls(large, room_mib=10)
    assert [sorted(f.name for f in g) for g in groups] == [["f0"], ["f1", "f2", "f3", "f4"]]
    assert sum(len(g) for g in groups) == 5


def test_a_part_larger_than_a_call_is_an_error(tmp_path):
    bench = load_benchmark("pack_for_gpu")
    with pytest.raises(SystemExit, match="smaller --part-mib"):
        bench.calls(sized(tmp_path / "big", [12, 1]), room_mib=10)


def test_it_packs_and_plans(tiny_data, tmp_path, capsys):
    bench = load_benchmark("pack_for_gpu")
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "cifar10").symlink_to(tiny_data)
    assert bench.main(["--datasets", str(tmp_path / "datasets"), "--out", str(tmp_path / "gpu"), "--only", "cifar10",
                       "--workers", "0"]) == 0
    assert (tmp_path / "gpu" / "cifar10-32" / "ilsvrc-store.json").is_file()
    assert "call 1: carry" in capsys.readouterr().out
