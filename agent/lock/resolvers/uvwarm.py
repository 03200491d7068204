"""uv's query of torchenv's interpreter, started as soon as a lock knows it will run uv.

`uv pip compile --python` asks its interpreter for its tags and paths after it has read its
requirements (a Python started and asked: 50-90 ms on an empty cache). `uv python find` of
the same interpreter fills that entry of uv's cache, so a compile that starts after it finds
it there. The sooner the find starts, the likelier it has ended when the compile needs it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from torchenv.agent.base.options import LockOptions

# How long a compile waits for the find before running anyway (it then asks the interpreter
# itself: the find only saves time, it decides nothing).
WAIT = 10.0

_running: dict[Path, subprocess.Popen[bytes]] = {}  # by cache directory: at most one each


def argv(uv: str, cache_dir: Path) -> list[str]:
    return [uv, "python", "find", sys.executable, "--cache-dir", str(cache_dir),
            "--no-config", "--no-python-downloads", "--quiet"]  # fmt: skip


def start(uv: str, cache_dir: Path) -> None:
    """Start the find into `cache_dir` unless one is running there (a failed start: none)."""
    from torchenv.agent.lock.resolvers.base import clean_env

    if cache_dir in _running:
        return
    with contextlib.suppress(OSError):
        _running[cache_dir] = subprocess.Popen(
            argv(uv, cache_dir), env=clean_env({"UV_NO_PROGRESS": "1"}), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip


def ahead(options: LockOptions) -> None:
    """`lock` starts the find before the host, the requirements and the index are read, where
    the resolver the options name ("auto" or "uv") will be uv; UvResolver's prepare then finds
    it running (`auto`, which locks only when something changed, starts it there). The caller
    ends it with `end` where the lock stops before resolving."""
    from torchenv.agent.base.uvbin import find_uv, uv_switched_off
    from torchenv.agent.lock.resolvers import resolver_cache

    named = options.resolver in ("auto", "uv")
    uv = find_uv() if named and not uv_switched_off() else None
    if uv is not None:
        start(uv, resolver_cache(options.index))


def wait(cache_dir: Path) -> None:
    """Until the find into `cache_dir` has ended (killed after WAIT seconds); none: at once."""
    process = _running.pop(cache_dir, None)
    if process is None:
        return
    try:
        process.wait(WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def end() -> None:
    """Stop every find still running (a lock that failed before its compile waited for it):
    none outlives the command, nor stays in this process's table."""
    while _running:
        _, process = _running.popitem()
        if process.poll() is None:
            process.kill()
        process.wait()


@contextlib.contextmanager
def looking(options: LockOptions | None) -> Iterator[None]:
    """`ahead` (unless `options` is None), the body, then `end`, however the body ends."""
    if options is not None:
        ahead(options)
    try:
        yield
    finally:
        end()
