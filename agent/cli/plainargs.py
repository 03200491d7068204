"""A plainly spelled command line read without typer, as click reads it, by a command's tables
of options (select_plain.py, lock_plain.py, sync_plain.py, auto_plain.py); anything else is
left to the typer command."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# -q/--quiet and -v/--verbose, which every command counts (guard.with_verbosity): what each
# one adds to the verbosity; short ones together too (`-qq`, `-vv`, `-qv`), as click reads them
COUNTED = {"-q": -1, "--quiet": -1, "-v": 1, "--verbose": 1}


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
    given None (False for a flag), the positional arguments as `requirements`, and -v less -q
    (COUNTED) as `verbosity`. None for anything else (help, an unknown option, `--`, a flag
    given a value, a value missing, `-rFILE`, `-r=FILE`, `-qr FILE`): typer parses it."""
    given: dict[str, Any] = {
        **dict.fromkeys(valued.values()),
        **dict.fromkeys(flags.values(), False),
        "verbosity": 0,
    }
    lists: dict[str, list[Any]] = {name: [] for name in repeated.values()}
    positional: list[str] = []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg[:1] != "-":
            positional.append(arg)
            continue
        counted = _counted(arg)
        if counted is not None:
            given["verbosity"] += counted
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


def _counted(arg: str) -> int | None:
    """What ARG adds to the verbosity where it is -q, -v or both (`-qqv`); None otherwise."""
    if arg in COUNTED:
        return COUNTED[arg]
    if len(arg) > 2 and arg[1] != "-" and all(f"-{c}" in COUNTED for c in arg[1:]):
        return sum(COUNTED[f"-{c}"] for c in arg[1:])
    return None


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
    with `options` (parse's: their `verbosity` becomes outcome's, as typer's way sets it),
    saying any error as the typer command says it; the exit code."""
    from torchenv.agent.cli import outcome

    arguments = dict(options)
    outcome.verbosity = arguments.pop("verbosity", 0)

    def work() -> int | None:
        from importlib import import_module

        command: Callable[..., int | None] = getattr(
            import_module(f"torchenv.agent.cli.{module}"), function
        )
        return command(**arguments)

    return run(work, arguments["as_json"])
