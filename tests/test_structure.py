"""The shape of the code: arrows one way (tasks.py -> stages/ -> infra/), no import circles."""

from __future__ import annotations

import ast

from tests.conftest import REPO


def import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports, anywhere in its body (lazy imports are arrows too)."""
    paths = [*REPO.glob("infra/**/*.py"), *REPO.glob("stages/*.py"), REPO / "tasks.py"]
    modules = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p for p in paths}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def test_no_import_circles():
    graph = import_graph()
    circles = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in graph[node]:
            if nxt == start:
                circles.append(" -> ".join([*path, start]))
            elif nxt not in path:
                walk(start, nxt, [*path, nxt])

    for module in graph:
        walk(module, module, [module])
    assert circles == []


def test_arrows_point_one_way():
    layer = {"tasks": 0, "stages": 1, "infra": 2}
    backwards = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                 if layer[b.split(".")[0]] < layer[a.split(".")[0]]]
    assert backwards == []
