"""The library's import graph: no cycle between modules (lazy imports included), layers that only look down, and no
production module that reaches the test kit, the tests or the HTTP adapter."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[2] / "layers" / "connect" / "connect_lambda"

# what each layer may import from the library (besides itself); anything else is a layer looking up
ALLOWED = {
    "errors": set(),
    "http": set(),
    "tracing": set(),
    "secrets": {"errors", "tracing"},
    "settings": {"errors", "forge.ids", "protocol.hosts"},
    "protocol": {"errors", "http", "settings", "tenancy.tenant", "tenancy.directory"},
    "forge": {"errors", "http", "settings", "protocol"},
}
NEVER_IN_PRODUCTION = ("connect_lambda.testing", "tests", "connect_apigw", "connect_app")
# the two command lines that render from the app's declaration load the app's package (``make template``/``manifest``)
APP_LOADERS = {"connect_lambda.app.template", "connect_lambda.app.manifest"}


def modules() -> dict[str, Path]:
    found = {}
    for path in LIBRARY.rglob("*.py"):
        parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
        found[".".join(parts).removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module named by an import, at the top or inside a function; not those under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    named: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named.add(node.module)
            named.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
    return named


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        module: {name for name in imports(path) if name in known and name != module} for module, path in known.items()
    }


def test_the_module_graph_has_no_cycle(graph):
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, path)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == []


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_the_lower_layers_import_only_what_lies_below_them(graph, layer):
    prefix = f"connect_lambda.{layer}"
    allowed = tuple(f"connect_lambda.{name}" for name in ALLOWED[layer])
    for module, targets in graph.items():
        if module != prefix and not module.startswith(prefix + "."):
            continue
        for target in targets:
            if target == prefix or target.startswith(prefix + "."):
                continue
            assert target.startswith(allowed), f"{module} imports {target}"


def test_no_production_module_imports_the_test_kit_the_tests_or_the_adapter():
    offenders = collections.defaultdict(set)
    for module, path in modules().items():
        if module.startswith("connect_lambda.testing"):
            continue
        for name in imports(path):
            if module in APP_LOADERS and name.startswith("connect_app"):
                continue
            if name.startswith(NEVER_IN_PRODUCTION):
                offenders[module].add(name)
    assert dict(offenders) == {}
