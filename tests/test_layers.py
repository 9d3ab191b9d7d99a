"""The package's imports go one way (docs/architecture.md): every project import, including those inside
functions, points to the same or a lower layer, and there are no cycles. A new upward import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "projected_grpo"
# lowest first; a module may import its own layer and any below it (within a layer: no cycles)
LAYERS = ("core", "environment", "adapters", "directions", "projection", "interventions", "training",
          "organism", "experiments", "cli")
CORE = {"atomic", "errors", "logs", "provenance", "models", "model_fetch", "__init__"}  # package-level foundations


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in CORE:
        return 0
    return LAYERS.index(parts[1])


def project_imports() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):  # ast.walk: imports inside functions count too
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name and not name.startswith(m + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on.discard(component[-1])
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(project_imports()) == []


def test_imports_point_down_the_layers():
    upward = [f"{a} → {b}" for a, targets in project_imports().items() for b in sorted(targets)
              if layer(b) > layer(a) and not (a.startswith("projected_grpo.cli") and b == "projected_grpo.cli")]
    assert upward == []


@pytest.mark.parametrize("edge", [("projected_grpo.training.run", "projected_grpo.organism.build")])
def test_the_check_catches_an_upward_import(edge):
    """The checker itself: an upward edge is flagged and a two-module loop is a cycle."""
    a, b = edge
    assert layer(b) > layer(a)
    assert cycles({a: {b}, b: {a}}) == [sorted([a, b])]


def test_no_module_over_400_lines():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
