"""pgq_console.core is the non-UI domain: importing all of it must not import Textual or Rich;
and no module of pgq_console imports itself back, not even through a function-local import."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pgq_console
import pgq_console.core


def test_core_never_imports_textual() -> None:
    modules = [
        f"pgq_console.core.{m.name}" for m in pkgutil.iter_modules(pgq_console.core.__path__)
    ]
    assert "pgq_console.core.overview" in modules and "pgq_console.core.backend" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "bad += sorted(m for m in sys.modules if m.startswith(('pgq_console.app', "
        "'pgq_console.screens', 'pgq_console.widgets')))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"core pulled in: {done.stdout}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at module level or inside a function or class, except those
    under `if TYPE_CHECKING:` (never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def module_graph() -> dict[str, set[str]]:
    """pgq_console's modules and the pgq_console modules each one imports, wherever the
    import statement stands (function-local imports included)."""
    root = Path(pgq_console.__file__).parent
    files = {
        ".".join(("pgq_console", *path.relative_to(root).with_suffix("").parts)).removesuffix(
            ".__init__"
        ): path
        for path in root.rglob("*.py")
    }
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{parent}.{base}" if base else parent
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                    for alias in node.names
                ]
            graph[name] |= {target for target in targets if target in files and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_even_through_function_local_imports() -> None:
    graph = module_graph()
    assert {"pgq_console.core.pooler", "pgq_console.fleet_mode"} <= graph.keys()
    assert "pgq_console.fleet_console" in graph["pgq_console.fleet_mode"]  # a local import
    assert cycles(graph) == []


def test_the_cycle_finder_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_messages_are_put_on_one_line_by_one_helper() -> None:
    """`core.text.one_line` is the one place that folds a message onto one line: a copy of its
    expression elsewhere drifts (one copy kept an empty message as "no problem")."""
    package = Path(pgq_console.__file__).parent
    copies = []
    for path in sorted(package.rglob("*.py")):
        if path == package / "core" / "text.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "join"
                and isinstance(node.func.value, ast.Constant)
                and node.func.value.value == " "
                and len(node.args) == 1
                and isinstance(node.args[0], ast.Call)
                and isinstance(node.args[0].func, ast.Attribute)
                and node.args[0].func.attr == "split"
                and not node.args[0].args
            ):
                copies.append(f"{path.relative_to(package)}:{node.lineno}")
    assert copies == [], f"use core.text.one_line: {copies}"
