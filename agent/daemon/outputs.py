"""The files the agent writes (state, node_exporter textfile, NFD labels) and how each went."""

from __future__ import annotations

import errno
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


STATE, TEXTFILE, NFD = "state", "textfile", "nfd"


@dataclass(frozen=True)
class OutputStatus:
    """One output file: where it goes and what its last write did."""

    name: str
    path: str
    ok: bool | None = None  # None: not written yet
    error: str | None = None
    hint: str | None = None
    last_attempt: float | None = None
    last_success: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "ok": self.ok,
            "error": self.error,
            "hint": self.hint,
            "last_attempt": self.last_attempt,
            "last_success": self.last_success,
        }


def write_hint(path: Path, exc: OSError) -> str:
    """What to do about a write that failed (pure)."""
    where = path.parent
    if exc.errno == errno.EROFS:
        return (
            f"{where} is read-only for the agent: under systemd add it to ReadWritePaths= "
            "(systemctl edit torchenv-agent), in a container mount it writable"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"the agent's user may not write {where}: fix its owner or mode, or change the path"
    if exc.errno == errno.ENOSPC:
        return f"free disk space on the file system of {where}"
    return f"check that {where} exists and is writable, or change the path in [agent]"


def after_write(status: OutputStatus, *, now: float, error: OSError | None) -> OutputStatus:
    """The status after one write attempt (pure)."""
    if error is None:
        return replace(status, ok=True, error=None, hint=None, last_attempt=now, last_success=now)
    return replace(
        status,
        ok=False,
        error=f"cannot write {status.path}: {error.strerror or error}",
        hint=write_hint(Path(status.path), error),
        last_attempt=now,
    )
