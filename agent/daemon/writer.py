"""Writing the agent's files (state, node_exporter textfile, NFD labels), keeping each outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

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

from torchenv.agent.daemon.outputs import NFD, STATE, TEXTFILE, OutputStatus, after_write


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
