"""What changed under an environment: its files (RECORD hashes), the lock published for it."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from torchenv.agent.base.errors import TorchenvError
from torchenv.agent.daemon.config import EnvironmentSpec
from torchenv.agent.daemon.provision import child_env

if TYPE_CHECKING:
    from torchenv.agent.daemon.config import AgentConfig
    from torchenv.agent.daemon.log import JournalReporter


class DriftChecks:
    """What changed under an environment: its files (RECORD hashes), the lock published for it."""

    _files_checked: dict[str, float]
    config: AgentConfig
    log: JournalReporter

    def _files_due(self, name: str) -> bool:
        last = self._files_checked.get(name)
        return last is None or time.time() - last >= self.config.integrity_interval

    def _check_files(self, spec: EnvironmentSpec) -> str | None:
        """Hash the environment's files against RECORD (in the executor); what changed, if any.

        Damage is marked in the prefix's state, so the child `auto` rebuilds it and drops the
        damaged distributions from the installer's cache.
        """
        from torchenv.agent.env import integrity, prefixlock, switch, venv

        self._files_checked[spec.name] = time.time()
        damage = integrity.full_check(spec.prefix)
        if not damage:
            return None
        text = integrity.describe(damage)
        self.log.warning(f"{spec.name}: installed files differ from their wheels: {text}")
        try:
            layout = venv.Layout.for_prefix(spec.prefix)
            with prefixlock.hold(layout.lock_file, reporter=self.log, timeout=60):
                switch.mark_damaged(layout, {d.dist for d in damage})
        except TorchenvError as exc:
            self.log.warning(f"{spec.name}: cannot mark the damage: {exc.message}")
        return text

    def _published(self, spec: EnvironmentSpec) -> str | None:
        """The lock-source index digest the child `auto` would see (its settings, its env)."""
        from torchenv.agent.base.settings import load_settings
        from torchenv.agent.fleet.locksource import index_digest

        env = child_env(self.config, spec, os.environ)
        return index_digest(load_settings(env=env, cwd=self.config.state_dir))
