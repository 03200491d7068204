"""A plainly spelled `torchenv lock` without typer: its argv read as click reads it, or left
to the typer command (tests/agent/cli/test_lock_plain.py derives the options from it)."""

from __future__ import annotations

from typing import Any

from torchenv.agent.cli import plainargs

# lock's options by the parameter of `lock_run.run` each sets (-q and -v: plainargs;
# --publish, -h and --help are left to typer, and so is more than one host).
VALUED = {"-o": "output", "--output": "output", "--resolver": "resolver", "--os": "os_name",
          "--arch": "arch", "--python": "python", "--python-version": "python_version",
          "--python-platform": "python_platform", "--driver": "driver", "--macos": "macos",
          "--channel": "channel", "--backend": "backend", "--torch-backend": "backend",
          "--index-url": "index_url", "--torch-index-url": "torch_index_url"}  # fmt: skip
REPEATED = {"-r": "requirement_file", "--requirement": "requirement_file", "--replay": "replay",
            "--host-report": "host_report", "--gpu": "gpu", "--rocm-gfx": "rocm_gfx"}  # fmt: skip
FLAGS = {"--json": "as_json", "--check": "check", "--refresh": "refresh", "--xpu": "xpu"}
PATHS = frozenset({"output", "requirement_file", "replay", "host_report"})


def plain_options(argv: list[str]) -> dict[str, Any] | None:
    """`lock_run.run`'s arguments from `lock ARGV` where it is spelled plainly (see
    plainargs.parse) and names one host at most; None: typer parses it."""
    given = plainargs.parse(argv, valued=VALUED, repeated=REPEATED, flags=FLAGS, paths=PATHS)
    if given is None or len(given["replay"] or ()) + len(given["host_report"] or ()) > 1:
        return None
    return {**given, "publish": None}


def run(options: dict[str, Any]) -> int:
    """Run lock with `options` (plain_options'), saying any error as the typer command says
    it; the exit code."""
    return plainargs.run_command("lock_run", "run", options)
