"""The layer rules of docs/design.md ("Layers"), checked on the source: no import cycle between lab's packages,
and no upward import from the model, the topology loader or the netns substrate.

Every import counts: module level, inside functions, and under `if TYPE_CHECKING:`, since each one is a
dependency a reader (and mypy) must follow. Root-free: it parses the files with ast and imports nothing.
"""

from __future__ import annotations

import ast
import pathlib

import lab

LAB = pathlib.Path(lab.__file__).resolve().parent   # the lab/ actually imported (this worktree's)

# package -> the packages of lab it may import (besides itself); None = any, as long as no cycle forms.
ALLOWED: dict[str, set[str]] = {
    "lab.errors": set(),
    "lab.model": set(),
    "lab.netns": {"lab.errors"},
    "lab.topology": {"lab.errors", "lab.model"},
}


def _modules() -> dict[str, pathlib.Path]:
    """Dotted name -> file, for every module of lab/ (a package is named by its __init__)."""
    found = {}
    for path in LAB.rglob("*.py"):
        parts = path.relative_to(LAB.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(module: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[tuple[str, int]]:
    """(module of lab, line) for each import in the file, relative ones resolved, `from a import b` counted as
    importing a.b when b is a module (and a, whose __init__ runs first)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(package + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add((name, node.lineno))
    return found


def package(module: str) -> str:
    """lab.topology.loader -> lab.topology; lab.cli -> lab.cli."""
    return ".".join(module.split(".")[:2])


def package_edges() -> dict[str, dict[str, list[str]]]:
    """package -> {imported package: ["module:line", ...]} between different packages of lab."""
    modules = _modules()
    edges: dict[str, dict[str, list[str]]] = {}
    for module, path in sorted(modules.items()):
        for target, line in sorted(_imported(module, path, modules)):
            if package(target) == package(module):
                continue
            where = edges.setdefault(package(module), {}).setdefault(package(target), [])
            if f"{module}:{line}" not in where:
                where.append(f"{module}:{line}")
    return edges


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, {}):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_a_known_import():
    """Guards the test itself: a parse that found nothing would pass every rule below."""
    edges = package_edges()
    assert "lab.topology.loader:" in " ".join(edges["lab.topology"]["lab.errors"])
    assert "lab.netns" in edges["lab.cni"] and "lab.topology" in edges["lab.cni"]
    assert cycles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_packages():
    edges = package_edges()
    found = cycles(edges)
    detail = [f"{a} -> {b} ({', '.join(edges[a][b][:3])})" for component in found for a in component
              for b in edges.get(a, {}) if b in component]
    assert not found, f"package-level import cycles {found}; their edges:\n" + "\n".join(detail)


def test_lower_layers_import_nothing_above_them():
    edges = package_edges()
    wrong = [f"{source} -> {target} ({', '.join(where[:3])})" for source, allowed in ALLOWED.items()
             for target, where in sorted(edges.get(source, {}).items()) if target not in allowed]
    assert not wrong, "upward imports (allowed: see ALLOWED and docs/design.md, Layers):\n" + "\n".join(wrong)
