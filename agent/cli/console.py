"""The console reporter: stage lines, a download bar and a spinner on stderr, or silence."""

from __future__ import annotations

import sys
from typing import Any

from torchenv.agent.base.reporter import Reporter


class ConsoleReporter(Reporter):
    """Stage lines on stderr (rich), with a download bar and a spinner for the install and
    verify steps when stderr is a terminal."""

    def __init__(self, *, bars: bool = True) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.bars = bars
        self._bar: Any = None
        self._task: Any = None

    def stage_started(self, stage: str, detail: str = "") -> None:
        self._close_bar()
        self.console.print(f"[bold]{stage}[/bold] {detail}".rstrip())
        if self.bars and stage in SPINNER_STAGES:  # no byte counts to show: time passing
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                console=self.console, transient=True,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task(f"{stage} {detail}".rstrip(), total=None)

    def stage_finished(self, stage: str, seconds: float, detail: str = "") -> None:
        self._close_bar()
        self.console.print(f"  {stage} done in {seconds:.2f} s {detail}".rstrip())

    def progress(self, task: str, done: int, total: int | None) -> None:
        if not self.bars:
            return
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


SPINNER_STAGES = ("install", "verify")


def make_reporter(as_json: bool) -> Reporter:
    """Rich on a terminal; quiet with --json or -q, or when stderr is not a TTY (unless -v:
    then stage lines without bars)."""
    from torchenv.agent.cli.outcome import verbosity

    if as_json or verbosity < 0:
        return Reporter()
    terminal = sys.stderr.isatty()
    if terminal or verbosity > 0:
        return ConsoleReporter(bars=terminal)
    return Reporter()
