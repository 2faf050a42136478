"""The layering of the package, read from the source with ``ast``: no import circle between bench's sub-packages,
and each layer imports only the ones below it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "kd_methods", "bench")
# bench's sub-packages that sit above the trainer: bench/training must import none of them.
ABOVE_TRAINING = ("grid", "pipeline", "executors", "report", "deploy", "commands")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (annotations only, never imported)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports at run time, at any depth (a function's lazy import counts as much as a
    top-level one)."""
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        # `from bench.grid import plan` names a module; `from bench.grid.plan import Cell` names one of its objects.
        # A module's own packages are imported before it anyway, so an import of one of them is no edge.
        ancestors = {".".join(name.split(".")[:n]) for n in range(1, name.count(".") + 1)}
        imported = {i if i in modules else i.rpartition(".")[0] for i in _imports(path)}
        graph[name] = imported & set(modules) - {name} - ancestors
    return graph


def _subpackage(module: str) -> str:
    """``bench.pipeline.cell`` -> ``bench.pipeline``; a top-level module of bench (``bench.store``) is its own."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a path that ends where it starts), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_bench_subpackages_import_each_other_without_a_circle() -> None:
    packages: dict[str, set[str]] = {}
    for module, imported in _graph().items():
        if module.startswith("bench."):
            packages.setdefault(_subpackage(module), set()).update(
                _subpackage(i) for i in imported if i.startswith("bench.") and _subpackage(i) != _subpackage(module)
            )
    assert _cycle(packages) is None


def test_no_module_import_circle() -> None:
    assert _cycle(_graph()) is None


def test_training_imports_nothing_from_the_layers_above_it() -> None:
    above = {f"bench.{name}" for name in ABOVE_TRAINING}
    offending = {
        module: sorted(i for i in imported if _subpackage(i) in above)
        for module, imported in _graph().items()
        if module.startswith("bench.training")
    }
    assert {m: i for m, i in offending.items() if i} == {}


def test_models_and_kd_methods_never_import_bench() -> None:
    offending = {
        module: sorted(i for i in imported if i.split(".")[0] == "bench")
        for module, imported in _graph().items()
        if module.split(".")[0] in ("models", "kd_methods")
    }
    assert {m: i for m, i in offending.items() if i} == {}


def test_kd_methods_know_the_output_contract_but_no_concrete_model() -> None:
    contract = {"models", "models._output", "models._plugins", "models._errors"}
    offending = {
        module: sorted(i for i in imported if i.split(".")[0] == "models" and i not in contract)
        for module, imported in _graph().items()
        if module.split(".")[0] == "kd_methods"
    }
    assert {m: i for m, i in offending.items() if i} == {}


def test_the_cycle_finder_sees_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
