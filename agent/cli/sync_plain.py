"""A plainly spelled `torchenv sync` without typer: its argv read as click reads it, or left
to the typer command (tests/agent/cli/test_sync_plain.py derives the options from it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchenv.agent.cli import plainargs

# sync's options by the parameter of `env_run.run_sync` each sets (-q and -v: plainargs;
# -h and --help are left to typer, and so is any number of locks but one).
VALUED = {"--prefix": "prefix", "--replay": "replay", "--host-report": "host_report",
          "--python": "python", "--python-version": "python_version"}  # fmt: skip
FLAGS = {"--force": "force", "--dry-run": "dry_run", "--json": "as_json"}
PATHS = frozenset({"replay", "host_report"})


def plain_options(argv: list[str]) -> dict[str, Any] | None:
    """`env_run.run_sync`'s arguments from `sync ARGV` where it is spelled plainly (see
    plainargs.parse) and names one lock; None: typer parses it."""
    given = plainargs.parse(argv, valued=VALUED, repeated={}, flags=FLAGS, paths=PATHS)
    if given is None:
        return None
    locks = given.pop("requirements") or []  # the positional arguments
    return {**given, "lock": Path(locks[0])} if len(locks) == 1 else None


def run(options: dict[str, Any]) -> int:
    """Run sync with `options` (plain_options'), saying any error as the typer command says
    it; the exit code."""
    return plainargs.run_command("env_run", "run_sync", options)
