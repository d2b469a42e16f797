"""docs/refresh.py, which reruns the README's slow console samples and writes
their output back: it reads the marked blocks as the docs show them, cuts
long JSON lines the way test_docs_console.py reads them, and every marked
block of the README and docs/ carries the note of its last refresh."""

import importlib.util
import json

from conftest import REPO

spec = importlib.util.spec_from_file_location("docs_refresh", REPO / "docs" / "refresh.py")
refresh = importlib.util.module_from_spec(spec)
spec.loader.exec_module(refresh)


def test_commands_are_read_with_their_continuations_and_spacing():
    body = ["$ ilsvrc train --data x \\", "      --out RUN", "epoch 1: ...", "", "$ echo $?", "3"]
    found = refresh.commands(body)
    assert [c["text"] for c in found] == ["ilsvrc train --data x  --out RUN", "echo $?"]
    assert found[0]["shown"] == body[:2] and found[0]["blank_after"] and not found[1]["blank_after"]


def test_a_long_json_line_is_cut_after_a_key():
    row = {f"key{i}": i * 1.5 for i in range(30)}
    line = refresh.cut(json.dumps(row))
    assert len(line) <= refresh.WIDTH and line.endswith(", ...}")
    assert json.loads(line[: -len(", ...}")] + "}").items() <= row.items()  # what is kept is the row's own
    assert refresh.cut("short line") == "short line" and refresh.cut("x" * 200) == "x" * 200  # not JSON: kept


def test_every_marked_block_was_refreshed():
    found = 0
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        lines = doc.read_text().splitlines()
        for first, last in refresh.marked_blocks(lines):
            note = next(line for line in lines[last + 1:] if line.strip())
            assert note.startswith(refresh.NOTE), f"{doc.name}: the block at line {first + 1} has no note of its refresh"
            found += 1
    assert found >= 6
