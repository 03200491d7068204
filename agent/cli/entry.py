"""The command (scripts/torchenv, Windows' entry point, `python -m torchenv.agent`): the no-op
check (agent/cli/fastpath.py), then a plainly spelled `select`, `lock`, `sync` or `auto`
(agent/cli/select_plain.py, lock_plain.py, sync_plain.py, auto_plain.py) or `entrypoint`
(agent/cli/entrypoint.py) before the typer CLI loads."""

import sys  # no `from __future__ import annotations`: see fastpath.py

TYPE_CHECKING = False  # not typing's: see fastpath.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn


PLAIN = (["select"], ["lock"], ["sync"], ["auto"])  # the commands with a plain way in


def plain_way(argv: "list[str]") -> "Callable[[], int] | None":
    """The command ARGV names, run without the typer CLI, where it is spelled plainly; None:
    typer parses ARGV (always on Windows, where click expands wildcards in the arguments)."""
    if sys.platform == "win32" or argv[:1] not in PLAIN:
        return None
    from importlib import import_module

    plain = import_module(f"torchenv.agent.cli.{argv[0]}_plain")  # lock_plain, select_plain, ...
    options = plain.plain_options(argv[1:])
    return None if options is None else lambda: int(plain.run(options))


def leave(code: int) -> "NoReturn":
    """sys.exit(code) without the last part of the interpreter's exit, freeing every module
    (tens of milliseconds once a lock's are loaded): first what that exit does before it, as it
    does it (other threads joined, atexit callbacks run: logging's, tempfile's and weakref's
    finalizers, both streams flushed), then os._exit. Where a step is not there to call or a
    stream cannot be flushed, sys.exit as ever (the interpreter then says why)."""
    import atexit
    import os

    threading = sys.modules.get("threading")
    shutdown = getattr(threading, "_shutdown", None) if threading is not None else None
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if (threading is not None and shutdown is None) or run_exitfuncs is None:
        sys.exit(code)
    if shutdown is not None:
        shutdown()  # joins the threads that are not daemons, as the interpreter's exit does
    run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        sys.exit(code)  # the interpreter's own exit says it, as it would have
    os._exit(code)


def _code(stop: SystemExit) -> "int | None":
    """The exit status a SystemExit gives, where it is a number (None: the interpreter prints
    its message and exits 1, so it is left to do so)."""
    if stop.code is None:
        return 0
    return stop.code if isinstance(stop.code, int) else None


def main() -> None:
    from torchenv.agent.cli import fastpath

    argv = sys.argv[1:]
    if fastpath.run(argv):
        leave(0)
    from torchenv.agent.base import methodcache

    methodcache.install()  # before any dataclass: their methods' code kept between runs
    plain = plain_way(argv)
    if plain is not None:
        leave(plain())
    if argv[:1] == ["entrypoint"]:
        from torchenv.agent.cli.entrypoint import run_plain

        run_plain(argv[1:])  # becomes the command or exits, unless typer must parse argv
    from torchenv.agent.cli.main import main as cli_main

    try:
        cli_main()
    except SystemExit as stop:  # every way out of the typer CLI
        code = _code(stop)
        if code is None:
            raise
        leave(code)
