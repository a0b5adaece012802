"""A static import graph of packages (``ast``, nothing imported) and its cycles.

Every ``import`` / ``from ... import`` in a module counts, at any depth (a function's lazy
import too), except those under ``if TYPE_CHECKING:``. ``from pkg import name`` is an edge to
``pkg.name`` when that is a module of the tree, else to ``pkg``. Imports of modules outside
the given packages are ignored.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImportEdge:
    source: str
    target: str
    line: int


def module_names(root: Path, packages: list[str]) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every import outside ``if TYPE_CHECKING`` blocks."""
    found: list[tuple[str, list[str], int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_edges(root: Path, packages: list[str]) -> list[ImportEdge]:
    modules = module_names(root, packages)
    edges: list[ImportEdge] = []
    for source, path in modules.items():
        for module, names, line in _imports(ast.parse(path.read_text(), str(path))):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            if len(targets) < len(names) or not names:
                targets.append(module)
            for target in targets:
                # ``import a.b.c`` of a module of the tree: its longest known prefix.
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != source:
                    edges.append(ImportEdge(source, target, line))
    return edges


def find_cycle(edges: list[ImportEdge]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    graph: dict[str, list[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, []).append(edge.target)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph.get(start, [])))]
        state[start] = 1
        while stack:
            following = next(stack[-1], None)
            if following is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(following) == 1:
                return path[path.index(following) :] + [following]
            elif not state.get(following):
                state[following] = 1
                path.append(following)
                stack.append(iter(sorted(graph.get(following, []))))
    return None


def package_of(module: str, modules: set[str]) -> str:
    """The package a module belongs to: itself when it is a package, else its parent."""
    is_package = any(other.startswith(module + ".") for other in modules)
    return module if is_package or "." not in module else module.rsplit(".", 1)[0]


def package_edges(edges: list[ImportEdge]) -> list[ImportEdge]:
    """The import graph between packages: ``a.b.x -> a.c.y`` becomes ``a.b -> a.c``.

    A package's ``__init__`` counts as the package. An edge between a package and one of its
    own sub-packages is dropped (a package re-exporting its parts is not a cycle).
    """
    modules = {e.source for e in edges} | {e.target for e in edges}
    out: list[ImportEdge] = []
    for edge in edges:
        source, target = package_of(edge.source, modules), package_of(edge.target, modules)
        nested = source.startswith(target + ".") or target.startswith(source + ".")
        if source != target and not nested:
            out.append(ImportEdge(source, target, edge.line))
    return out


def all_cycles(edges: list[ImportEdge]) -> list[list[str]]:
    """Every strongly connected group of more than one node (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0

    def strongconnect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for following in sorted(graph[node]):
            if following not in index:
                strongconnect(following)
                low[node] = min(low[node], low[following])
            elif following in on_stack:
                low[node] = min(low[node], index[following])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return sorted(groups)
