"""The package's shape (STYLE.md): no import cycles, views never import the factory.

Imports under ``if TYPE_CHECKING:`` are for annotations only and do not count;
every other import, at module level or inside a function, does.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "authsvc"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module)
                found.update(f"{child.module}.{alias.name}" for alias in child.names)
            elif isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imports = _runtime_imports(ast.parse(path.read_text(encoding="utf-8")))
        graph[name] = {m for m in imports if m in modules and m != name}
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph[start])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, ()))
    return seen


def test_no_module_imports_itself_through_others() -> None:
    graph = _graph()
    cycles = sorted(m for m in graph if m in _reachable(graph, m))
    assert cycles == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [("authsvc.views", "authsvc.app"), ("authsvc.keys", "authsvc.verifier")],
)
def test_layers_do_not_reach_back(importer: str, imported: str) -> None:
    graph = _graph()
    offenders = sorted(
        m
        for m in graph
        if (m == importer or m.startswith(importer + "."))
        and (imported in graph[m] or imported in _reachable(graph, m))
    )
    assert offenders == []
