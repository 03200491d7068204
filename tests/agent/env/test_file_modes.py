"""Who may read what torchenv writes: a lock is shared (the umask decides), state is private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from helpers.faults import HOST

from torchenv.agent.env import venv
from torchenv.agent.index.httpcache import CacheEntry, HttpCache
from torchenv.agent.lock.pylock import LockedPackage, LockedWheel, PyLock, write_pylock

WHEEL = LockedWheel("torch-2.13.0-py3-none-any.whl", "https://x/t.whl", 1, "0" * 64)
LOCK = PyLock(
    packages=(LockedPackage("torch", "2.13.0", "https://x/simple", (WHEEL,)),),
    tool_torchenv={"fingerprint": HOST.fingerprint()},
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_lock_gets_what_the_umask_allows(tmp_path: Path, umask: int, expected: int) -> None:
    old = os.umask(umask)
    try:
        write_pylock(tmp_path / "pylock.toml", LOCK)
    finally:
        os.umask(old)
    assert mode(tmp_path / "pylock.toml") == expected


def test_state_and_caches_stay_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        layout = venv.Layout.for_prefix(tmp_path / ".venv")
        venv.ensure_home(layout)
        venv.write_state(layout, {"previous": None})
        cache = HttpCache(tmp_path / "http")
        cache.put("k", CacheEntry("https://x", b"page", None, '"e"', None, 0.0, None, False))
    finally:
        os.umask(old)
    assert mode(layout.state_file) == 0o600
    assert [mode(p) for p in (tmp_path / "http").rglob("*") if p.is_file()] == [0o600]
