"""Running a command the way its stamp is written, and asking for the answer it kept."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

import pytest

from torchenv.agent.cli import fastpath


def run_command(*argv: str) -> str:
    """`torchenv ARGV` in a fresh interpreter; its standard output (the command must succeed).
    The environment is passed explicitly: the C-level one may hold what os.environ no longer
    shows."""
    done = subprocess.run([sys.executable, "-m", "torchenv.agent", *argv], capture_output=True,
                          text=True, check=False, timeout=300, env=dict(os.environ))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def kept(capsys: pytest.CaptureFixture[str], argv: Sequence[str]) -> str | None:
    """The kept answer, as the console script would print it; None: the full path runs."""
    capsys.readouterr()
    answered = fastpath.run(list(argv))
    out = capsys.readouterr().out
    assert answered or out == ""
    return out if answered else None


def after_index_max_age(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path's clock, moved past index-max-age (600 s by default) from now."""
    later = fastpath.time.time() + 601
    monkeypatch.setattr(fastpath.time, "time", lambda: later)
