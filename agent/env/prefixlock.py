"""One torchenv process per prefix, one download per cached wheel: fcntl lock files."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torchenv.agent.base.errors import BusyError, EnvironmentBuildError
from torchenv.agent.base.reporter import Reporter

DEFAULT_TIMEOUT = 600.0
POLL_SECONDS = 0.1


def lock_timeout(env: dict[str, str] | None = None) -> float:
    """TORCHENV_LOCK_TIMEOUT (seconds) or the default; a bad value falls back to the default."""
    raw = (os.environ if env is None else env).get("TORCHENV_LOCK_TIMEOUT", "")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
    except OSError:
        return "unknown"


def _try_lock(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def hold(path: Path, *, reporter: Reporter, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock on `path`; wait up to `timeout` seconds, then raise BusyError.

    The kernel drops an fcntl lock when its holder dies, so a killed torchenv never leaves
    the prefix locked; the pid written into the file is only for the message. A holder may
    remove the file (venv.remove_unused_home): a waiter that then gets the lock of the
    removed file opens the path again (its directory made again, as a missing one always is),
    so no two processes hold the locks of two files of one name.
    """
    timeout = lock_timeout() if timeout is None else timeout
    deadline = time.monotonic() + timeout
    fd = -1
    try:
        while True:
            fd = _open(path)
            if fd >= 0:
                _wait(fd, path, reporter, deadline, timeout)
                if _names(path, fd):
                    break
                os.close(fd)  # the lock of a file its holder removed: open the path anew
                fd = -1
            if time.monotonic() >= deadline:
                raise _busy("unknown", path, timeout)
            time.sleep(POLL_SECONDS)  # a path replaced again and again does not spin
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        if fd >= 0:
            os.close(fd)


def _wait(fd: int, path: Path, reporter: Reporter, deadline: float, timeout: float) -> None:
    """Until the lock of `fd` is had; BusyError at `deadline`."""
    if _try_lock(fd):
        return
    holder = _read_holder(fd)
    reporter.info(f"waiting for torchenv process {holder}, which holds {path}")
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            raise _busy(holder, path, timeout)
        time.sleep(POLL_SECONDS)


def _busy(holder: str, path: Path, timeout: float) -> BusyError:
    return BusyError(
        f"another torchenv process (pid {holder}) is working on this prefix",
        hint="wait for it to finish, or stop it; the lock file is " + str(path),
        details={"pid": holder, "lock_file": str(path), "waited_s": timeout},
    )


def _open(path: Path) -> int:
    """The lock file opened, made where missing, its directory too (a holder that removed an
    unused home may have taken it between the caller's making it and this); -1 where the
    directory went again before the open (the caller tries once more)."""
    try:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            return -1
    except OSError as exc:
        raise _cannot_open(path, exc) from exc


def _cannot_open(path: Path, exc: OSError) -> EnvironmentBuildError:
    return EnvironmentBuildError(
        f"cannot open the lock file {path}: {exc.strerror or exc}",
        hint="check that you may write the directory beside the prefix",
        details={"path": str(path), "errno": exc.errno},
    )


def _names(path: Path, fd: int) -> bool:
    """Whether `path` still names the file open as `fd` (not removed or replaced meanwhile)."""
    try:
        here = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


@contextmanager
def try_hold(path: Path) -> Iterator[bool]:
    """Hold the lock on `path` only if nobody does; the value says whether it was free."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        fd = -1
    try:
        yield fd >= 0 and _try_lock(fd)
    finally:
        if fd >= 0:
            os.close(fd)
