"""The package's shape: layers that never import upward, no import cycles,
and the size budgets (docs/architecture.md).

Every `import` and `from ... import` statement of the package, at module
level or inside a function, is resolved to the module it names."""
from __future__ import annotations

import ast
import statistics
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
#: source folder -> the package it installs as
TREES = {"unfold": "unfold", "backends": "unfold.backends", "viz": "unfold.viz"}
#: package prefix -> (layer, name); the longest prefix wins
LAYERS = {"unfold.lang": (0, "lang"), "unfold.graph": (1, "graph"), "unfold.compiler": (2, "compiler"),
          "unfold.backends": (3, "backends"), "unfold.viz": (3, "viz"), "unfold.train": (3, "train"),
          "unfold.bridges": (3, "bridges"), "unfold.seq2seq": (3, "seq2seq"), "unfold.seqloss": (3, "seqloss"),
          "unfold.tree": (3, "tree"), "unfold.tools": (4, "tools"), "unfold": (5, "facade")}


def modules() -> dict[str, Path]:
    """dotted module name -> its file, for every module of the package."""
    out = {}
    for folder, package in TREES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


MODULES = modules()


def layer(module: str) -> tuple[int, str]:
    key = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[key]


def imports(module: str, path: Path) -> set[str]:
    """The package modules `module` imports, anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:   # `from pkg import mod` names a module
                sub = f"{base}.{a.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES}


GRAPH = nx.DiGraph()
for _mod, _path in MODULES.items():
    GRAPH.add_node(_mod)
    for _target in imports(_mod, _path):
        GRAPH.add_edge(_mod, _target)


def test_layers_never_import_upward():
    upward = [f"{a} ({layer(a)[1]}) imports {b} ({layer(b)[1]})" for a, b in GRAPH.edges
              if layer(b)[0] > layer(a)[0]]
    assert not upward, "\n".join(upward)


def test_layers_backends_and_viz_stay_apart():
    across = [f"{a} imports {b}" for a, b in GRAPH.edges
              if {layer(a)[1], layer(b)[1]} == {"backends", "viz"}]
    assert not across, across


def test_layers_have_no_import_cycles():
    cycles = list(nx.simple_cycles(GRAPH))
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_layers_the_walk_sees_imports_inside_functions():
    """The walk is not blind: function-level imports are found (e.g. the facade's draw)."""
    assert "unfold.viz" in imports("unfold", MODULES["unfold"])
    assert ("unfold.compiler.driver", "unfold.compiler.passes") in GRAPH.edges


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("module", sorted(MODULES))
def test_budget_module_lines(module):
    n = len(MODULES[module].read_text().splitlines())
    assert n <= 400, f"{module} has {n} lines (budget 400)"


def test_budget_function_lines():
    sizes = {f"{m}.{name}": n for m, p in MODULES.items() for name, n in _functions(p)}
    long = {k: n for k, n in sizes.items() if n > 40}
    assert not long, f"functions over 40 lines: {long}"
    assert statistics.median(sizes.values()) < 12, statistics.median(sizes.values())


def test_every_package_is_in_pyproject():
    """A package left out of pyproject.toml's list works in an editable install
    and is missing from a wheel."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {m if p.name == "__init__.py" else m.rpartition(".")[0] for m, p in MODULES.items()}
    assert found == listed, (sorted(found - listed), sorted(listed - found))
