"""Files torchenv writes and reads: atomic replacement, containment, bounded reads, stale debris."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from torchenv.agent.faults import fault_point
from torchenv.agent.limits import TooLarge

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
    The temporary file's name carries this pid, so `remove_stale_tmp` knows whose it is.
    """
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    directory = path.parent if str(path.parent) else Path()
    tmp = directory / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o666 if shared else 0o600)  # the kernel applies the umask
    try:
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


def remove_stale_tmp(directory: Path, name: str) -> list[Path]:
    """Remove the temporary files `write_atomic` left for `name` in processes that died.

    A name without a pid (older torchenv) counts as stale once it is an hour old.
    """
    removed = []
    for tmp in directory.glob(f".{name}.*.tmp"):
        owner = tmp.name[len(name) + 2 :].split(".", 1)[0]
        if owner.isdigit():
            if pid_alive(int(owner)):
                continue
        else:
            try:
                if time.time() - tmp.lstat().st_mtime < UNOWNED_TMP_AGE:
                    continue
            except OSError:
                continue
        try:
            tmp.unlink()
        except OSError:
            continue
        removed.append(tmp)
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
