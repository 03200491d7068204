"""A plainly spelled `torchenv auto` without typer: its argv read as click reads it, or left
to the typer command (tests/agent/cli/test_auto_plain.py derives the options from it)."""

from __future__ import annotations

from typing import Any

from torchenv.agent.cli import plainargs

# auto's options by the parameter of `env_run.run_auto` each sets (-q and -v: plainargs;
# -h and --help are left to typer).
VALUED = {"--prefix": "prefix", "--lock": "lock", "--backend": "backend",
          "--torch-backend": "backend", "--channel": "channel",
          "--torch-index-url": "torch_index_url", "--index-url": "index_url",
          "--lock-source": "lock_source", "--lock-source-missing": "lock_source_missing",
          "--replay": "replay", "--host-report": "host_report", "--os": "os", "--arch": "arch",
          "--python": "python", "--python-version": "python_version",
          "--python-platform": "python_platform", "--driver": "driver",
          "--macos": "macos"}  # fmt: skip
REPEATED = {"-r": "requirement_file", "--requirement": "requirement_file", "--gpu": "gpu",
            "--rocm-gfx": "rocm_gfx"}  # fmt: skip
FLAGS = {"--xpu": "xpu", "--force": "force", "--dry-run": "dry_run", "--json": "as_json"}
PATHS = frozenset({"requirement_file", "lock", "replay", "host_report"})


def plain_options(argv: list[str]) -> dict[str, Any] | None:
    """`env_run.run_auto`'s arguments from `auto ARGV` where it is spelled plainly (see
    plainargs.parse); None: typer parses it."""
    return plainargs.parse(argv, valued=VALUED, repeated=REPEATED, flags=FLAGS, paths=PATHS)


def run(options: dict[str, Any]) -> int:
    """Run auto with `options` (plain_options'), saying any error as the typer command says
    it; the exit code."""
    return plainargs.run_command("env_run", "run_auto", options)
