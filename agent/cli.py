"""The `torchenv` command line: typer commands that parse arguments and call the core."""

from __future__ import annotations

import sys

import typer

from torchenv.agent import __version__

app = typer.Typer(
    name="torchenv",
    help="Install the PyTorch build that fits this machine, prove it runs, keep it right.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"torchenv {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Install the PyTorch build that fits this machine, prove it runs, keep it right."""


def _register() -> None:
    from torchenv.agent import cmd_probe

    cmd_probe.register(app)
    for name in ("cmd_select", "cmd_lock", "cmd_env", "cmd_daemon"):
        try:
            module = __import__(f"torchenv.agent.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"torchenv.agent.{name}":
                raise
            continue
        module.register(app)


_register()


def main() -> None:
    app(prog_name="torchenv")
    sys.exit(0)
