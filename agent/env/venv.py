"""The managed prefix: a symlink to a versioned environment, switched atomically, with rollback.

Layout for a prefix `P` (e.g. `./.venv`)::

    P                      -> symlink to P.torchenv/envs/<id>   (what users activate)
    P.torchenv/envs/<id>/  one virtual environment, created in place (venvs do not move)
    P.torchenv/lock        the fcntl lock that keeps two torchenv processes apart
    P.torchenv/state.json  the previous environment and the last verified state

A new environment is built under `envs/` beside the active one and switched in by
`os.replace` of a new symlink over `P`: one rename, so `P` is always the old or the new
environment. The previous one is kept for `torchenv rollback`; older ones and unfinished
builds are removed when the next sync starts (under the lock). Ids are small numbers used
again once free (new_env_id says why). A plain directory the user
made at `P` is never deleted: torchenv refuses it, or with --force moves it to
`P.torchenv/adopted-<time>` (its files kept; it will not run from there, venvs do not move).
"""

from __future__ import annotations

import enum
import json
import os
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchenv.agent.base.errors import EnvironmentBuildError, os_error
from torchenv.agent.base.faults import fault_point
from torchenv.agent.base.fsutil import NAME_MAX, PATH_MAX, remove_stale_tmp, write_atomic

STATE_SCHEMA = 1


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
    """The paths of a managed prefix `P`: `P.torchenv/` with its envs, lock and state file."""

    prefix: Path

    @classmethod
    def for_prefix(cls, prefix: str | os.PathLike[str]) -> Layout:
        """The layout of a prefix torchenv may own; EnvironmentBuildError for one it may not."""
        layout = cls(Path(os.path.abspath(prefix)))
        check_place(layout)
        return layout

    @property
    def home(self) -> Path:
        return self.prefix.with_name(self.prefix.name + HOME_SUFFIX)

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


HOME_SUFFIX = ".torchenv"
ENV_TREE_ROOM = 160  # bytes an environment's own paths add below the prefix's home


def _place_error(prefix: Path, why: str, hint: str) -> EnvironmentBuildError:
    return EnvironmentBuildError(
        f"the prefix {str(prefix)[:200]} {why}", hint=hint, details={"prefix": str(prefix)}
    )


def _is_home(directory: Path) -> bool:
    """A directory torchenv made beside a prefix (it holds envs/)."""
    return directory.name.endswith(HOME_SUFFIX) and (directory / "envs").is_dir()


def check_place(layout: Layout) -> None:
    """Refuse prefixes torchenv cannot own: the root, names the file system cannot hold, and
    any prefix inside torchenv's own directories (or holding one), where a later sync would
    delete what the first one made."""
    prefix = layout.prefix
    name = os.fsencode(prefix.name)
    if not name:
        raise _place_error(prefix, "is the root directory", "give a directory such as ./.venv")
    if len(name) + len(HOME_SUFFIX) > NAME_MAX:
        raise _place_error(
            prefix,
            f"has a last component of {len(name)} bytes; with {HOME_SUFFIX} beside it, the "
            f"file system holds at most {NAME_MAX - len(HOME_SUFFIX)}",
            "choose a shorter --prefix",
        )
    too_long = next((p for p in prefix.parts if len(os.fsencode(p)) > NAME_MAX), None)
    if too_long is not None or len(os.fsencode(str(prefix))) + ENV_TREE_ROOM > PATH_MAX:
        raise _place_error(
            prefix,
            "is longer than the file system allows for an environment "
            f"(components up to {NAME_MAX} bytes, {PATH_MAX - ENV_TREE_ROOM} in all)",
            "choose a shorter --prefix",
        )
    real = Path(os.path.realpath(prefix.parent)) / prefix.name
    for directory in (real, *real.parents):
        if _is_home(directory):
            raise _place_error(
                prefix,
                f"is inside {directory}, torchenv's own directory for another prefix",
                "choose a prefix outside it; the environments there are managed through "
                f"{directory.with_name(directory.name[: -len(HOME_SUFFIX)])}",
            )


def _holds_home(prefix: Path) -> Path | None:
    try:
        with os.scandir(prefix) as entries:
            for entry in entries:
                if entry.name.endswith(HOME_SUFFIX) and _is_home(Path(entry.path)):
                    return Path(entry.path)
    except OSError:
        return None
    return None


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
    try:
        kind = inspect_prefix(layout)
    except OSError as exc:
        raise os_error("inspect", layout.prefix, exc) from exc
    where = str(layout.prefix)
    if kind in (PrefixKind.PLAIN_VENV, PrefixKind.OTHER_DIR):
        held = _holds_home(layout.prefix)
        if held is not None:
            raise _place_error(
                layout.prefix,
                f"holds {held}, torchenv's own directory for another prefix",
                "choose a prefix that does not contain a managed environment",
            )
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
    """Make the prefix's home and its envs directory."""
    try:
        fault_point("home")
        layout.envs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error("create", layout.envs, exc) from exc


