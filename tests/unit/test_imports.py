"""The product's import graph: no cycle between modules anywhere, and the model layers never
import the simulator.

The graph is read from the source (every `.py` outside tests/ and benchmarks/), with every
`import` statement wherever it stands: at the top, inside a function, under `if TYPE_CHECKING`.
`from a.b import c` depends on the module `a.b.c` when that is a module, else on `a.b` (the
package's `__init__`): so `from sim.nonn import x` inside sim/nonn/ is a dependency on the
package that registers the workload, and a cycle with it.
"""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOT_PRODUCT = {"tests", "benchmarks", "build", "outputs", "multirun", "__pycache__"}
PURE = ("experiments", "devices", "channels", "strategies")  # the layers that know no simulator


def _skipped(folder: str) -> bool:
    return folder in NOT_PRODUCT or folder.startswith(".") or folder.endswith(".egg-info")


def _python_files() -> list[Path]:
    """Every product `.py` file, relative to the repository (tests, benchmarks, build output,
    hidden folders and caches pruned from the walk)."""
    found = []
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = sorted(d for d in subfolders if not _skipped(d))
        found += [Path(folder, f).relative_to(REPO) for f in sorted(files) if f.endswith(".py")]
    return found


def _module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def product_modules() -> dict[str, Path]:
    """Module name -> file, for every product `.py` file."""
    return {_module_name(rel): REPO / rel for rel in _python_files()}


def _package_of(name: str, path: Path) -> str:
    """The package a relative import in module `name` starts from."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _targets(node: ast.AST, name: str, path: Path) -> list[str]:
    """The modules one import statement names (not yet filtered to the product's)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = _package_of(name, path)
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    modules = product_modules()
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the product modules it imports (anywhere in the file)."""
    modules = product_modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = {t for node in ast.walk(tree) for t in _targets(node, name, path) if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a path back to its start) per strongly connected component of two or more
    modules (Tarjan's algorithm, iteratively)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        components.append(set(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return [_path_in(graph, c) for c in components]


def _path_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A cycle through the component's first module: a breadth-first path back to it."""
    start = min(component)
    previous = {start: None}
    queue = [start]
    for node in queue:
        for child in sorted(graph[node] & component):
            if child == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle found in the component {sorted(component)}")


def _with_parents(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph plus, for every import, the packages Python runs on the way (`a`, `a.b` for
    `a.b.c`): what importing a module executes."""
    modules = product_modules()
    out = {}
    for name, targets in graph.items():
        parents = {t.rsplit(".", i)[0] for t in targets for i in range(1, t.count(".") + 1)}
        out[name] = targets | {p for p in parents if p in modules and p != name}
    return out


def _reaches(graph: dict[str, set[str]], start: str, goal) -> list[str] | None:
    """The import chain from `start` to the first module `goal(name)` accepts, if any."""
    previous, queue = {start: None}, [start]
    for node in queue:
        if goal(node) and node != start:
            chain = [node]
            while previous[chain[-1]] is not None:
                chain.append(previous[chain[-1]])
            return list(reversed(chain))
        for child in sorted(graph[node]):
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return None


def _is_sim(name: str) -> bool:
    return name == "sim" or name.startswith("sim.")


def test_the_graph_is_read() -> None:
    """A guard for the tests below: the walk sees the packages and resolves both kinds of import."""
    graph = import_graph()
    assert {"sim.jobs", "sim.net", "experiments.federated.records", "strategies.fedmax"} <= graph.keys()
    assert "experiments.federated.internals" in graph["experiments.federated.records"]  # from a.b import c
    assert "experiments.nonn.models" in graph["experiments.nonn.train"]  # from .models import WRN
    assert not any(n.startswith(("tests", "benchmarks")) for n in graph)


def test_the_cycle_finder_names_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}}
    assert sorted(_cycles(graph)) == [["a", "b", "c", "a"], ["e", "e2", "e"]]


def test_no_import_cycle() -> None:
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_model_layers_never_import_the_simulator() -> None:
    """Directly, or through anything they import (package `__init__`s on the way included)."""
    graph = _with_parents(import_graph())
    bad = []
    for name in sorted(graph):
        if name.split(".")[0] in PURE:
            chain = _reaches(graph, name, _is_sim)
            if chain:
                bad.append(" -> ".join(chain))
    assert not bad, "the model layers import sim:\n" + "\n".join(bad)
