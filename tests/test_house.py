"""The house reads in one sitting (issue 15): no function in src/ or
benchmarks/ longer than a screen or two (benchmarks/ since issue 25), and ``train`` a few dozen lines that name the loop's parts.
(The import graph has its own test: test_imports.py.)"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
LONGEST = 80  # lines, docstring included


def functions(under=(SRC,)):
    for folder in under:
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{path.relative_to(folder)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_80_lines():
    long = {name: n for name, n in functions((SRC, ROOT / "benchmarks")) if n > LONGEST}
    assert not long, f"functions over {LONGEST} lines: {long}"


def test_the_training_loop_is_short():
    sizes = {name.split(" ")[1]: n for name, n in functions() if name.startswith("ilsvrc/train.py")}
    assert sizes["train"] < 60 and sizes["training"] < 60


ROOT = SRC.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def named_in_architecture() -> set[str]:
    """The paths the module table of docs/architecture.md names, relative to src/ilsvrc (a folder ends in /)."""
    import re

    table = ARCHITECTURE.read_text().split("## The modules")[1]
    return {name for row in table.splitlines() if row.startswith("|")
            for name in re.findall(r"`([\w/]+(?:\.py|/))`", row.split("|")[2])}


def test_every_module_docs_architecture_names_exists():
    package = SRC / "ilsvrc"
    missing = [name for name in named_in_architecture()
               if not (package / name).exists() and not (ROOT / name).exists()]
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_every_module_is_named_in_docs_architecture():
    """Each module of the package, or a folder of it, has its row."""
    named = named_in_architecture()
    package = SRC / "ilsvrc"
    unnamed = []
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package).as_posix()
        if path.name == "__main__.py" or (path.name == "__init__.py" and not ast.parse(path.read_text()).body[1:]):
            continue  # python -m ilsvrc, and a package file that holds only its docstring
        folders = {f"{p.as_posix()}/" for p in path.relative_to(package).parents if p.as_posix() != "."}
        if name not in named and not folders & named:
            unnamed.append(name)
    assert not unnamed, f"modules docs/architecture.md does not name: {unnamed}"


def test_every_file_the_code_cites_exists():
    """A citation such as docs/architecture.md or benchmarks/fidelity.py in src/, tests/ or benchmarks/ points at a file in the repository."""
    import re

    cited = re.compile(r"\b((?:docs|benchmarks|tests|src)/[\w/.-]+\.(?:md|py|toml))\b|\b([A-Z]+\.md)\b")
    anywhere = {p.name for p in ROOT.glob("[!.]*/**/*.md")} | {p.name for p in ROOT.glob("*.md")}
    missing = set()
    for folder in ("src", "tests", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for match in cited.finditer(path.read_text()):
                name = match.group(1) or match.group(2)
                if "NAME" in name or (match.group(2) and name in anywhere):  # a placeholder; a bare name found in the tree
                    continue
                if not (ROOT / name).exists() and not (path.parent / name).exists():
                    missing.add(f"{path.relative_to(ROOT)}: {name}")
    assert not missing, f"citations of files that do not exist: {sorted(missing)}"
