"""No import cycles inside ``voicecli`` (design.md: dependencies point one way).

Every module is parsed with :mod:`ast`; every import counts: top-level, inside functions (lazy),
``from . import x``, and ``if TYPE_CHECKING:`` ones (a type-only cycle is still a layering defect).
An import of ``a.b.c`` is an edge to the deepest module of ``voicecli`` it names (``from a.b import
c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``). A package's ``__init__`` is
not implied by importing one of its submodules: that would make every ``voicecli.x`` depend on
``voicecli/__init__``, which imports nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "voicecli"

# Cycles still present in files this test's owner does not own, named by the module pair that closes
# them. Shrink it; never grow it. A listed edge that no longer exists fails the test (so the list
# cannot outlive the cycle).


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve_from(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _deepest(name: str, modules: dict[str, Path]) -> str | None:
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``voicecli`` modules ``name`` imports, anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, name, path.name == "__init__.py")
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        for target in targets:
            mod = _deepest(target, modules)
            if mod is not None and mod != name and mod != "voicecli":
                found.add(mod)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a cycle path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_path(comp, graph) for comp in components]


def _cycle_path(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One concrete cycle inside a strongly connected component, for the failure message."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in graph[path[-1]] if w in members)
        back = [w for w in nxt if w == start]
        if back and len(path) > 1:
            return [*path, start]
        fresh = [w for w in nxt if w not in seen]
        if not fresh:
            return [*path, start]
        path.append(fresh[0])
        seen.add(fresh[0])


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


# ------------------------------------------------------------------ the checker itself


def _graph_from(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    root = tmp_path / "voicecli"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    modules = {module_name_in(root, p): p for p in sorted(root.rglob("*.py"))}
    return {n: imports_of(n, p, modules) for n, p in modules.items()}


def module_name_in(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@pytest.mark.parametrize("a_text", [
    "from voicecli import b\n",                                   # from-package import of a module
    "def f():\n    import voicecli.b\n",                          # lazy, function-level
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from voicecli.b import X\n",
    "from . import b\n",                                          # relative
    "from .b import X\n",
])
def test_checker_finds_every_kind_of_import(tmp_path: Path, a_text: str) -> None:
    graph = _graph_from(tmp_path, {"__init__.py": "", "a.py": a_text, "b.py": "import voicecli.a\n"})
    assert find_cycles(graph) == [["voicecli.a", "voicecli.b", "voicecli.a"]]


def test_checker_passes_a_one_way_chain(tmp_path: Path) -> None:
    graph = _graph_from(tmp_path, {"__init__.py": "", "a.py": "from voicecli.sub import c\n",
                                   "sub/__init__.py": "", "sub/c.py": "from .. import b\n",
                                   "b.py": "import json\n"})
    assert graph["voicecli.a"] == {"voicecli.sub.c"} and graph["voicecli.sub.c"] == {"voicecli.b"}
    assert find_cycles(graph) == []
