"""Does a lock fit this host? The target it was made for against the host's facts (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torchenv.agent.base.errors import (
    LockFileError,
)
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.lock.pylock import PyLock, target_changes

UNCHECKED = (
    "the lock (created by {creator}) has no [tool.torchenv] target, so these could not be "
    "checked against this host: the GPU backend and driver it was made for, the libc and "
    "the host fingerprint; its wheels were chosen by this interpreter's tags and markers, "
    "and verify checks the build that runs"
)


def target_differences(lock_target: Mapping[str, Any], host_facts: Mapping[str, Any]) -> list[str]:
    """Each fact where the lock's target and this host differ, as `key: lock != host`."""
    return [
        f"{key}: lock {locked!r} != host {host!r}"
        for key, locked, host in target_changes(lock_target, host_facts)
    ]


def check_target(
    lock: PyLock, host_facts: Mapping[str, Any], *, force: bool, reporter: Reporter
) -> list[str]:
    """Refuse a lock made for another target (unless forced); returns the notes it warned."""
    target = lock.tool_torchenv.get("target")
    if not isinstance(target, Mapping):
        note = UNCHECKED.format(creator=lock.created_by)
        reporter.warning(note)
        return [note]
    differences = target_differences(target, host_facts)
    if differences and not force:
        raise LockFileError(
            "the lock was made for another target: " + "; ".join(differences),
            hint="run `torchenv lock` (or `torchenv auto`) for this host, or pass --force",
            details={"differences": differences},
        )
    notes = [f"--force: installing a lock made for another target ({line})" for line in differences]
    for note in notes:
        reporter.warning(note)
    return notes


def lock_python(lock: PyLock) -> str | None:
    """The interpreter X.Y the lock's [tool.torchenv] names (None: any); LockFileError if bad."""
    value = lock.tool_torchenv.get("python")
    if value is None or (isinstance(value, str) and re.fullmatch(r"\d+\.\d+", value)):
        return value
    raise LockFileError(
        f"the lock's [tool.torchenv] python is {value!r}; it must be a version string such as "
        '"3.12"',
        hint='write it as python = "3.12" (quoted), or regenerate the lock with `torchenv lock`',
        details={"python": repr(value)},
    )
