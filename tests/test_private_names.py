"""No module reaches into another object's private members.

``obj._name`` is allowed only where ``obj`` is ``self``, ``cls`` or
``super()``: the object's own class. The seed's documented, overridable hooks
(``_filter_exclude_lock``, ``_filter_include_lock``, ``_filter_one``) are
public API that happens to start with an underscore, and a few standard
library names (``sys._getframe``, named tuples' ``_replace``...) are too.
Seams between modules are public names and protocols of public names.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sessionlib", "exporter", "benchmarks")
ALLOWED = frozenset(
    {
        "_filter_exclude_lock",
        "_filter_include_lock",
        "_filter_one",
        "_replace",
        "_asdict",
        "_fields",
        "_make",
        "_exit",
        "_getframe",
    }
)


def reach_ins(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in ALLOWED:
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in {"self", "cls"}:
            continue
        if (
            isinstance(base, ast.Call)
            and isinstance(base.func, ast.Name)
            and base.func.id == "super"
        ):
            continue
        found.append(f"{path.relative_to(root)}:{node.lineno}: .{name}")
    return found


def test_no_module_uses_another_objects_private_names() -> None:
    found = [
        place
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for place in reach_ins(path)
    ]
    assert [] == found


def test_the_check_sees_a_reach_in(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f(pool):\n"
        "    return pool._store(1), self_._x, self._own, super()._base(), pool._filter_one(1)\n"
    )
    assert ["sample.py:2: ._store", "sample.py:2: ._x"] == sorted(reach_ins(sample, tmp_path))


def test_the_exporter_uses_only_sessionlibs_public_names() -> None:
    """The exporter imports from ``sessionlib`` itself, never from one of its modules."""
    found = []
    for path in sorted((ROOT / "exporter").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sessionlib."):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}")
            if isinstance(node, ast.ImportFrom) and node.module == "sessionlib":
                import sessionlib

                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name}"
                    for alias in node.names
                    if alias.name not in sessionlib.__all__
                ]
    assert [] == found
