"""Shared test setup: tests/ is importable, so helpers such as `indexsim` are plain imports."""

from __future__ import annotations

import os
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


# Tests reach no index but loopback ones: by default both indexes are a loopback port where
# nothing listens (connections are refused at once), so a command that reads an index without
# a test server (select, lock) fails fast and says so; tests that serve one set its URL.
UNREACHABLE = "http://127.0.0.1:9"
os.environ.setdefault("TORCHENV_TORCH_INDEX_URL", UNREACHABLE + "/whl")
os.environ.setdefault("TORCHENV_INDEX_URL", UNREACHABLE + "/simple")
# Tests change simulated pages between reads: every read asks (tests of index-max-age set it).
os.environ.setdefault("TORCHENV_INDEX_MAX_AGE", "0")
