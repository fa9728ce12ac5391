"""No import cycles inside ga_gan: a module that needs another's piece gets it from a lower layer.

The graph is read statically (ast) from every ga_gan/*.py, function-level imports included, so
an in-function import that hides a cycle from Python still counts here. Imports that exist only
to keep `ga-gan --help` and config errors fast stay lazy; they are fine as long as they close
no loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ga_gan"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.Module, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The ga_gan modules `name` imports anywhere in its body (`from a import b` counts as
    a.b when a.b is a module, else as a)."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    # `import ga_gan.x.y` also runs ga_gan.x's __init__, but that is its parent package, not a
    # dependency of the importer's own code: only the named module counts
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported(ast.parse(p.read_text(), str(p)), module_name(p),
                                     p.name == "__init__.py", modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), each
    written as a closed path a -> b -> ... -> a through the component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(set(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [closed_path(graph, c) for c in components]


def closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """The shortest loop from the component's first module back to itself (breadth first)."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{component} is not strongly connected")


def describe(graph: dict[str, set[str]], loop: list[str]) -> str:
    """A loop, then every other module caught in the same tangle (a shortest loop may leave
    some out), so each can be traced to the file that imports upward."""
    others = sorted(_component(graph, loop[0]) - set(loop))
    return " -> ".join(loop) + (f"  (also in this tangle: {', '.join(others)})" if others else "")


def _component(graph: dict[str, set[str]], v: str) -> set[str]:
    def reach(start, edges):
        seen, todo = {start}, [start]
        while todo:
            for w in edges[todo.pop()] - seen:
                seen.add(w)
                todo.append(w)
        return seen
    reverse = {u: {w for w in graph if u in graph[w]} for u in graph}
    return reach(v, graph) & reach(v, reverse)


def test_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles in ga_gan (an import from a higher layer, often inside a " \
        "function):\n" + "\n".join(describe(graph, c) for c in found)


def test_the_check_finds_a_hidden_cycle():
    """A function-level import that closes a loop is reported, and a one-way import is not."""
    graph = {"a": set(), "b": set(), "c": set()}
    for name, source in (("a", "import b\n"), ("b", "def f():\n    from c import x\n"),
                         ("c", "def g():\n    import a\n")):
        graph[name] = imported(ast.parse(source), name, False, set(graph))
    assert cycles(graph) == [["a", "b", "c", "a"]]
    graph["c"] = set()
    assert cycles(graph) == []
    tangle = {"a": {"b"}, "b": {"a", "c"}, "c": {"a"}}  # two loops through a and b
    assert describe(tangle, cycles(tangle)[0]) == "a -> b -> a  (also in this tangle: c)"


def test_the_graph_sees_ga_gan():
    graph = import_graph()
    assert "ga_gan.checkpoint" in graph["ga_gan.run"]
    assert "ga_gan.errors" in graph["ga_gan.cli"]  # imported inside functions of cli.py
