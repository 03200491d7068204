"""typer's side of what every command shares: -q/-v, and the guard that ends a command body with
the message and exit code outcome.py gives."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer

from torchenv.agent.cli import outcome

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


def with_verbosity(command: Callable[..., T]) -> Callable[..., T]:
    """The typer command with -q/--quiet and -v/--verbose added; they set
    `outcome.verbosity`."""
    signature = inspect.signature(command, eval_str=True)
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=int)
        for name, option in (("quiet", QUIET_OPTION), ("verbose", VERBOSE_OPTION))
    ]

    @functools.wraps(command)
    def run(*args: Any, quiet: int = 0, verbose: int = 0, **kwargs: Any) -> T:
        outcome.verbosity = verbose - quiet
        return command(*args, **kwargs)

    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *extra]
    )
    run.__annotations__ = {**command.__annotations__, "quiet": int, "verbose": int}
    return run


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
    raise typer.Exit(outcome.failure(exc, as_json)) from None
