"""Shared helpers for the benchmark scripts: timing, medians, subprocess wall time."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from helpers import ROOT

TESTS = ROOT / "tests"


def use_test_helpers() -> None:
    """Make tests/ helpers (the index simulator, wheel builders) importable."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))


def median_seconds(fn: Callable[[], object], runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def median_wall(
    argv: Sequence[str], runs: int, env: dict[str, str] | None = None, cwd: Path | None = None
) -> float:
    def once() -> None:
        subprocess.run(
            argv, check=True, capture_output=True, env={**os.environ, **(env or {})}, cwd=cwd
        )

    return median_seconds(once, runs)


def fmt_ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:8.1f} ms"


def ratio(ours: float | None, peer: float | None) -> str:
    if ours is None or peer is None or peer == 0:
        return "n/a"
    return f"{ours / peer:.2f}x"
