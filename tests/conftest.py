"""Shared test setup: tests/ is importable (helpers, indexsim, realmirror), each simulator's
fixtures are registered once here, and no test reaches an index but a loopback one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from helpers import HOSTS  # noqa: E402 - tests/ is on sys.path only now

# One fixture per simulator, for every test: indexsim_site/indexsim, focus_site/focus_sim,
# real_mirror_files/real_mirror.
pytest_plugins = ("indexsim.fixtures", "realmirror.fixtures")


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
