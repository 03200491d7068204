"""`torchenv entrypoint`: make the environment right for this host, then become the command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from torchenv.agent.base.errors import (
    EXIT_INTERRUPTED,
    EXIT_UNEXPECTED,
    EXIT_UNSATISFIABLE,
    EXIT_USAGE,
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
