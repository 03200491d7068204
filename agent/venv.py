"""The managed prefix: a symlink to a versioned environment, switched atomically, with rollback.

Layout for a prefix `P` (e.g. `./.venv`)::

    P                      -> symlink to P.torchenv/envs/<id>   (what users activate)
    P.torchenv/envs/<id>/  one virtual environment, created in place (venvs do not move)
    P.torchenv/lock        the fcntl lock that keeps two torchenv processes apart
    P.torchenv/state.json  the previous environment and the last verified state

A new environment is built under `envs/` beside the active one and switched in by
`os.replace` of a new symlink over `P`: one rename, so `P` is always the old or the new
environment. The previous one is kept for `torchenv rollback`; older ones and unfinished
builds are removed when the next sync starts (under the lock). A plain directory the user
made at `P` is never deleted: torchenv refuses it, or with --force moves it to
`P.torchenv/adopted-<time>` (its files kept; it will not run from there, venvs do not move).
"""

from __future__ import annotations

import enum
import errno
import json
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchenv.agent.errors import EnvironmentBuildError
from torchenv.agent.faults import fault_point
from torchenv.agent.fsutil import write_atomic

STATE_SCHEMA = 1


def os_error(action: str, path: Path | str, exc: OSError) -> EnvironmentBuildError:
    """An OSError as an EnvironmentBuildError whose hint fits the errno."""
    hints = {
        errno.ENOSPC: "free disk space (the old environment is untouched) and run again",
        errno.EDQUOT: "free disk space within your quota and run again",
        errno.EACCES: "choose a prefix you may write (--prefix DIR) or fix the permissions",
        errno.EPERM: "choose a prefix you may write (--prefix DIR) or fix the permissions",
        errno.EROFS: "the file system is read-only; choose another --prefix",
    }
    return EnvironmentBuildError(
        f"cannot {action} {path}: {exc.strerror or exc}",
        hint=hints.get(exc.errno or 0, "check the path and run again"),
        details={"path": str(path), "errno": exc.errno},
    )


class PrefixKind(str, enum.Enum):
    MISSING = "missing"
    MANAGED = "managed"  # a symlink into our envs/
    FOREIGN_LINK = "foreign-link"  # a symlink somewhere else
    PLAIN_VENV = "plain-venv"  # a directory with pyvenv.cfg that torchenv did not make
    EMPTY_DIR = "empty-dir"
    OTHER_DIR = "other-dir"
    FILE = "file"


@dataclass(frozen=True)
class Layout:
    prefix: Path

    @classmethod
    def for_prefix(cls, prefix: str | os.PathLike[str]) -> Layout:
        return cls(Path(os.path.abspath(prefix)))

    @property
    def home(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".torchenv")

    @property
    def envs(self) -> Path:
        return self.home / "envs"

    @property
    def lock_file(self) -> Path:
        return self.home / "lock"

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    def env_dir(self, env_id: str) -> Path:
        return self.envs / env_id


def python_in(env_dir: Path) -> Path:
    if sys.platform == "win32":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def inspect_prefix(layout: Layout) -> PrefixKind:
    prefix = layout.prefix
    if prefix.is_symlink():
        target = Path(os.path.abspath(prefix.parent / os.readlink(prefix)))
        return PrefixKind.MANAGED if target.parent == layout.envs else PrefixKind.FOREIGN_LINK
    if not prefix.exists():
        return PrefixKind.MISSING
    if not prefix.is_dir():
        return PrefixKind.FILE
    if (prefix / "pyvenv.cfg").is_file():
        return PrefixKind.PLAIN_VENV
    return PrefixKind.OTHER_DIR if any(prefix.iterdir()) else PrefixKind.EMPTY_DIR


def active_env(layout: Layout) -> str | None:
    """The id of the environment the prefix points at, when torchenv manages it."""
    if inspect_prefix(layout) is not PrefixKind.MANAGED:
        return None
    return Path(os.readlink(layout.prefix)).name


def check_prefix(layout: Layout, *, force: bool) -> PrefixKind:
    """Refuse prefixes torchenv must not replace; returns what is there."""
    kind = inspect_prefix(layout)
    where = str(layout.prefix)
    if kind is PrefixKind.FILE:
        raise EnvironmentBuildError(
            f"the prefix {where} is a file, not an environment",
            hint="remove or rename it, or pass another --prefix",
            details={"prefix": where, "kind": kind.value},
        )
    if kind is PrefixKind.OTHER_DIR:
        raise EnvironmentBuildError(
            f"the prefix {where} is a non-empty directory that is not a virtual environment",
            hint="pass another --prefix; torchenv does not replace directories it did not make",
            details={"prefix": where, "kind": kind.value},
        )
    if kind in (PrefixKind.PLAIN_VENV, PrefixKind.FOREIGN_LINK) and not force:
        raise EnvironmentBuildError(
            f"the prefix {where} is an environment torchenv did not make",
            hint=f"pass --force to keep it aside in {layout.home}/adopted-<time> and replace "
            "it, or pass another --prefix",
            details={"prefix": where, "kind": kind.value},
        )
    return kind


