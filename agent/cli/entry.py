"""The command (scripts/torchenv, Windows' entry point, `python -m torchenv.agent`): the no-op
check (agent/cli/fastpath.py) before the typer CLI loads."""

import sys  # no `from __future__ import annotations`: see fastpath.py


def main() -> None:
    from torchenv.agent.cli import fastpath

    if fastpath.run(sys.argv[1:]):
        sys.exit(0)
    from torchenv.agent.cli.main import main as cli_main

    cli_main()
