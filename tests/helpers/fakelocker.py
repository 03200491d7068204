"""A locker seam for auto's tests: locks real local wheels and counts its calls."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from helpers.locks import build_lock, plain_spec, torch_spec
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.base.settings import Settings
from torchenv.agent.lock.pylock import PyLock, read_pylock
from torchenv.probes.report import HostReport


class FakeLocker:
    """Locks real local wheels; counts its calls (each one stands for network work)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.calls: list[tuple[str, ...]] = []

    def __call__(
        self, host: HostReport, requirements: Sequence[str], settings: Settings, _: Reporter
    ) -> PyLock:
        self.calls.append(tuple(requirements))
        version = "2.14.0+cpu" if any("2.14" in r for r in requirements) else "2.13.0+cpu"
        path = build_lock(
            self.directory / str(len(self.calls)), [torch_spec(version), plain_spec("filelock")],
            host=host,
        )  # fmt: skip
        lock = read_pylock(path)
        table = {**lock.tool_torchenv, "requirements": list(requirements),
                 "reasons": ["no accelerator on this host"]}  # fmt: skip
        return PyLock(packages=lock.packages, tool_torchenv=table)
