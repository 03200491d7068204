"""The `torchenv` command line: typer commands that parse arguments and call the core."""

from __future__ import annotations

import os
import sys

import typer

from torchenv.agent import __version__
from torchenv.agent.base.errors import EXIT_CODES_HELP

# Every command, subcommands included, takes -h as well as --help (context settings inherit).
CONTEXT = {"help_option_names": ["-h", "--help"]}

_app = typer.Typer(
    name="torchenv",
    help="Install the PyTorch build that fits this machine, prove it runs, keep it right.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion, as typer ships them
    context_settings=CONTEXT,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"torchenv {__version__}")
        raise typer.Exit(0)


@_app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Install the PyTorch build that fits this machine, prove it runs, keep it right."""


# Which module defines each command; only the invoked one is imported (start-up time).
COMMAND_MODULES = {
    "probe": "cli.probe",
    "config": "cli.probe",
    "select": "cli.select",
    "catalog": "cli.select",
    "lock": "cli.lock",
    "auto": "cli.env",
    "sync": "cli.env",
    "verify": "cli.env",
    "rollback": "cli.env",
    "agent": "cli.daemon",
    "status": "cli.daemon",
    "entrypoint": "cli.daemon",
}


_registered: set[str] = set()


def _register(argv: list[str]) -> typer.Typer:
    """Register the command named in argv, or every command (for help and errors)."""
    import importlib

    named = next((a for a in argv if not a.startswith("-")), None)
    wanted = COMMAND_MODULES.get(named or "")
    modules = [wanted] if wanted else list(dict.fromkeys(COMMAND_MODULES.values()))
    for name in modules:
        if name not in _registered:
            _registered.add(name)
            importlib.import_module(f"torchenv.agent.{name}").register(_app)
    return _app


def __getattr__(name: str) -> typer.Typer:
    """`cli.app` is the whole command line, every command registered (tests, embedding)."""
    if name == "app":
        return _register([])
    raise AttributeError(name)


def main() -> None:
    """Run the command line; every way out is one of the exit codes in errors.py (typer exits 2
    for usage errors and 130 for Ctrl-C while parsing; the commands' guard does the rest)."""
    from torchenv.agent.base.errors import EXIT_INTERRUPTED, EXIT_UNEXPECTED

    try:
        _register(sys.argv[1:])(prog_name="torchenv")
    except BrokenPipeError:
        from torchenv.agent.cli.outcome import quiet_broken_pipe

        quiet_broken_pipe()
    except KeyboardInterrupt:
        typer.echo("torchenv: interrupted; nothing was switched.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # raised outside a command's guard (e.g. while registering)
        if os.environ.get("TORCHENV_DEBUG"):
            raise
        typer.echo(f"torchenv: unexpected {type(exc).__name__}: {exc}.", err=True)
        sys.exit(EXIT_UNEXPECTED)
    sys.exit(0)
