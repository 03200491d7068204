"""What a command prints and how it ends, without typer (the plain `select` has no typer loaded).

`echo` writes text as click.echo does on Linux; `failure` says what a command body raised as
every command says it and gives the exit code (guard.py turns that into typer's exit).
"""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from torchenv.agent.base.errors import TorchenvError

ANSI = r"\033\[[;?0-9]*[a-zA-Z]"  # click's strip_ansi
# -v minus -q of the command running now (one command per process), as its way in read them
# (guard.with_verbosity): how much make_reporter shows, and -vv's tracebacks.
verbosity = 0


def echo(text: str, *, err: bool = False) -> None:
    """`text` and a newline on stdout (stderr with `err`), as click.echo writes it: nothing
    where there is no stream; UTF-8 bytes (unencodable characters replaced) to the buffer of a
    stream whose encoding is ASCII or unset; ANSI codes stripped where the stream is no
    terminal; flushed."""
    stream: IO[Any] | None = sys.stderr if err else sys.stdout
    if stream is None:
        return
    line = text + "\n"
    if "\x1b" in line and not _isatty(stream):
        import re

        line = re.sub(ANSI, "", line)
    buffer = getattr(stream, "buffer", None) if _misconfigured(stream) else None
    if buffer is not None:
        stream.flush()
        buffer.write(line.encode("utf-8", "replace"))
        buffer.flush()
        return
    stream.write(line)
    stream.flush()


def _misconfigured(stream: IO[Any]) -> bool:
    """click's test for a text stream to write around: no encoding or errors, or ASCII."""
    encoding = getattr(stream, "encoding", None)
    if encoding is None or getattr(stream, "errors", None) is None:
        return True
    import codecs

    try:
        return codecs.lookup(encoding).name == "ascii"
    except LookupError:
        return False


def _isatty(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except Exception:  # a stream without a file behind it, as click reads it
        return False


def json_text(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=False) + "\n"


def emit_json(value: Any) -> None:
    sys.stdout.write(json_text(value))
    sys.stdout.flush()


def said(error: TorchenvError, as_json: bool) -> int:
    """`error` as JSON on stdout or one paragraph on stderr; its exit code."""
    if as_json:
        emit_json(error.to_json())
    else:
        echo(f"torchenv: {error.paragraph()}", err=True)
    return error.exit_code


def failure(exc: BaseException, as_json: bool) -> int:
    """What a command body raised, said as every command says it (called while handling it);
    the exit code to end with. TORCHENV_DEBUG set: an unexpected error is raised again."""
    from torchenv.agent.base.errors import EXIT_INTERRUPTED, TorchenvError, UnexpectedError

    if isinstance(exc, TorchenvError):
        return said(exc, as_json)
    if isinstance(exc, KeyboardInterrupt):
        echo("torchenv: interrupted; nothing was switched.", err=True)
        return EXIT_INTERRUPTED
    if os.environ.get("TORCHENV_DEBUG"):
        raise exc
    if verbosity >= 2:  # this module's
        import traceback

        traceback.print_exc()
    error = UnexpectedError(
        f"unexpected {type(exc).__name__}: {exc}",
        hint="run again with TORCHENV_DEBUG=1 for the traceback and report it "
        "with the output of `torchenv probe --record DIR`",
    )
    return said(error, as_json)


def quiet_broken_pipe() -> NoReturn:
    """The reader went away (`torchenv catalog show | head -1`): stop quietly, as CLIs do.

    stdout is pointed at /dev/null so that the interpreter's final flush does not fail again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)
