"""Shared test setup: tests/ is importable, so helpers such as `indexsim` are plain imports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

HOSTS = TESTS / "hosts"


@pytest.fixture
def hosts_dir() -> Path:
    return HOSTS
