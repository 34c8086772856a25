"""The package's import structure: no module imports itself back through others, and each
layer imports only the layers below it (docs/architecture.md). Read from the source with
`ast` (imports inside functions count too), so nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import nlq_jax

ROOT = Path(nlq_jax.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ("nlq_jax", *path.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _target(name: str) -> str | None:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in MODULES else None


def _imports(module: str) -> set[str]:
    """The nlq_jax modules that `module` imports, anywhere in its source."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names = [f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = _target(name) if name.startswith("nlq_jax") else None
            if target and target != module:
                out.add(target)
    return out


GRAPH = {m: _imports(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back():
    # A package's __init__ re-exports its modules; an edge into it is an edge into the package
    # as a whole, so cycles through __init__ files are left out here and checked by layer below.
    inits = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    graph = {m: {t for t in ts if t not in inits} for m, ts in GRAPH.items() if m not in inits}
    assert _cycles(graph) == []


# (lower package, higher package): the lower one must not import the higher one.
BELOW = [
    ("nlq_jax.entropy", "nlq_jax.latent_codecs"),
    ("nlq_jax.entropy", "nlq_jax.models"),
    ("nlq_jax.quantizers", "nlq_jax.models"),
    ("nlq_jax.quantizers", "nlq_jax.latent_codecs"),
    ("nlq_jax.layers", "nlq_jax.models"),
    ("nlq_jax.latent_codecs", "nlq_jax.models"),
    ("nlq_jax.latent_codecs", "nlq_jax.codec"),
    ("nlq_jax.models", "nlq_jax.codec"),
    ("nlq_jax.models", "nlq_jax.train"),
    ("nlq_jax.baselines", "nlq_jax.evaluation"),
    ("nlq_jax.data.records", "nlq_jax.data.sources"),
    ("nlq_jax.data.tfds_sources", "nlq_jax.data.sources"),
    ("nlq_jax.checkpoint", "nlq_jax.train"),
]


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("lower, higher", BELOW)
def test_a_layer_does_not_import_the_layers_above_it(lower, higher):
    upward = sorted(
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        if _inside(m, lower)
        for t in targets
        if _inside(t, higher)
    )
    assert not upward, upward
