"""The package's import direction: wings import downward only, no cycle (function-level imports included),
and an import inside a function only where it defers a heavy library.

The wings, bottom up, as ``diffmem/__init__.py`` maps them. A module may import its own wing and the
wings below. An import inside a function is allowed only when the module it imports pulls in torch,
numpy, pandas, matplotlib or PIL at import time (directly or through the package): deferring it keeps
building the DAG and the command line light. Anything else belongs at the top of the file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import diffmem

PKG = Path(diffmem.__file__).parent
WINGS = ["diffmem", "diffmem.errors", "diffmem.io", "diffmem.science", "diffmem.data", "diffmem.plan",
         "diffmem.training", "diffmem.results", "diffmem.steps", "diffmem.__main__"]  # fmt: skip
HEAVY = {"torch", "numpy", "pandas", "matplotlib", "PIL", "torchvision", "scipy", "sklearn"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def wing(mod: str) -> int:
    """Index of the wing a module belongs to (the longest wing name that is a prefix of it)."""
    best = max((w for w in WINGS if mod == w or mod.startswith(w + ".")), key=len)
    return WINGS.index(best)


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported name, line, inside a function) for every import of the file; names resolve to the
    deepest module of the package that exists, or stay as the top-level name of other libraries."""
    tree = ast.parse(path.read_text())
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    def in_function(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                return True
        return False

    def in_type_checking(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                return True
        return False

    out = []
    for node in ast.walk(tree):
        if in_type_checking(node):
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                     for a in node.names]  # fmt: skip
        else:
            continue
        for name in names:
            if name.split(".")[0] == "diffmem":
                while name not in MODULES:
                    name = name.rsplit(".", 1)[0]
            else:
                name = name.split(".")[0]
            out.append((name, node.lineno, in_function(node)))
    return out


EDGES = {mod: imports(path) for mod, path in MODULES.items()}


def heavy_at_import(mod: str, seen: frozenset = frozenset()) -> bool:
    """Does importing ``mod`` pull in a heavy library (through its module-level imports)?"""
    for name, _, inside in EDGES.get(mod, []):
        if inside:
            continue
        if name in HEAVY:
            return True
        if name in MODULES and name not in seen and name != mod and heavy_at_import(name, seen | {mod}):
            return True
    return False


def test_every_module_belongs_to_a_wing():
    assert len(MODULES) > 40
    for mod in MODULES:
        assert wing(mod) >= 0, mod


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_imports_run_downward(mod):
    upward = [
        f"{MODULES[mod].relative_to(PKG.parent)}:{line} imports {name} "
        f"({WINGS[wing(name)]} is above {WINGS[wing(mod)]})"
        for name, line, _ in EDGES[mod]
        if name in MODULES and wing(name) > wing(mod)
    ]
    assert not upward, "\n".join(upward)


def test_no_cycle_among_modules():
    """Depth-first search over every import between the package's modules, function-level ones included
    (a package imports its own modules only lazily: ``diffmem.data``'s re-exports are not edges)."""
    graph = {m: sorted({n for n, _, _ in EDGES[m] if n in MODULES and n != m and not m.startswith(n + ".")})
             for m in MODULES}  # fmt: skip
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n) :] + [m, n]))
            if n not in state:
                visit(n, stack + [m])
        state[m] = 2

    for m in MODULES:
        if m not in state:
            visit(m, [])


def test_function_level_imports_only_defer_heavy_modules():
    light = [
        f"{MODULES[mod].relative_to(PKG.parent)}:{line} imports {name} inside a function"
        for mod in MODULES
        for name, line, inside in EDGES[mod]
        if inside and name in MODULES and not heavy_at_import(name)
    ]
    assert not light, f"{len(light)} function-level imports of light modules (import them at the top):\n" + "\n".join(
        light
    )


def test_the_checker_sees_what_it_checks(tmp_path):
    """The checker's own known answers: an upward import, a function-level one and a cycle are found."""
    (tmp_path / "m.py").write_text(
        "from diffmem.steps import table\n\ndef f():\n    from diffmem.io import read_json\n"
    )
    found = imports(tmp_path / "m.py")
    assert ("diffmem.steps.table", 1, False) in found and ("diffmem.io", 4, True) in found
    assert wing("diffmem.steps.table") > wing("diffmem.science.nets") > wing("diffmem.io")
    assert heavy_at_import("diffmem.science.nets") and not heavy_at_import("diffmem.plan.layout")
