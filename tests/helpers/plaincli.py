"""What the plain-command tests (test_select_plain.py, test_lock_plain.py, ...) share: both ways in,
typer's view of a command's options, and every spelling of one option."""

from __future__ import annotations

import re
import sys
from types import ModuleType
from typing import Any

import pytest
import typer

from torchenv.agent.cli.main import app

CONSOLE = [sys.executable, "-m", "torchenv.agent"]  # the console script's way in: plain first
TYPER = [sys.executable, "-c", "from torchenv.agent.cli.main import main; main()"]
LEFT_TO_TYPER = frozenset({"--help", "-h"})
KNOWN_TYPES = {"StringParamType", "Path", "TyperPath", "BoolParamType"}  # by class name
# What differs between any two syncs: the new environment's id (and an adopted one's name),
# and how long each step took (`0.52 s` in text, a number ending a JSON line).
VARIES = re.compile(r"\d{8}-\d{6}(?:-[0-9a-f]{6})?|\d+\.\d+(?:e-?\d+)?(?= s\b)"
                    r"|(?<=\": )\d+\.\d+(?:e-?\d+)?(?=,?$)", re.MULTILINE)  # fmt: skip


def masked(text: str) -> str:
    """TEXT with what VARIES between two syncs written N."""
    return VARIES.sub("N", text)


def command(name: str) -> Any:
    """typer's command NAME, as click has it."""
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def typer_passes(
    name: str,
    run_module: ModuleType,
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    run: str = "run",
) -> dict[str, Any]:
    """The arguments the typer command NAME gives `run_module.RUN` for `NAME ARGV`, and the
    verbosity it set for them (as `verbosity`)."""
    from torchenv.agent.cli import outcome

    seen: dict[str, Any] = {}

    def record(**options: Any) -> int:
        seen.update(options, verbosity=outcome.verbosity)
        return 0

    monkeypatch.setattr(run_module, run, record)
    monkeypatch.setattr(outcome, "verbosity", outcome.verbosity)  # put back afterwards
    app([name, *argv], prog_name="torchenv", standalone_mode=False)
    return seen


def spellings(option: Any) -> list[list[str]]:
    """Every way to give one option: each name, `--name value` and `--name=value` (a short
    name: `-r value` only), twice where it repeats or where the last one counts; a counted
    one (-q, -v) once, twice, and a short one doubled (`-qq`) and beside -q and -v (`-qv`)."""
    ways = []
    for name in [*option.opts, *option.secondary_opts]:
        if option.count:
            ways += [[name], [name, name], [name, "--json", name]]
            if name[:2] != "--":
                ways += [[name + name[1:]], [name + "qv"], ["-vq" + name[1:]]]
        elif option.is_flag:
            ways.append([name])
        elif name[:2] != "--":
            ways += [[name, "one"], [name, "one", name, "two"]]
        else:
            ways += [[name, "one"], [f"{name}=one"], [name, "one", name, "two"]]
    return ways
