"""The files the agent writes (state, node_exporter textfile, NFD labels) and how each went."""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchenv.agent.base.errors import ConfigError
from torchenv.agent.daemon import metrics
from torchenv.agent.daemon.state import (
    atomic_write,
    save_state,
)

if TYPE_CHECKING:
    from pathlib import Path

    from torchenv.agent.daemon.config import AgentConfig
    from torchenv.agent.daemon.log import JournalReporter
    from torchenv.agent.daemon.state import EnvStatus

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


class OutputWriter:
    """Writing the agent's files (state, textfile, NFD labels), keeping how each write went."""

    config: AgentConfig
    _state_path: Path
    statuses: dict[str, EnvStatus]
    outputs: dict[str, OutputStatus]
    log: JournalReporter

    if TYPE_CHECKING:

        def metrics_text(self) -> str: ...

    def _prepare_dirs(self) -> None:
        try:
            self.config.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the state directory {self.config.state_dir}: {exc.strerror or exc}",
                hint="set state-dir in [agent], or run under systemd with StateDirectory=torchenv",
            ) from exc

    def _publish(self) -> None:
        """State file, node_exporter textfile and NFD features; each one's result is kept."""
        self._write(STATE, lambda: save_state(self._state_path, self.statuses))
        if self.config.textfile is not None:
            textfile = self.config.textfile
            self._write(TEXTFILE, lambda: atomic_write(textfile, self.metrics_text()))
        self._write_labels()

    def _write_labels(self) -> None:
        nfd = self.config.nfd_feature_file
        if nfd is None:
            return
        expires = time.time() + self.config.nfd_expiry
        text = metrics.render_nfd(list(self.statuses.values()), expires=expires)
        self._write(NFD, lambda: atomic_write(nfd, text))

    def _write(self, name: str, write: Callable[[], None]) -> None:
        error = None
        try:
            write()
        except OSError as exc:
            error = exc
        before = self.outputs[name]
        self.outputs[name] = after_write(before, now=time.time(), error=error)
        if error is not None and before.error != self.outputs[name].error:
            self.log.warning(f"{self.outputs[name].error} ({self.outputs[name].hint})")
        elif error is None and before.ok is False:
            self.log.info(f"{name} output written again to {before.path}")

    async def _refresh_labels(self) -> None:
        """Rewrite the NFD file well before its expiry, provisioning or not."""
        while True:
            await asyncio.sleep(self.config.nfd_expiry / 4)
            self._write_labels()
