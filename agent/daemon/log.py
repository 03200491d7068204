"""The daemon's reporter: one line per event on stderr, with journal priorities under systemd."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from torchenv.agent.base.reporter import Reporter

PRIORITY = {"error": 3, "warning": 4, "info": 6, "debug": 7}


class JournalReporter(Reporter):
    """`<6>message` lines when stderr is the journal (systemd sets $JOURNAL_STREAM)."""

    def __init__(self, stream: TextIO | None = None, *, journal: bool | None = None) -> None:
        self._stream = stream or sys.stderr
        self._journal = bool(os.environ.get("JOURNAL_STREAM")) if journal is None else journal

    def _line(self, level: str, message: str) -> None:
        prefix = f"<{PRIORITY[level]}>" if self._journal else f"torchenv-agent: {level}: "
        try:
            self._stream.write(prefix + message.replace("\n", " ") + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not stop the loop

    def info(self, message: str) -> None:
        self._line("info", message)

    def warning(self, message: str) -> None:
        self._line("warning", message)

    def error(self, message: str) -> None:
        self._line("error", message)

    def stage_finished(self, stage: str, seconds: float, detail: str = "") -> None:
        self._line("debug", f"{stage} took {seconds:.2f} s {detail}".rstrip())
