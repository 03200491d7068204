"""The command (scripts/torchenv, Windows' entry point, `python -m torchenv.agent`): the no-op
check (agent/cli/fastpath.py), then a plainly spelled `select` (agent/cli/select_plain.py) or
`entrypoint` (agent/cli/entrypoint.py) before the typer CLI loads."""

import sys  # no `from __future__ import annotations`: see fastpath.py

TYPE_CHECKING = False  # not typing's: see fastpath.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn


def plain_way(argv: "list[str]") -> "Callable[[], int] | None":
    """The command ARGV names, run without the typer CLI, where it is spelled plainly; None:
    typer parses ARGV (always on Windows, where click expands wildcards in the arguments)."""
    if sys.platform == "win32" or argv[:1] != ["select"]:
        return None
    from torchenv.agent.cli import select_plain

    options = select_plain.plain_options(argv[1:])
    return None if options is None else lambda: select_plain.run(options)


def leave(code: int) -> "NoReturn":
    """sys.exit(code), skipping the interpreter's teardown (freeing every module: milliseconds
    once select's are loaded) where nothing is left for it: no atexit callback (logging,
    tempfile's and weakref's finalizers, concurrent.futures register one), no other thread,
    and both streams flushed."""
    import atexit
    import os

    threading = sys.modules.get("threading")
    if getattr(atexit, "_ncallbacks", lambda: 1)() == 0 and (
        threading is None or threading.active_count() == 1
    ):
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
        except (OSError, ValueError):
            pass  # the interpreter's own exit says it, as it would have
        else:
            os._exit(code)
    sys.exit(code)


def main() -> None:
    from torchenv.agent.cli import fastpath

    argv = sys.argv[1:]
    if fastpath.run(argv):
        leave(0)
    plain = plain_way(argv)
    if plain is not None:
        leave(plain())
    if argv[:1] == ["entrypoint"]:
        from torchenv.agent.cli.entrypoint import run_plain

        run_plain(argv[1:])  # becomes the command or exits, unless typer must parse argv
    from torchenv.agent.cli.main import main as cli_main

    cli_main()
