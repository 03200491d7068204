"""What every command shares: errors as one paragraph and an exit code, JSON, -q/-v."""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer

from torchenv.agent.base.errors import EXIT_INTERRUPTED, TorchenvError, UnexpectedError

T = TypeVar("T")

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
QUIET_OPTION = typer.Option(
    0, "-q", "--quiet", count=True, help="Print less: no progress, no stage lines (repeatable)."
)
VERBOSE_OPTION = typer.Option(
    0,
    "-v",
    "--verbose",
    count=True,
    help="Print more: stage lines even without a terminal; -vv also tracebacks.",
)
verbosity = 0  # -v minus -q of the command running now (one command per process)


def with_verbosity(command: Callable[..., T]) -> Callable[..., T]:
    """The typer command with -q/--quiet and -v/--verbose added; they set `verbosity`."""
    signature = inspect.signature(command, eval_str=True)
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=int)
        for name, option in (("quiet", QUIET_OPTION), ("verbose", VERBOSE_OPTION))
    ]

    @functools.wraps(command)
    def run(*args: Any, quiet: int = 0, verbose: int = 0, **kwargs: Any) -> T:
        global verbosity
        verbosity = verbose - quiet
        return command(*args, **kwargs)

    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *extra]
    )
    run.__annotations__ = {**command.__annotations__, "quiet": int, "verbose": int}
    return run


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
    """Run a command body; expected errors exit 1 with a paragraph, others exit 3 (errors.py)."""
    try:
        return body()
    except (typer.Exit, typer.Abort, BrokenPipeError):
        raise  # a closed stdout is the reader's choice: cli.main ends quietly
    except (Exception, KeyboardInterrupt) as exc:
        fail_for(exc, as_json)


def fail_for(exc: BaseException, as_json: bool) -> NoReturn:
    """What a command body raised, said as every command says it; called while handling it."""
    if isinstance(exc, TorchenvError):
        fail(exc, as_json)
    if isinstance(exc, KeyboardInterrupt):
        typer.echo("torchenv: interrupted; nothing was switched.", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if os.environ.get("TORCHENV_DEBUG"):
        raise exc
    if verbosity >= 2:
        import traceback

        traceback.print_exc()
    error = UnexpectedError(
        f"unexpected {type(exc).__name__}: {exc}",
        hint="run again with TORCHENV_DEBUG=1 for the traceback and report it "
        "with the output of `torchenv probe --record DIR`",
    )
    fail(error, as_json)


def quiet_broken_pipe() -> NoReturn:
    """The reader went away (`torchenv catalog show | head -1`): stop quietly, as CLIs do.

    stdout is pointed at /dev/null so that the interpreter's final flush does not fail again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)
