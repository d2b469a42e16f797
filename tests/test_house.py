"""The house reads in one sitting (issue 15): no function in src/ longer than
a screen or two, and ``train`` a few dozen lines that name the loop's parts.
(The import graph has its own test: test_imports.py.)"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
LONGEST = 80  # lines, docstring included


def functions():
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(SRC)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_80_lines():
    long = {name: n for name, n in functions() if n > LONGEST}
    assert not long, f"functions over {LONGEST} lines: {long}"


def test_the_training_loop_is_short():
    sizes = {name.split(" ")[1]: n for name, n in functions() if name.startswith("ilsvrc/train.py")}
    assert sizes["train"] < 60 and sizes["training"] < 60
