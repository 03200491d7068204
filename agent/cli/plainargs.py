"""A plainly spelled command line read without typer, as click reads it, by a command's tables
of options (select_plain.py, lock_plain.py, sync_plain.py, auto_plain.py); anything else is
left to the typer command."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def parse(
    argv: list[str],
    *,
    valued: Mapping[str, str],
    repeated: Mapping[str, str],
    flags: Mapping[str, str],
    paths: frozenset[str] = frozenset(),
) -> dict[str, Any] | None:
    """The parameters ARGV sets, by the tables (option name -> parameter), where each option
    is one of them spelled in full (`--os linux`, `--os=linux`, `--json`; a short name only
    as `-r FILE`), as the typer command passes them: a parameter of `paths` as a Path, one not
    given None (False for a flag), the positional arguments as `requirements`. None for
    anything else (help, -q, -v, an unknown option, `--`, a flag given a value, a value
    missing, `-rFILE`, `-r=FILE`): typer parses it."""
    given: dict[str, Any] = {
        **dict.fromkeys(valued.values()),
        **dict.fromkeys(flags.values(), False),
    }
    lists: dict[str, list[Any]] = {name: [] for name in repeated.values()}
    positional: list[str] = []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg[:1] != "-":
            positional.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name in flags and not eq:
            given[flags[name]] = True
            continue
        if (name not in valued and name not in repeated) or not (eq or rest):
            return None
        if eq and name[:2] != "--":
            return None  # click reads `-r=FILE` as the file `=FILE`: left to it
        value = value if eq else rest.pop(0)  # whatever it is, as click takes it
        key = valued[name] if name in valued else repeated[name]
        typed = Path(value) if key in paths else value
        if name in repeated:
            lists[key].append(typed)
        else:
            given[key] = typed  # given twice: the last one
    return {**given, **{k: v or None for k, v in lists.items()},
            "requirements": positional or None}  # fmt: skip


def run(work: Callable[[], int | None], as_json: bool) -> int:
    """Run a command's work, saying any error as the typer command says it; the exit code
    (the work's, 0 where it gives none)."""
    from torchenv.agent.cli import outcome

    try:
        try:
            return work() or 0
        except BrokenPipeError:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            return outcome.failure(exc, as_json)
    except BrokenPipeError:  # the reader went away: 1, quietly, as the typer path ends
        outcome.quiet_broken_pipe()


def run_command(module: str, function: str, options: dict[str, Any]) -> int:
    """Run FUNCTION of the cli module MODULE (select_run, lock_run, env_run: imported only now)
    with `options`, saying any error as the typer command says it; the exit code."""

    def work() -> int | None:
        from importlib import import_module

        command: Callable[..., int | None] = getattr(
            import_module(f"torchenv.agent.cli.{module}"), function
        )
        return command(**options)

    return run(work, options["as_json"])
