"""A plainly spelled `torchenv select` without typer: its argv read as click reads it, or left
to the typer command (tests/agent/cli/test_select_plain.py derives the options from it)."""

from __future__ import annotations

from typing import Any

from torchenv.agent.cli import plainargs

# select's options by the parameter of `select_run.run` each sets (-q and -v: plainargs;
# -h and --help are left to typer).
VALUED = {"--replay": "replay", "--host-report": "host_report", "--os": "os_name",
          "--arch": "arch", "--python": "python", "--python-version": "python_version",
          "--python-platform": "python_platform", "--driver": "driver", "--macos": "macos",
          "--channel": "channel", "--backend": "backend", "--torch-backend": "backend",
          "--index-url": "index_url", "--torch-index-url": "torch_index_url"}  # fmt: skip
REPEATED = {"--gpu": "gpu", "--rocm-gfx": "rocm_gfx"}
FLAGS = {"--json": "as_json", "--explain": "explain", "--xpu": "xpu", "--offline": "offline",
         "--refresh": "refresh"}  # fmt: skip
PATHS = frozenset({"replay", "host_report"})


def plain_options(argv: list[str]) -> dict[str, Any] | None:
    """`select_run.run`'s arguments from `select ARGV` where it is spelled plainly (see
    plainargs.parse); None: typer parses it."""
    return plainargs.parse(argv, valued=VALUED, repeated=REPEATED, flags=FLAGS, paths=PATHS)


def run(options: dict[str, Any]) -> int:
    """Run select with `options` (plain_options'), saying any error as the typer command says
    it; the exit code."""
    return plainargs.run_command("select_run", "run", options)
