"""The console script: the no-op `auto` check (agent/cli/fastpath.py) before the typer CLI loads."""

from __future__ import annotations

import sys


def main() -> None:
    from torchenv.agent.cli import fastpath

    if fastpath.run(sys.argv[1:]):
        sys.exit(0)
    from torchenv.agent.cli.main import main as cli_main

    cli_main()
