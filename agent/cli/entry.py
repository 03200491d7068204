"""The command (scripts/torchenv, Windows' entry point, `python -m torchenv.agent`): the no-op
check (agent/cli/fastpath.py), then a plainly spelled `select` (agent/cli/select_plain.py) or
`entrypoint` (agent/cli/entrypoint.py) before the typer CLI loads."""

import sys  # no `from __future__ import annotations`: see fastpath.py

TYPE_CHECKING = False  # not typing's: see fastpath.py
if TYPE_CHECKING:
    from collections.abc import Callable


def plain_way(argv: "list[str]") -> "Callable[[], int] | None":
    """The command ARGV names, run without the typer CLI, where it is spelled plainly; None:
    typer parses ARGV (always on Windows, where click expands wildcards in the arguments)."""
    if sys.platform == "win32" or argv[:1] != ["select"]:
        return None
    from torchenv.agent.cli import select_plain

    options = select_plain.plain_options(argv[1:])
    return None if options is None else lambda: select_plain.run(options)


def main() -> None:
    from torchenv.agent.cli import fastpath

    argv = sys.argv[1:]
    if fastpath.run(argv):
        sys.exit(0)
    plain = plain_way(argv)
    if plain is not None:
        sys.exit(plain())
    if argv[:1] == ["entrypoint"]:
        from torchenv.agent.cli.entrypoint import run_plain

        run_plain(argv[1:])  # becomes the command or exits, unless typer must parse argv
    from torchenv.agent.cli.main import main as cli_main

    cli_main()
