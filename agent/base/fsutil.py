"""Files torchenv writes and reads: atomic replacement, containment, bounded reads, stale debris."""

from __future__ import annotations

import os
import time
from pathlib import Path

from torchenv.agent.base.faults import fault_point
from torchenv.agent.base.limits import TooLarge

NAME_MAX = 255  # bytes in one path component (Linux, macOS)
PATH_MAX = 4096  # bytes in a whole path (Linux)
UNOWNED_TMP_AGE = 3600.0  # seconds after which a temporary file naming no process is stale


def write_atomic(
    path: Path,
    data: bytes,
    *,
    fsync: bool = False,
    mode: int | None = None,
    make_parents: bool = True,
    shared: bool = False,
) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`.

    `fsync` makes the content durable before the rename (state that must survive a crash).
    Permissions: `mode` when given; else a `shared` file (a lock meant to be committed) gets
    what the umask allows (0644 under umask 022) and any other file stays 0600 (state and
    caches are private by nature). OSError propagates, and no temporary file is left behind.
    The temporary file carries this pid in its name and an flock while it is written, so
    `remove_stale_tmp` knows a live writer's file from one a crash left (in any pid
    namespace: the pods of a node share their files, not their pids).
    """
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    directory = path.parent if str(path.parent) else Path()
    tmp = directory / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o666 if shared else 0o600)  # the kernel applies the umask
    try:
        _flock(fd, blocking=True)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        fault_point("write-" + path.name)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _flock(fd: int, *, blocking: bool) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def remove_stale_tmp(directory: Path, name: str) -> list[Path]:
    """Remove the temporary files `write_atomic` left for `name` when their writer died.

    A file is stale when nobody holds its flock (a live writer does, in whatever pid
    namespace it runs) and its pid is not alive here, or it is an hour old.
    """
    removed = []
    for tmp in directory.glob(f".{name}.*.tmp"):
        owner = tmp.name[len(name) + 2 :].split(".", 1)[0]
        try:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            old = time.time() - os.fstat(fd).st_mtime >= UNOWNED_TMP_AGE
            dead = owner.isdigit() and not pid_alive(int(owner))
            if _flock(fd, blocking=False) and (dead or old):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        finally:
            os.close(fd)
    return removed


# ---------------------------------------------------------------- containment


class Escapes(ValueError):
    """A name read from outside (a lock, an index page, a recording) would leave its directory."""


def file_name(name: str) -> str:
    """`name` when it is one plain path component (no separator, no `..`, no NUL); else Escapes."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or len(os.fsencode(name)) > NAME_MAX
    ):
        raise Escapes(f"{name!r} is not a plain file name")
    return name


def inside(root: Path, *parts: str) -> Path:
    """`root / parts…`, refused (Escapes) unless it stays under `root` once symlinks resolve."""
    path = root.joinpath(*parts)
    base = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([base, real]) != base:
        raise Escapes(f"{path} leaves {root}")
    return path


# ---------------------------------------------------------------- bounded reads


def read_bounded(path: Path, limit: int, what: str = "file") -> bytes:
    """The file's bytes, or TooLarge when it holds more than `limit` (never reads more)."""
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(what, str(path), limit)
    return data
