"""The import graph of a package, read with ast (module-level, function-level and TYPE_CHECKING
imports alike), and the two rules orchat/ keeps: no cycles, and layers that only point down."""

from __future__ import annotations

import ast
from pathlib import Path

# Rank of each wing (a top-level module of the foundation counts as wing "" ). A module may import
# its own wing or a wing of strictly lower rank; wings of equal rank never import each other.
WING_RANKS = {
    "": 0,  # foundation: errors, paths, fsutil, settingstable, config, keys, args, __init__
    "wire": 1,
    "telemetry": 1,
    "docgen": 1,
    "chat": 2,
    "backup": 2,
    "health": 3,
    "gateway": 4,
    "commands": 5,
    "cli": 6,  # the entry point: orchat.cli and orchat.__main__
}
ENTRY_MODULES = {"cli", "__main__"}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_graph(root: Path) -> dict[str, set[str]]:
    """Return {module: {imported modules of the same package}} for every .py file under ROOT."""
    files = {module_name(root, path): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name and not _is_wing_package(target, files):
                    edges.add(target)
        graph[name] = edges
    return graph


def _is_wing_package(name: str, files: dict[str, Path]) -> bool:
    # A wing's __init__ is a docstring only: importing orchat.health.runner touches it, which is no edge.
    return files[name].name == "__init__.py" and "." in name


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """Return one import cycle as [a, b, ..., a], or [] when the graph has none."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return []


def wing_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return ""
    if len(parts) == 2 and parts[1] in ENTRY_MODULES:
        return "cli"
    if len(parts) == 2:
        return "" if parts[1] not in WING_RANKS else parts[1]
    return parts[1]


def find_breaches(graph: dict[str, set[str]]) -> list[str]:
    """Return 'a imports b' for every import that points sideways or up between wings."""
    breaches = []
    for module, targets in sorted(graph.items()):
        own = wing_of(module)
        for target in sorted(targets):
            other = wing_of(target)
            if other != own and WING_RANKS[other] >= WING_RANKS[own]:
                breaches.append(f"{module} ({own or 'foundation'}) imports {target} ({other or 'foundation'})")
    return breaches


def unknown_wings(graph: dict[str, set[str]]) -> list[str]:
    """Return modules in a subpackage that WING_RANKS does not rank (a new wing needs a rank)."""
    return sorted(m for m in graph if m.count(".") >= 2 and m.split(".")[1] not in WING_RANKS)
