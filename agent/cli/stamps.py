"""The stamp files of agent/cli/fastpath.py: written, pruned, and git's racy rule for what a
stamp may rest on."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchenv.agent.env.integrity import Dirs, Sentinels

RACY_NS = 2_000_000_000  # file system clocks are coarse: an mtime this recent may yet repeat


def racy(dirs: Dirs, sentinels: Sentinels) -> bool:
    """git's racy rule: a directory or sentinel whose mtime is within RACY_NS of now may yet
    change in the same clock tick without its mtime changing; no stamp may rest on it."""
    now = time.time_ns()
    since, until = now - RACY_NS, now + RACY_NS  # later than that: a clock stepped back since,
    # and a write now sets an mtime of now, unlike the one recorded
    return any(since < d[1] <= until for d in dirs) or any(since < s[2] <= until for s in sentinels)


def write(path: str, data: bytes) -> None:
    """Write the stamp (a fresh O_EXCL temporary: containers sharing a cache share pids), then
    prune the directory: stamps older than KEEP_DAYS, and all but the newest KEEP_STAMPS."""
    from torchenv.agent.base.fsutil import write_atomic

    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    write_atomic(Path(path), data, mode=0o600, make_parents=False)
    _prune(os.path.dirname(path))


KEEP_DAYS = 30
KEEP_STAMPS = 256


def _prune(directory: str) -> None:
    stamps: list[tuple[float, str]] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                mtime = entry.stat(follow_symlinks=False).st_mtime
                if entry.name.endswith(".bin"):
                    stamps.append((mtime, entry.path))
                elif entry.name.endswith(".tmp") and mtime < time.time() - 86400:
                    os.unlink(entry.path)  # a writer that died a day ago
    stamps.sort(reverse=True)
    oldest = time.time() - KEEP_DAYS * 86400
    for rank, (mtime, stamp) in enumerate(stamps):
        if rank >= KEEP_STAMPS or mtime < oldest:
            with contextlib.suppress(OSError):
                os.unlink(stamp)
