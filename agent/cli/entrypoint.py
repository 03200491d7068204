"""`torchenv entrypoint`: make the environment right for this host, then become the command."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torchenv.agent.base.errors import (
    EXIT_INTERRUPTED,
    EXIT_UNEXPECTED,
    EXIT_UNSATISFIABLE,
    EXIT_USAGE,
    ConfigError,
    TorchenvError,
)

# The provision's exit codes the entrypoint passes on as they are; any other is unexpected.
PASSED_ON = (EXIT_UNSATISFIABLE, EXIT_USAGE, EXIT_INTERRUPTED)


class EntrypointError(TorchenvError):
    kind = "entrypoint"


def activated_env(prefix: Path, base: Mapping[str, str]) -> dict[str, str]:
    """What `source PREFIX/bin/activate` would set: VIRTUAL_ENV, PATH first, no PYTHONHOME."""
    env = {k: v for k, v in base.items() if k != "PYTHONHOME"}
    bindir = prefix / ("Scripts" if os.name == "nt" else "bin")
    env["VIRTUAL_ENV"] = str(prefix)
    env["PATH"] = os.pathsep.join([str(bindir), *filter(None, [base.get("PATH", "")])])
    return env


def ensure(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Run the provision (its progress goes to our stderr). Raises EntrypointError."""
    try:
        result = subprocess.run(
            list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=False
        )
    except OSError as exc:
        raise EntrypointError(
            f"cannot run {argv[0]}: {exc.strerror or exc}",
            hint="is torchenv installed in this image?",
        ) from exc
    if result.returncode == 0:
        return
    from torchenv.agent.daemon.provision import parse_summary

    summary = parse_summary(result.stdout) or {}
    error = EntrypointError(
        str(
            summary.get("message")
            or f"provisioning the environment failed (exit {result.returncode})"
        ),
        hint=str(
            summary.get("hint") or "run `torchenv auto --prefix DIR` in the container to see why"
        ),
        details={"provision": summary} if summary else None,
        exit_code=result.returncode if result.returncode in PASSED_ON else EXIT_UNEXPECTED,
    )
    raise error


def exec_command(command: Sequence[str], env: Mapping[str, str]) -> None:
    """Replace this process with `command` (signals and the exit code are then its own)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], list(command), dict(env))
    except OSError as exc:
        error = EntrypointError(
            f"cannot run {command[0]}: {exc.strerror or exc}",
            hint="check the command after `--` and the image's PATH",
        )
        error.exit_code = 127 if isinstance(exc, FileNotFoundError) else 126
        raise error from exc


def provision_then_exec(  # noqa: PLR0917 - the command's options, in order
    prefix: str | None,
    requirement_files: list[Path],
    auto_args: str | None,
    provisioner: str | None,
    command: list[str],
    lock_source: str | None = None,
    indexes: dict[str, str | None] | None = None,
) -> None:
    from torchenv.agent.base.settings import load_settings
    from torchenv.agent.daemon.provision import provision_argv

    if not command or not command[0].strip():
        raise ConfigError(
            "no command to run" if not command else "the command after `--` is an empty string",
            hint="write it after `--`: torchenv entrypoint -- python train.py",
        )
    target = Path(load_settings({"prefix": prefix}).get_value("prefix")).absolute()
    runner = shlex.split(provisioner) if provisioner else []
    extra = shlex.split(auto_args) if auto_args else []
    if lock_source is not None:
        extra += ["--lock-source", lock_source]
    for option, url in (indexes or {}).items():
        extra += [option, url] if url is not None else []
    from torchenv.agent.cli.reqfiles import read_requirements_file

    for path in requirement_files:
        read_requirements_file(path)  # a missing file, or a requirement given instead, fails here
        extra += ["-r", str(path.absolute())]
    ensure(provision_argv(runner, target, [], extra), os.environ)
    exec_command(command, activated_env(target, os.environ))


# The options `entrypoint` takes with a value, by the parameter of `provision_then_exec`.
VALUED = {"--prefix": "prefix", "--lock-source": "lock_source", "--auto-args": "auto_args",
          "--provisioner": "provisioner"}  # fmt: skip
INDEXES = ("--index-url", "--torch-index-url")
REQUIREMENT = ("-r", "--requirement")


def plain_options(argv: Sequence[str]) -> tuple[bool, dict[str, Any]] | None:
    """--json and `provision_then_exec`'s arguments from `entrypoint ARGV` where each option is
    spelled plainly (`--prefix DIR`, `--prefix=DIR`, `-r FILE`, `--json`) and the command
    follows `--` or starts at the first word without a dash, as the typer command reads them;
    None for anything else (help, -q, -v, an unknown option, no command): typer parses it."""
    as_json = False
    indexes: dict[str, str | None] = dict.fromkeys(INDEXES)
    given: dict[str, Any] = {**dict.fromkeys(VALUED.values()), "requirement_files": [],
                             "indexes": indexes}  # fmt: skip
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--" or not arg.startswith("-"):
            command = rest if arg == "--" else [arg, *rest]
            return (as_json, {**given, "command": command}) if command else None
        if arg == "--json":
            as_json = True
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in (*VALUED, *INDEXES, *REQUIREMENT) or not (eq or rest):
            return None
        value = value if eq else rest.pop(0)
        if name in REQUIREMENT:
            given["requirement_files"].append(Path(value))
        elif name in INDEXES:
            indexes[name] = value
        else:
            given[VALUED[name]] = value  # given twice: the last one, as click takes it
    return None


def run_plain(argv: Sequence[str]) -> None:
    """`torchenv entrypoint ARGV` without the typer CLI, where `plain_options` reads ARGV:
    ends by becoming the command or by exiting as the typer command would; else returns."""
    parsed = plain_options(argv)
    if parsed is None:
        return
    as_json, arguments = parsed
    from torchenv.agent.cli import plainargs

    # an error is said as the typer command says it (without loading typer), then exits
    sys.exit(plainargs.run(lambda: provision_then_exec(**arguments), as_json))
