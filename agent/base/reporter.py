"""Observers instead of prints: the core reports progress here; the CLI and daemon render it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Reporter:
    """No-op hooks; subclasses render them (rich on a terminal, the journal in the daemon)."""

    def stage_started(self, stage: str, detail: str = "") -> None:
        """A pipeline stage (probe, select, lock, sync, verify) begins."""

    def stage_finished(self, stage: str, seconds: float, detail: str = "") -> None:
        """A pipeline stage ended successfully."""

    def progress(self, task: str, done: int, total: int | None) -> None:
        """Bytes or items done of total (None when unknown)."""

    def info(self, message: str) -> None:
        """Something a person may want to know."""

    def warning(self, message: str) -> None:
        """Something a person should know."""

    @contextmanager
    def stage(self, stage: str, detail: str = "") -> Iterator[None]:
        start = time.perf_counter()
        self.stage_started(stage, detail)
        yield
        self.stage_finished(stage, time.perf_counter() - start, detail)


class RecordingReporter(Reporter):
    """Keeps every event; used by tests and by `--json` summaries."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self.timings: dict[str, float] = {}

    def stage_started(self, stage: str, detail: str = "") -> None:
        self.events.append(("start", stage, detail))

    def stage_finished(self, stage: str, seconds: float, detail: str = "") -> None:
        self.events.append(("end", stage, detail))
        self.timings[stage] = seconds

    def info(self, message: str) -> None:
        self.events.append(("info", message))

    def warning(self, message: str) -> None:
        self.events.append(("warning", message))
