"""The tests' one helpers package: recorded hosts, locks, the daemon harness, fault tooling."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent  # the repository
HOSTS = TESTS / "hosts"  # recorded host fixtures, one directory each
