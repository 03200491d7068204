"""A sync's new environment, started before the lock is checked and the host probed.

Making the environment (in a thread here, create.make_here) and then uv's query of its
interpreter (`uv python find`, which fills the cache the install reads) take tens of
milliseconds; started first, they run while this process imports and validates the lock,
probes the host and checks the target. The
environment is made under the prefix lock, after the stale builds are cleaned, where no
environment is active; a sync that refuses or fails afterwards stops it and removes it, so
what it leaves is what a sync that started it later leaves.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torchenv.agent.base.errors import EnvironmentBuildError
from torchenv.agent.base.uvbin import find_uv
from torchenv.agent.env import create, prefixlock, venv

if TYPE_CHECKING:
    from torchenv.agent.base.reporter import Reporter


@dataclass(frozen=True)
class Build:
    """A new environment being made: its id, its directory and its creation."""

    env_id: str
    env_dir: Path
    python: str
    creating: create.Creation

    def abandon(self, layout: venv.Layout) -> None:
        """Stop the creation and remove the environment, unless it is the active one."""
        self.creating.stop()
        if venv.active_env(layout) != self.env_id:
            venv.discard(self.env_dir)


def named_python(raw: bytes) -> str | None:
    """The X.Y of the lock's `[tool.torchenv] python`, "" where it names none, None where the
    bytes do not say it plainly (not TOML, not a string): the sync's own checks say why."""
    from torchenv.agent.base import toml as tomllib

    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return None
    tool = doc.get("tool")
    ours = tool.get("torchenv") if isinstance(tool, dict) else None
    value = ours.get("python") if isinstance(ours, dict) else None
    if value is None:
        return ""
    return value if isinstance(value, str) else None


def start(layout: venv.Layout, wanted: str | None, uv: str | None) -> Build | None:
    """Start the new environment from this interpreter where the lock will name no Python ("")
    or this one's X.Y (`wanted`, as named_python gives it); None otherwise (another interpreter
    is looked for after the checks, as ever). Call it holding the prefix lock, after
    `venv.clean_stale`."""
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if wanted is None or wanted not in ("", running):
        return None
    env_id = venv.new_env_id(layout)
    env_dir = layout.env_dir(env_id)
    python = create.find_interpreter(None)  # this interpreter, as for a lock that names it
    try:
        creating = create.Creation(env_dir, python, uv, warm=True).start()
    except EnvironmentBuildError:  # the command cannot run: said after the checks, as ever
        return None
    return Build(env_id, env_dir, python, creating)


@contextmanager
def held(
    prefix: Path, raw: bytes, *, force: bool, reporter: Reporter, timeout: float | None = None
) -> Iterator[tuple[venv.Layout, Build | None]]:
    """The prefix's layout, checked and locked, with the new environment `building` for the
    lock's bytes `raw`: the body checks the lock and the host and syncs."""
    layout = venv.Layout.for_prefix(prefix)
    venv.check_prefix(layout, force=force)
    with (
        holding(layout, reporter, timeout=timeout),
        building(layout, named_python(raw), reporter) as build,
    ):
        yield layout, build


@contextmanager
def holding(
    layout: venv.Layout, reporter: Reporter, *, timeout: float | None = None
) -> Iterator[None]:
    """The prefix lock held (prefixlock.hold makes its directory), its home made; when the
    body fails, a home left with nothing in it is removed (a first sync of a lock that is
    refused), whoever made it."""
    with prefixlock.hold(layout.lock_file, reporter=reporter, timeout=timeout):
        try:
            venv.ensure_home(layout)
            yield
        except BaseException:
            venv.remove_unused_home(layout)
            raise


@contextmanager
def building(layout: venv.Layout, wanted: str | None, reporter: Reporter) -> Iterator[Build | None]:
    """The stale builds cleaned and the new environment started for a lock that names the
    Python `wanted` (see `start`), for a caller that holds the prefix lock. Whatever the body
    raises, that environment is removed."""
    clean(layout, reporter)
    build = start(layout, wanted, find_uv())
    try:
        yield build
    except BaseException:
        if build is not None:
            build.abandon(layout)
        raise


def clean(layout: venv.Layout, reporter: Reporter) -> None:
    """Remove the stale builds under the prefix (holding its lock), saying how many."""
    removed = venv.clean_stale(layout)
    if removed:
        reporter.info(f"removed {len(removed)} stale build(s) under {layout.envs}")
