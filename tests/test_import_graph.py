"""The repository's modules import each other without a cycle.

Every ``import`` and ``from ... import`` statement counts, at any depth:
inside functions, and under ``if TYPE_CHECKING:`` too (a cycle the type
checker needs is a cycle in the design).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sessionlib", "exporter", "benchmarks", "tests", "deploy")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            for alias in node.names:
                # "from . import driver" imports the module; "from .x import y" imports x.
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        # A package is always imported before its modules: not an edge.
        if target and target != name and not name.startswith(target + "."):
            resolved.add(target)
    return resolved


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_every_module() -> None:
    found = modules()
    graph = {name: imports_of(name, path, set(found)) for name, path in found.items()}

    assert "sessionlib.client" in graph["sessionlib.store"]
    assert "sessionlib.lease" in graph["sessionlib.client"]
    assert "sessionlib.client" not in graph["sessionlib.lease"]
    assert len(found) > 60


def test_no_import_cycle_anywhere() -> None:
    found = modules()
    graph = {name: imports_of(name, path, set(found)) for name, path in found.items()}

    assert [] == cycles(graph)


def test_the_cycle_finder_finds_cycles() -> None:
    assert [["a", "b", "c"]] == cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
