"""House rules over the source tree: module sizes, docstrings, no import cycle, stages in order.

Every import counts, lazy ones inside functions and ones under TYPE_CHECKING too: an arrow is an
arrow whether it is taken at start-up or later.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

PACKAGES = {"agent": "torchenv.agent", "backends": "torchenv.backends", "probes": "torchenv.probes"}
MAX_LINES = 400
# The agent's rooms in pipeline order: a room imports only from rooms at or before its own.
# daemon and cli are the two edges, side by side.
STAGES = (("base",), ("host",), ("index",), ("lock",), ("verify",), ("env",), ("fleet",),
          ("pipeline",), ("daemon", "cli"))  # fmt: skip


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for top, name in PACKAGES.items():
        for path in sorted((root / top).rglob("*.py")):
            parts = [name, *path.relative_to(root / top).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: set[str]) -> list[tuple[str, int]]:
    """The torchenv modules a file imports, each with the line of its import."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.append((full if full in known else node.module, node.lineno))
    return [(name, line) for name, line in out if name in known]


Edges = dict[str, list[tuple[str, int]]]


def graph(found: dict[str, Path]) -> Edges:
    known = set(found)
    return {name: imports(path, known) for name, path in found.items()}


def stage_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != ["torchenv", "agent"] or len(parts) < 3:
        return None
    return next((i for i, rooms in enumerate(STAGES) if parts[2] in rooms), None)


def cycles(edges: Edges) -> list[list[str]]:
    """Each back edge of a depth-first walk, as the cycle it closes (a package importing its
    own submodule through its __init__ is no cycle)."""
    state: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target, _ in edges[module]:
            if target == module or module.startswith(target + "."):
                continue
            if state.get(target) == 1:
                found.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    return found


def later_stage_imports(edges: Edges) -> list[str]:
    wrong = []
    for module, targets in edges.items():
        mine = stage_of(module)
        for target, line in targets:
            theirs = stage_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                wrong.append(f"{module}:{line} imports the later stage {target}")
            if not module.startswith("torchenv.agent") and target.startswith("torchenv.agent"):
                wrong.append(f"{module}:{line} imports the app layer ({target})")
    return wrong


FOUND = modules()
EDGES = graph(FOUND)


def test_the_tree_has_modules_in_every_room() -> None:
    rooms = {name.split(".")[2] for name in FOUND if name.startswith("torchenv.agent.")}
    assert {room for group in STAGES for room in group} <= rooms


def test_no_module_is_over_400_lines() -> None:
    long = {
        name: n
        for name, path in FOUND.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_every_module_has_a_docstring() -> None:
    missing = [
        name
        for name, path in FOUND.items()
        if ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) is None
    ]
    assert missing == []


def test_there_is_no_import_cycle() -> None:
    assert cycles(EDGES) == []


def test_no_stage_imports_a_later_one() -> None:
    assert later_stage_imports(EDGES) == []


# ---------------------------------------------------------------- the rules catch what they say


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for top in PACKAGES:
        (tmp_path / top).mkdir(exist_ok=True)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "rule"),
    [
        (
            {
                "agent/base/a.py": '"""a"""\nfrom torchenv.agent.base import b\n',
                "agent/base/b.py": '"""b"""\ndef f():\n    from torchenv.agent.base import a\n',
            },
            cycles,
        ),
        (
            {
                "agent/lock/x.py": '"""x"""\nfrom torchenv.agent.env.y import z\n',
                "agent/env/y.py": '"""y"""\nz = 1\n',
            },
            later_stage_imports,
        ),
        (
            {"backends/x.py": '"""x"""\nimport torchenv.agent.base.y\n', "agent/base/y.py": ""},
            later_stage_imports,
        ),
    ],
)
def test_the_rules_fail_on_a_tree_that_breaks_them(
    tmp_path: Path, files: dict[str, str], rule: Callable[[Edges], list[Any]]
) -> None:
    assert rule(graph(modules(_tree(tmp_path, files)))) != []
