"""The shape of the code: arrows one way, no import circles, and each outside library where it belongs.

tasks.py -> stages/ -> infra/perf/ (measurement) -> infra/control/ (laptop and CI) -> infra/runtime/ (what
containers import); tools/ beside the library, for the CLI only (tasks.py and stages/), never for infra/.
"""

from __future__ import annotations

import ast

from tests.conftest import REPO


def _without_type_checking(tree: ast.Module) -> ast.Module:
    """The module without its `if TYPE_CHECKING:` blocks: names for annotations only, never imported when it runs."""
    for node in ast.walk(tree):
        for field in ("body", "orelse"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                setattr(node, field, [n for n in block if not (isinstance(n, ast.If) and ast.unparse(n.test) in
                                                               ("TYPE_CHECKING", "typing.TYPE_CHECKING"))])
    return tree


def import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports, anywhere in its body (lazy imports are arrows too)."""
    paths = [*REPO.glob("infra/**/*.py"), *REPO.glob("stages/*.py"), *REPO.glob("tools/*.py"), REPO / "tasks.py"]
    modules = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p for p in paths}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(_without_type_checking(ast.parse(path.read_text()))):
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


# Lower layers never import higher ones. tools/ is a developer's, imported by the CLI only (tasks, stages).
LAYERS = {"tasks": 0, "tools": 1, "stages": 1, "infra.perf": 2, "infra.control": 3, "infra.runtime": 4, "infra": 5}


def layer_of(module: str) -> str:
    return next(name for name in sorted(LAYERS, key=len, reverse=True) if module == name
                or module.startswith(name + "."))


def test_arrows_point_one_way():
    backwards = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                 if LAYERS[layer_of(b)] < LAYERS[layer_of(a)]
                 or (layer_of(b) == "tools" and layer_of(a) not in ("tasks", "stages"))]
    assert backwards == []


def outside_imports() -> dict[str, set[str]]:
    """Module -> the top-level names of the libraries it imports (lazy imports count)."""
    out = {}
    for path in [*REPO.glob("infra/**/*.py"), *REPO.glob("stages/*.py"), *REPO.glob("tools/*.py"), REPO / "tasks.py"]:
        names = set()
        for node in ast.walk(_without_type_checking(ast.parse(path.read_text()))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
        out[".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")] = names
    return out


# Where each library may be imported, by layer or module: Modal's SDK only where Modal objects are defined or
# called (the one boundary, its RPC adapter, the app and jobs); settings' loader only in settings; the asynchronous
# client in measurement; the container's HTTP client in the lifecycle; the Hub client where weights are fetched.
ALLOWED = {
    "modal": {"infra.runtime.app", "infra.runtime.jobs", "infra.runtime.modal_objects", "infra.runtime.remote",
              "infra.runtime.modal_rpc", "infra.runtime.sentinel_app"},
    "modal_proto": {"infra.runtime.modal_rpc"},
    "pydantic_settings": {"infra.control.settings"},
    "aiohttp": {"infra.perf.client", "infra.perf.bench"},
    "requests": {"infra.runtime.lifecycle", "tools.upgrade_check"},  # the container's HTTP; PyPI's JSON API
    "huggingface_hub": {"infra.runtime.weights"},
    "rich": {"stages.show"},  # what a terminal shows; everything else prints plain text
}


def test_each_outside_library_is_imported_only_where_it_belongs():
    misplaced = sorted(f"{module} imports {lib}" for module, names in outside_imports().items()
                       for lib, allowed in ALLOWED.items() if lib in names and module not in allowed)
    assert misplaced == []


def test_what_containers_receive_is_infra_runtime_and_nothing_else():
    """Only infra/runtime is mounted into containers, so nothing there may reach for the laptop's packages."""
    from infra.runtime import spec

    assert spec.PACKAGE == "infra.runtime"
    runtime = {m: names for m, names in outside_imports().items() if m.startswith("infra.runtime")}
    laptop_only = {"pydantic_settings", "invoke", "aiohttp", "rich", "tasks", "stages", "tools"}
    assert sorted(f"{m} imports {lib}" for m, names in runtime.items() for lib in names & laptop_only) == []
    assert not any(b.startswith(("infra.control", "infra.perf")) for m, bs in import_graph().items()
                   if m.startswith("infra.runtime") for b in bs)


def test_runtime_packages_pinned_where_the_tests_run_them():
    """The slim images install infra/runtime's libraries at the versions pyproject.toml pins for the tests."""
    import tomllib

    from infra.runtime import spec

    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(spec.RUNTIME_PACKAGES) <= set(dependencies)


def test_each_thing_is_modelled_once():
    """No two modules of infra/ define a class of the same name: a second `Scaling` or `Window` (a mirror dataclass, a
    Protocol restating a model's fields) is how one configuration came to be modelled three times."""
    defined: dict[str, list[str]] = {}
    for path in sorted(REPO.glob("infra/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                defined.setdefault(node.name, []).append(str(path.relative_to(REPO)))
    assert {name: where for name, where in defined.items() if len(where) > 1} == {}
