"""The console reporter: stage lines and a download bar on stderr, or JSON's silence."""

from __future__ import annotations

import sys
from typing import Any

from torchenv.agent.base.reporter import Reporter


class ConsoleReporter(Reporter):
    """Stage lines and a download bar on stderr (rich), for people at a terminal."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._bar: Any = None
        self._task: Any = None

    def stage_started(self, stage: str, detail: str = "") -> None:
        self.console.print(f"[bold]{stage}[/bold] {detail}".rstrip())

    def stage_finished(self, stage: str, seconds: float, detail: str = "") -> None:
        self._close_bar()
        self.console.print(f"  {stage} done in {seconds:.2f} s {detail}".rstrip())

    def progress(self, task: str, done: int, total: int | None) -> None:
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        if self._bar is None:
            self._bar = Progress(
                *Progress.get_default_columns(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(task, total=total)
        self._bar.update(self._task, completed=done, total=total)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def info(self, message: str) -> None:
        self.console.print(f"  {message}")

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}")


def make_reporter(as_json: bool) -> Reporter:
    """Rich on a terminal; quiet with --json or when stderr is not a TTY."""
    if as_json or not sys.stderr.isatty():
        return Reporter()
    return ConsoleReporter()
