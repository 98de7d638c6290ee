"""The engine's layers hold: no module imports a layer above its own, and no modules import each
other in a circle. Read from the source with `ast` (imports under `if TYPE_CHECKING:` are for
annotations and do not count), so a new import that breaks the layering fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import ROOT

PACKAGES = {
    "neardex.indexer": ROOT / "indexer/neardex/indexer",
    "neardex.server": ROOT / "server/neardex/server",
    "neardex.client": ROOT / "client/neardex/client",
}
# Lowest first; a module may import its own layer and those before it. The kernel is the
# package's own top-level modules.
LAYERS = ["kernel", "query", "stores", "embedding", "ingest", "retrieval", "catalog"]


def modules() -> dict[str, Path]:
    found = {}
    for base, folder in PACKAGES.items():
        for file in folder.rglob("*.py"):
            parts = [p for p in file.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([base, *parts])] = file
    return found


def _runtime_nodes(tree: ast.Module) -> list[ast.stmt]:
    """Every statement but those under `if TYPE_CHECKING:`."""
    out: list[ast.stmt] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.stmt):
            out.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


def imports(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the known modules it imports at run time (function-level imports included)."""
    graph: dict[str, set[str]] = {}
    for name, file in known.items():
        package = name if file.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets: set[str] = set()
        for node in _runtime_nodes(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from pkg import mod` imports the submodule, `from pkg import name` the package.
                candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                              for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            for target in candidates:
                while target and target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in known and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def layer_of(module: str) -> int:
    rest = module.removeprefix("neardex.indexer").lstrip(".").split(".")
    return LAYERS.index(rest[0]) if rest[0] in LAYERS else 0


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other in a circle (Tarjan's strongly connected
    components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_engine_module_imports_a_layer_above_its_own() -> None:
    graph = imports(modules())
    upward = [f"{m} ({LAYERS[layer_of(m)]}) imports {t} ({LAYERS[layer_of(t)]})"
              for m, targets in graph.items() if m.startswith("neardex.indexer")
              for t in targets if t.startswith("neardex.indexer") and layer_of(t) > layer_of(m)]
    assert not upward, "\n".join(upward)


def test_engine_layers_are_folders_that_exist() -> None:
    # A renamed layer folder would otherwise make every module "kernel" and the check above vacuous.
    folder = PACKAGES["neardex.indexer"]
    assert all((folder / layer / "__init__.py").is_file() for layer in LAYERS[1:])


def test_no_modules_import_each_other_in_a_circle() -> None:
    graph = imports(modules())
    assert cycles(graph) == []


def test_the_checker_sees_a_circle_and_an_upward_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert layer_of("neardex.indexer.catalog.snapshots") > layer_of("neardex.indexer.stores.local.fts")
