"""What every command shares: turning errors into one paragraph and an exit code, JSON output."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer

from torchenv.agent.base.errors import TorchenvError, UnexpectedError

T = TypeVar("T")

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def json_text(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False) + "\n"


def emit_json(value: Any) -> None:
    sys.stdout.write(json_text(value))
    sys.stdout.flush()


def fail(error: TorchenvError, as_json: bool) -> NoReturn:
    if as_json:
        emit_json(error.to_json())
    else:
        typer.echo(f"torchenv: {error.paragraph()}", err=True)
    raise typer.Exit(error.exit_code)


def guarded(as_json: bool, body: Callable[[], T]) -> T:
    """Run a command body; expected errors exit 1 with a paragraph, others exit 2."""
    try:
        return body()
    except TorchenvError as exc:
        fail(exc, as_json)
    except KeyboardInterrupt:
        typer.echo("torchenv: interrupted; nothing was switched.", err=True)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort, BrokenPipeError):
        raise  # a closed stdout is the reader's choice: cli.main ends quietly
    except Exception as exc:
        if os.environ.get("TORCHENV_DEBUG"):
            raise
        error = UnexpectedError(
            f"unexpected {type(exc).__name__}: {exc}",
            hint="run again with TORCHENV_DEBUG=1 for the traceback and report it "
            "with the output of `torchenv probe --record DIR`",
        )
        fail(error, as_json)
