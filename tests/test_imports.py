"""The import graph of ``ilsvrc`` has no circle and no arrow running back up.

Data flows one way (docs/architecture.md: files -> dataset -> packed store -> batches
-> transforms -> model -> loss, metrics -> checkpoints, logs -> figures and
report), and the imports should say so: each module sits on a floor of
``FLOORS`` below, and imports only from its own floor or the floors beneath
it, never from one above. Every import counts, the lazy one inside a
function too: importing inside a function to dodge a circle still ties the
two modules together, it only hides the knot. A reader can then learn the
package from the bottom up, and a change to a floor can only break the
floors above it.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "ilsvrc"

# Bottom to top; names relative to the package ("" is the package itself).
# A module not named here sits on the floor of the nearest named package.
FLOORS = [
    ["errors"],
    ["device", "distributed", "checkpoint", "run_folder", "spread", "figures"],
    ["data", "data.images", "data.classnames"],  # decoding an image, the stored square
    ["data.labels", "data.folders", "data.stats", "data.store", "data.cifar", "data.archives", "data.datasets", "data.default"],  # datasets and their statistics
    ["data.transforms", "data.order", "data.loaders", "data.batched", "data.resident", "data.streamed", "data.sources"],  # batches
    ["recipes"],
    ["models"],
    ["metrics", "schedule"],
    ["step", "evaluate", "stacked", "synthetic"],
    ["train"],
    ["together", "weights", "predict", "submission", "export", "experiments", "report", ""],
    ["cli", "__main__"],
]


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own)."""
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module ``name`` imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # "from . import checkpoint" imports a module; "from .evaluate import TOP_K" a name
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # "ilsvrc.data.x.y" -> the module that holds it
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def floor(name: str) -> int:
    relative = name[len(PACKAGE) + 1 :] if name != PACKAGE else ""
    while True:
        for level, names in enumerate(FLOORS):
            if relative in names:
                return level
        if not relative:
            raise AssertionError(f"{name} is on no floor: add it to FLOORS")
        relative = relative.rpartition(".")[0]


def test_the_graph_is_read():
    g = graph()
    assert f"{PACKAGE}.data.folders" in g and f"{PACKAGE}.errors" in g[f"{PACKAGE}.data.folders"]
    assert f"{PACKAGE}.train" in g[f"{PACKAGE}.cli"]  # a lazy import inside a function counts


def test_no_import_circle():
    g = graph()
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(g[name]):
            if state.get(target) == "open":
                circle = path[path.index(target):] + [name, target] if target in path else [name, target]
                pytest.fail("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target, path + [name])
        state[name] = "done"

    for name in sorted(g):
        if name not in state:
            visit(name, [])


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_has_a_floor(name):
    floor(name)


def test_no_import_runs_back_up():
    g = graph()
    up = [f"{a} (floor {floor(a)}) imports {b} (floor {floor(b)})"
          for a in sorted(g) for b in sorted(g[a]) if floor(b) > floor(a)]
    assert not up, "imports from a lower floor to a higher one:\n" + "\n".join(up)
