"""The package's layering, read from the import statements of every module (see README, How the code is laid out)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import ser_batch

ROOT = Path(ser_batch.__file__).parent

# Bottom up: a module may import its own layer and the ones below, never one above.
LAYERS = {
    "_typing": 0,
    "errors": 0,
    "config": 1,
    "labels": 2,
    "schema": 2,
    "shards": 3,
    "demo": 4,
    "features": 4,
    "model": 5,
    "scoring": 5,
    "storage": 6,
    "jobs": 7,
}
PURE = {"_typing", "errors", "config", "labels", "schema", "shards", "demo", "features", "model", "scoring"}
IO = {"storage", "jobs"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str]) -> set[str]:
    """The ser_batch modules a file imports (``from ser_batch.x import y`` counts ``ser_batch.x.y`` if it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ser_batch"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("ser_batch")}
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in ROOT.rglob("*.py")}
    return {name: imports(path, set(paths)) - {name} for name, path in paths.items()}


def top(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_top_level_module_and_package_has_a_layer() -> None:
    assert {top(name) for name in graph()} - {""} == set(LAYERS)


@pytest.mark.parametrize(("module", "targets"), sorted(graph().items()))
def test_no_module_imports_a_higher_layer_and_no_pure_module_imports_io(module: str, targets: set[str]) -> None:
    if module == "ser_batch":
        return  # the package's __init__ re-exports from the bottom layers only
    for target in targets:
        assert LAYERS[top(target)] <= LAYERS[top(module)], f"{module} imports {target} from a higher layer"
        assert not (top(module) in PURE and top(target) in IO), f"pure {module} imports IO {target}"


def test_there_are_no_import_cycles() -> None:
    edges = {name: {t for t in targets if not t.endswith("__init__")} for name, targets in graph().items()}
    # Package __init__ files re-export their own modules: an edge package -> own module is not a cycle.
    for name, targets in edges.items():
        edges[name] = {t for t in targets if not t.startswith(f"{name}.")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("package", ["features", "model", "scoring", "storage", "jobs"])
def test_each_package_reexports_every_public_name_of_its_modules(package: str) -> None:
    init = importlib.import_module(f"ser_batch.{package}")
    public = set()
    for path in (ROOT / package).glob("*.py"):
        if path.name == "__init__.py":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            else:
                names = []
            public |= {name for name in names if not name.startswith("_")}
    assert set(init.__all__) == public
    assert all(hasattr(init, name) for name in public)