def remove_unused_home(layout: Layout) -> None:
    """Remove a home holding only its lock file and an empty envs directory (what a first
    command that failed made), for a caller that holds the lock: a process waiting for it
    opens the lock file anew (prefixlock.hold). Anything else there, and it stays."""
    try:
        if set(os.listdir(layout.home)) - {layout.envs.name, layout.lock_file.name}:
            return
        if layout.envs.exists():  # absent where making it failed
            layout.envs.rmdir()  # OSError where it is not empty: kept
        layout.lock_file.unlink(missing_ok=True)
        layout.home.rmdir()
    except OSError:
        return


def new_env_id(layout: Layout) -> str:
    """The name of a new environment under envs/: the first of 1, 2, 3, ... with no
    directory there that no record names (the active one, the previous one, a switch's
    intent: their directories may be gone); call it holding the prefix lock.

    A name is used again once its environment is removed, so a sync builds where one of the
    last three was: uv keeps what it learnt of an interpreter under the interpreter's path
    and the path that resolves to (checked against that one's change time), and its install
    into an environment at a path it has seen does not run the interpreter again (70-100 ms
    here). Which environment is newer is read from its lock copy, not from its name."""
    taken = _names_in_use(layout)
    number = 1
    while str(number) in taken or os.path.lexists(layout.env_dir(str(number))):
        number += 1
    return str(number)


def _names_in_use(layout: Layout) -> set[str]:
    names = [active_env(layout), read_state(layout).get("previous")]
    # read_state has resolved an intent into these two already; a leftover intent's names
    # are passed over too (a name skipped costs one uncached interpreter, nothing more)
    switching = (_state_file(layout) or {}).get("switching")
    if isinstance(switching, dict):
        names += [switching.get("from"), switching.get("to")]
    return {name for name in names if isinstance(name, str)}


# ---------------------------------------------------------------- state


LOCK_COPY = "pylock.toml"  # the lock an environment was built from, inside it (PEP 751's name)
LEGACY_LOCK_COPY = "torchenv-pylock.toml"  # its name before; environments built then keep it


def lock_copy(env: Path) -> Path:
    """The lock `env` was built from: pylock.toml, or the older name in an older environment."""
    legacy = env / LEGACY_LOCK_COPY
    return legacy if legacy.is_file() and not (env / LOCK_COPY).is_file() else env / LOCK_COPY


def _state_file(layout: Layout) -> dict[str, Any] | None:
    """What state.json holds, or None when it is missing or unreadable."""
    try:
        data = json.loads(layout.state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("schema") != STATE_SCHEMA:
        return None
    return data


def read_state(layout: Layout) -> dict[str, Any]:
    """The state as the disk shows it now; recoverable after a crash at any step.

    The prefix's symlink is the truth for which environment is active. A switch writes its
    intent (`switching`: from, to, the new verified state) before it renames the symlink, so
    a switch cut short is resolved here by where the symlink points. Without a readable
    state file, the previous environment is the newest complete one besides the active.
    """
    data = _state_file(layout)
    active = active_env(layout)
    if data is None:
        return {"previous": _newest_complete(layout, besides=active)}
    switching = data.pop("switching", None)
    if isinstance(switching, dict) and active is not None and active == switching.get("to"):
        data["previous"] = switching.get("from")  # switched; the write after it was cut short
        data["verified"] = switching.get("verified")
    return data


def _newest_complete(layout: Layout, *, besides: str | None) -> str | None:
    """The complete environment besides `besides` whose lock copy was written last (the
    copy is written once its install is done; names are reused, so they tell no age)."""
    try:
        names = os.listdir(layout.envs)
    except OSError:
        return None
    built: list[tuple[int, int, str]] = []
    for name in names:
        env = layout.env_dir(name)
        if name == besides or not python_in(env).exists():
            continue
        try:
            copy = lock_copy(env).stat()
        except OSError:
            continue  # no lock copy: an unfinished build
        if stat.S_ISREG(copy.st_mode):  # equal times (coarse clocks): a fixed choice
            number = int(name) if name.isascii() and name.isdigit() else -1
            built.append((copy.st_mtime_ns, number, name))
    return max(built)[2] if built else None


def write_state(layout: Layout, state: dict[str, Any]) -> None:
    data = json.dumps({**state, "schema": STATE_SCHEMA}, indent=1).encode("utf-8")
    try:
        write_atomic(layout.state_file, data, fsync=True, make_parents=False)
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
    remove_debris(layout)
    return removed


def remove_debris(layout: Layout) -> None:
    """Temporary files of interrupted switches and writes (call holding the prefix lock)."""
    for entry in layout.home.glob(".link-*"):
        entry.unlink(missing_ok=True)
    for entry in layout.home.glob(f".{layout.state_file.name}.*.tmp"):
        entry.unlink(missing_ok=True)  # only the lock's holder writes the state: all stale
    remove_stale_tmp(layout.home, "pylock.toml")


def discard(env_dir: Path) -> None:
    shutil.rmtree(env_dir, ignore_errors=True)


# ---------------------------------------------------------------- switching


# ---------------------------------------------------------------- creating
