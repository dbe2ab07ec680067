"""The adadet package imports its own modules without a cycle.

A cycle works only while every module of it is imported in one particular order, and a
function-level import that closes one fails at the first call, far from its cause; so
imports inside functions count as much as those at the top of a file. The graph is read
from the source with ``ast`` (nothing is imported). Importing a package counts as importing
its ``__init__``; ``from package import name`` counts as importing the submodule ``name``
when there is one.
"""

import ast
from pathlib import Path
from typing import Dict, FrozenSet, List, Set, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "adadet"

def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_files() -> Dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve_relative(importer: str, is_package: bool, level: int, module: str) -> str:
    """The absolute name of ``from <level dots><module> import ...`` in ``importer``."""
    parts = importer.split(".")
    base = parts if is_package else parts[:-1]  # the package the importer sits in
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imported_modules(name: str, path: Path, modules: Set[str]) -> Set[str]:
    """The adadet modules that ``name`` imports, at any level of its source."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(name, path.name == "__init__.py", node.level, base)
            # a name that is a submodule is that module; any other name comes from base
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            # "import adadet.utils.tracing as t": the deepest module of the name
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> Dict[str, Set[str]]:
    files = module_files()
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def strongly_connected_components(graph: Dict[str, Set[str]]) -> List[Set[str]]:
    """Tarjan's algorithm, iterative (the graph may be deeper than Python's recursion)."""
    index: Dict[str, int] = {}
    lowlink: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    components: List[Set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = lowlink[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[node])
                if lowlink[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = lowlink[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                lowlink[node] = min(lowlink[node], index[child])
    return components


def one_cycle(graph: Dict[str, Set[str]], component: Set[str]) -> List[str]:
    """A cycle through the first module of ``component``, as a path that ends where it
    starts (breadth first: the shortest one)."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & component):
            if child == start:
                return paths[node] + [start]
            if child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    raise AssertionError(f"no cycle in the component {sorted(component)}")


def cycles() -> List[Tuple[List[str], FrozenSet[str]]]:
    graph = import_graph()
    components = [c for c in strongly_connected_components(graph) if len(c) > 1]
    return sorted(
        (one_cycle(graph, c), frozenset(c)) for c in components
    )


def test_the_graph_sees_imports_at_every_level():
    graph = import_graph()
    assert "adadet.checkpoint.adn_checkpointer" in graph["adadet.checkpoint"]  # from . import
    assert "adadet.config" in graph["adadet"]  # from .config import add_adn_config
    # a function-level import: setup_deploy_cfg's "import adadet.data"
    assert "adadet.data" in graph["adadet.deploy.predictor"]


def test_a_cycle_is_found_with_its_shortest_path():
    graph = {"a": {"b", "d"}, "b": {"c"}, "c": {"a"}, "d": {"b"}, "e": {"a"}}
    components = [c for c in strongly_connected_components(graph) if len(c) > 1]
    assert components == [{"a", "b", "c", "d"}]
    assert one_cycle(graph, components[0]) == ["a", "b", "c", "a"]


def test_no_import_cycle_in_adadet():
    found = cycles()
    assert not found, "adadet's modules import each other in a cycle:\n" + "\n".join(
        " -> ".join(path)
        + (f"\n   (all of {', '.join(sorted(members))} import one another)"
           if len(members) > len(path) - 1 else "")
        for path, members in found
    ) + "\nFix: move what both need into a module that neither imports, or let the caller "
    "pass it in."