def ensure_home(layout: Layout) -> None:
    try:
        fault_point("home")
        layout.envs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error("create", layout.envs, exc) from exc


def new_env_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


# ---------------------------------------------------------------- state


def read_state(layout: Layout) -> dict[str, Any]:
    """The state file, or an empty state when it is missing or unreadable (it is a cache)."""
    try:
        data = json.loads(layout.state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("schema") != STATE_SCHEMA:
        return {}
    return data


def write_state(layout: Layout, state: dict[str, Any]) -> None:
    data = json.dumps({**state, "schema": STATE_SCHEMA}, indent=1).encode("utf-8")
    try:
        write_atomic(layout.state_file, data, make_parents=False)
    except OSError as exc:
        raise os_error("write", layout.state_file, exc) from exc


# ---------------------------------------------------------------- cleaning


def clean_stale(layout: Layout) -> list[str]:
    """Remove unfinished builds and environments older than the previous one (under the lock)."""
    keep = {active_env(layout), read_state(layout).get("previous")}
    removed: list[str] = []
    if not layout.envs.is_dir():
        return removed
    for entry in layout.envs.iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    for entry in layout.home.glob(".link-*"):
        entry.unlink(missing_ok=True)
    for entry in layout.home.glob(".state-*.tmp"):
        entry.unlink(missing_ok=True)
    return removed


def discard(env_dir: Path) -> None:
    shutil.rmtree(env_dir, ignore_errors=True)


# ---------------------------------------------------------------- switching


def _adopt(layout: Layout) -> Path:
    """Move a user's environment aside (never delete it)."""
    aside = layout.home / ("adopted-" + time.strftime("%Y%m%d-%H%M%S"))
    try:
        os.rename(layout.prefix, aside)
    except OSError as exc:
        raise os_error("move aside", layout.prefix, exc) from exc
    return aside


def switch(layout: Layout, env_id: str) -> Path | None:
    """Point the prefix at envs/<env_id> in one rename; returns where an adopted env went."""
    target = layout.env_dir(env_id)
    if not python_in(target).exists():
        raise EnvironmentBuildError(
            f"environment {env_id} is missing or incomplete",
            hint="run `torchenv sync` or `torchenv auto` to build a new one",
            details={"env": str(target)},
        )
    kind = inspect_prefix(layout)
    adopted: Path | None = None
    if kind in (PrefixKind.PLAIN_VENV, PrefixKind.FOREIGN_LINK):
        adopted = _adopt(layout)
    elif kind is PrefixKind.EMPTY_DIR:
        layout.prefix.rmdir()
    link = layout.home / f".link-{env_id}"
    try:
        link.unlink(missing_ok=True)
        os.symlink(os.path.relpath(target, layout.prefix.parent), link)
        fault_point("switch")
        os.replace(link, layout.prefix)
    except OSError as exc:
        link.unlink(missing_ok=True)
        raise os_error("switch", layout.prefix, exc) from exc
    return adopted


def rollback(layout: Layout) -> tuple[str, str]:
    """Swap the active and the previous environment; returns (now active, now previous)."""
    state = read_state(layout)
    previous = state.get("previous")
    current = active_env(layout)
    if not previous or current is None or not python_in(layout.env_dir(previous)).exists():
        raise EnvironmentBuildError(
            f"there is no previous environment to roll back to at {layout.prefix}",
            hint="torchenv keeps one previous environment after a successful sync",
            details={"prefix": str(layout.prefix), "previous": previous},
        )
    switch(layout, previous)
    write_state(layout, {**state, "previous": current, "verified": None})
    return previous, current


def record_switch(layout: Layout, old: str | None, new: str, verified: dict[str, Any]) -> None:
    """After a switch: the old env becomes the previous one; older ones go on the next sync."""
    state = read_state(layout)
    write_state(layout, {**state, "previous": old, "verified": {**verified, "env": new}})


# ---------------------------------------------------------------- creating


def find_uv() -> str | None:
    """The uv binary: TORCHENV_UV, then the one beside this interpreter, then PATH."""
    explicit = os.environ.get("TORCHENV_UV")
    if explicit is not None:
        return explicit or None  # TORCHENV_UV="" forces pip
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file():
        return str(beside)
    return shutil.which("uv")


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
