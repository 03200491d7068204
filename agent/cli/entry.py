"""The command (scripts/torchenv, Windows' entry point, `python -m torchenv.agent`): the no-op
check (agent/cli/fastpath.py) and a plainly spelled `entrypoint` (agent/cli/entrypoint.py)
before the typer CLI loads."""

import sys  # no `from __future__ import annotations`: see fastpath.py


def main() -> None:
    from torchenv.agent.cli import fastpath

    argv = sys.argv[1:]
    if fastpath.run(argv):
        sys.exit(0)
    if argv[:1] == ["entrypoint"]:
        from torchenv.agent.cli.entrypoint import run_plain

        run_plain(argv[1:])  # becomes the command or exits, unless typer must parse argv
    from torchenv.agent.cli.main import main as cli_main

    cli_main()
