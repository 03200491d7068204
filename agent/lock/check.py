"""`torchenv lock --check`: how an existing lock differs from this host's target."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torchenv.agent.base.errors import LockFileError
from torchenv.agent.lock.pylock import PyLock, target_changes
from torchenv.probes.report import HostReport


@dataclass(frozen=True)
class Difference:
    """One target fact in which the host differs from the lock: the locked and host values."""

    fact: str
    locked: Any
    host: Any


def check_lock(lock: PyLock, host: HostReport) -> list[Difference]:
    """The target facts in which the host differs from the one the lock was made for."""
    table = lock.tool_torchenv
    if "fingerprint" not in table:
        raise LockFileError(
            "the lock has no [tool.torchenv] fingerprint",
            hint="it was not written by torchenv; regenerate it with `torchenv lock`",
        )
    if table["fingerprint"] == host.fingerprint():
        return []
    locked = table.get("target")
    changes = target_changes(locked if isinstance(locked, Mapping) else {}, host.target_facts())
    diffs = [Difference(*change) for change in changes]
    return diffs or [Difference("fingerprint", table["fingerprint"], host.fingerprint())]
