"""Switching a prefix to another environment atomically, marking damage, rolling back."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from torchenv.agent.base.errors import EnvironmentBuildError, os_error
from torchenv.agent.base.faults import fault_point
from torchenv.agent.env.venv import (
    Layout,
    PrefixKind,
    active_env,
    inspect_prefix,
    lock_copy,
    python_in,
    read_state,
    remove_debris,
    write_state,
)


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


def commit_switch(
    layout: Layout, to: str, verified: dict[str, Any] | None
) -> tuple[str | None, Path | None]:
    """Switch the prefix to envs/<to>, the state written first as an intent, then as done.

    Returns (the environment active before, where an adopted user environment went). A crash
    at any step leaves a state `read_state` resolves: before the rename the old environment
    is active with its state; after it the new one, its previous and verified state known.
    """
    state = read_state(layout)
    current = active_env(layout)
    if verified is not None:
        verified = {**verified, "env": to}
    write_state(layout, {**state, "switching": {"from": current, "to": to, "verified": verified}})
    fault_point("intent")
    adopted = switch(layout, to)
    fault_point("switched")
    kept = {k: v for k, v in state.items() if k != "damaged"}  # it was about the old one
    write_state(layout, {**kept, "previous": current, "verified": verified})
    return current, adopted


def mark_damaged(layout: Layout, dists: set[str]) -> None:
    """A check found the active environment's files changed: the next auto rebuilds it and
    drops these distributions from the installer's cache (call holding the prefix lock)."""
    state = read_state(layout)
    known = state.get("damaged")
    names = {str(n) for n in known} if isinstance(known, list) else set()
    write_state(layout, {**state, "verified": None, "damaged": sorted(names | dists)})


def rollback(layout: Layout) -> tuple[str, str]:
    """Swap the active and the previous environment; returns (now active, now previous)."""
    remove_debris(layout)
    state = read_state(layout)
    previous = state.get("previous")
    current = active_env(layout)
    if (
        not isinstance(previous, str)
        or current is None
        or previous == current
        or not python_in(layout.env_dir(previous)).exists()
    ):
        raise EnvironmentBuildError(
            f"there is no previous environment to roll back to at {layout.prefix}",
            hint="torchenv keeps one previous environment after a successful sync",
            details={"prefix": str(layout.prefix), "previous": previous},
        )
    if not lock_copy(layout.env_dir(previous)).is_file():  # written once its install is done
        raise EnvironmentBuildError(
            f"the previous environment {previous} at {layout.prefix} is incomplete: its build "
            "never finished",
            hint="it is no way back; run `torchenv auto` (or sync a lock) to build a new one",
            details={"previous": previous},
        )
    from torchenv.agent.env import integrity

    damage = integrity.quick_check(layout.env_dir(previous))
    if damage:
        raise EnvironmentBuildError(
            f"the previous environment {previous} at {layout.prefix} is damaged: files of "
            f"{integrity.describe(damage)} changed since it was built",
            hint="it is no way back; run `torchenv auto` (or sync a lock) to build a new one",
            details={"previous": previous, "damaged": [d.dist for d in damage]},
        )
    commit_switch(layout, previous, None)
    return previous, current
