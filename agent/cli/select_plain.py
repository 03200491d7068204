"""A plainly spelled `torchenv select` without typer: its argv read as click reads it, or left
to the typer command (tests/agent/cli/test_select_plain.py derives the options from it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# select's options by the parameter of `select_run.run` each sets (-q, -v, -h and --help are
# left to typer).
VALUED = {"--replay": "replay", "--host-report": "host_report", "--os": "os_name",
          "--arch": "arch", "--python": "python", "--python-version": "python_version",
          "--python-platform": "python_platform", "--driver": "driver", "--macos": "macos",
          "--channel": "channel", "--backend": "backend", "--torch-backend": "backend",
          "--index-url": "index_url", "--torch-index-url": "torch_index_url"}  # fmt: skip
REPEATED = {"--gpu": "gpu", "--rocm-gfx": "rocm_gfx"}
FLAGS = {"--json": "as_json", "--explain": "explain", "--xpu": "xpu", "--offline": "offline",
         "--refresh": "refresh"}  # fmt: skip
PATHS = frozenset({"replay", "host_report"})


def plain_options(argv: list[str]) -> dict[str, Any] | None:
    """`select_run.run`'s arguments from `select ARGV` where each option is one of select's
    own, spelled in full (`--os linux`, `--os=linux`, `--json`), as the typer command passes
    them; None for anything else (help, -q, -v, an unknown option, `--`, a flag given a value,
    a value missing): typer parses it."""
    given: dict[str, Any] = {
        **dict.fromkeys(VALUED.values()),
        **dict.fromkeys(FLAGS.values(), False),
    }
    repeated: dict[str, list[str]] = {name: [] for name in REPEATED.values()}
    requirements: list[str] = []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg[:1] != "-":
            requirements.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name in FLAGS and not eq:
            given[FLAGS[name]] = True
            continue
        if (name not in VALUED and name not in REPEATED) or not (eq or rest):
            return None
        value = value if eq else rest.pop(0)  # whatever it is, as click takes it
        if name in REPEATED:
            repeated[REPEATED[name]].append(value)
        else:
            key = VALUED[name]
            given[key] = Path(value) if key in PATHS else value  # given twice: the last one
    return {**given, **{k: v or None for k, v in repeated.items()},
            "requirements": requirements or None}  # fmt: skip


def run(options: dict[str, Any]) -> int:
    """Run select with `options` (plain_options'), saying any error as the typer command says
    it; the exit code."""
    from torchenv.agent.cli import outcome

    try:
        try:
            from torchenv.agent.cli import select_run

            select_run.run(**options)
        except BrokenPipeError:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            return outcome.failure(exc, options["as_json"])
    except BrokenPipeError:  # the reader went away: 1, quietly, as the typer path ends
        outcome.quiet_broken_pipe()
    return 0
