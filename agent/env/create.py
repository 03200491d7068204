"""Creating an environment: finding uv and the interpreter, then `uv venv` or `python -m venv`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from torchenv.agent.base.errors import EnvironmentBuildError
from torchenv.agent.base.uvbin import find_uv


def interpreter_version(python: str) -> str | None:
    """ "3.11" for an interpreter path, or None when it does not run."""
    import subprocess

    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def find_interpreter(minor: str | None) -> str:
    """An interpreter of the lock's Python X.Y: this one, pythonX.Y on PATH, or uv's."""
    import subprocess

    if minor is None or f"{sys.version_info[0]}.{sys.version_info[1]}" == minor:
        return sys.executable
    candidates = [shutil.which(f"python{minor}")]
    uv = find_uv()
    if uv:
        found = subprocess.run(
            [uv, "python", "find", "--no-python-downloads", minor],
            capture_output=True,
            text=True,
            check=False,
        )
        candidates.append(found.stdout.strip() if found.returncode == 0 else None)
    for candidate in candidates:
        if candidate and interpreter_version(candidate) == minor:
            return candidate
    raise EnvironmentBuildError(
        f"no Python {minor} interpreter here; the lock was made for Python {minor}",
        hint=f"install Python {minor} (e.g. `uv python install {minor}`), or lock for this "
        f"interpreter with `--python {sys.version_info[0]}.{sys.version_info[1]}`",
        details={"python": minor},
    )


def create_venv(env_dir: Path, python: str, uv: str | None) -> list[str]:
    """The command that creates an empty environment in place (no pip: the installer is outside)."""
    if uv:
        return [
            uv,
            "venv",
            "--quiet",
            "--no-project",
            "--no-config",
            "--python",
            python,
            str(env_dir),
        ]
    return [python, "-m", "venv", "--without-pip", str(env_dir)]
