"""Fetching a lock's wheels into the wheel store: hash-checked, resumable, one download each."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from torchenv.agent.base.errors import (
    IntegrityError,
    LockFileError,
    os_error,
)
from torchenv.agent.base.faults import fault_point
from torchenv.agent.base.fsutil import Escapes
from torchenv.agent.base.limits import MAX_WHEEL
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.env import prefixlock
from torchenv.agent.env.checked import Checked, file_sha256
from torchenv.agent.index.partial import Partial
from torchenv.agent.index.wheelstore import cached_wheel
from torchenv.agent.lock.pylock import LockedPackage

CHUNK = 1 << 20


ENTRY_LOCK = ".lock"  # in each wheel's cache directory: held by whoever is downloading it


DOWNLOAD_WORKERS = 4


def cache_path(cache_dir: Path, package: LockedPackage) -> Path:
    from packaging.utils import InvalidWheelFilename

    try:
        return cached_wheel(cache_dir / "wheels", package.wheel.sha256, package.wheel.name)
    except (Escapes, InvalidWheelFilename) as exc:
        raise LockFileError(
            f"the lock names the wheel of {package.name} {package.wheel.name!r}, which is not "
            f"a wheel file name ({exc})",
            hint="a wheel's name in a lock is one file name such as "
            "`torch-2.9.0-cp312-cp312-manylinux_2_28_x86_64.whl`; regenerate the lock with "
            "`torchenv lock`",
            details={"package": package.name, "name": package.wheel.name},
        ) from exc


def _bad_url(package: LockedPackage, why: str) -> LockFileError:
    return LockFileError(
        f"the lock's URL for {package.name} ({package.wheel.url!r}) is invalid: {why}",
        hint="a lock names each wheel by an absolute http(s):// or file:// URL; regenerate it "
        "with `torchenv lock`",
        details={"package": package.name, "url": package.wheel.url},
    )


def local_source(package: LockedPackage) -> Path | None:
    """The file a file:// URL names (None for http and https); LockFileError when invalid."""
    url = package.wheel.url
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return None
    if not url:
        raise _bad_url(package, "it is empty")
    if parsed.scheme != "file":
        raise _bad_url(package, "it is not an absolute http://, https:// or file:// URL")
    if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
        raise _bad_url(package, "a file:// URL needs an absolute path on this host")
    path = Path(unquote(parsed.path))
    if path.is_dir():
        raise _bad_url(package, "it names a directory, not a wheel file")
    return path


class Fetcher:
    """Downloads locked wheels into the cache, checking size and sha256 while streaming.

    HTTP goes through the index client (its retries with backoff, resumed with ranges);
    no source is read past the locked size. A wheel already in the store is used when the
    store's note says it matched and its stat is unchanged, else when its bytes hash to the
    locked sha256 again; one that does not is downloaded again (`damaged` names them).
    """

    def __init__(self, cache_dir: Path, reporter: Reporter, total: int) -> None:
        self.cache_dir = cache_dir
        self.reporter = reporter
        self.total = total
        self.done = 0
        self.fetched = 0
        self._lock = threading.Lock()
        self._client: Any = None
        self.checked = Checked(cache_dir / "wheels")
        self.damaged: list[str] = []
        self._bad: dict[Path, tuple[int, ...]] = {}  # the stat of a file that hashed wrong

    def _advance(self, amount: int) -> None:
        with self._lock:
            self.done += amount
            self.fetched += max(amount, 0)
            self.reporter.progress("download", self.done, self.total)
        fault_point("download")

    def _http(self) -> Any:
        with self._lock:
            if self._client is None:
                from torchenv.agent.index.client import IndexClient

                self._client = IndexClient(reporter=self.reporter, timeout=60.0)
            return self._client

    def _copy_local(self, package: LockedPackage, source: Path, part: Path) -> tuple[str, int]:
        """Copy a file:// wheel into `part`, written and hashed beside the reads (as a
        download is: index/partial.py), stopping past the locked size."""
        try:
            handle = source.open("rb")
        except OSError as exc:
            raise _bad_url(package, f"cannot read {source}: {exc.strerror or exc}") from exc
        limit = MAX_WHEEL if package.wheel.size is None else package.wheel.size
        with handle, part.open("wb") as out:
            into = Partial(out, {}, self._advance)
            try:
                while into.received <= limit and (chunk := handle.read(CHUNK)):
                    into.write(chunk)
                return into.digests()["sha256"], into.received
            finally:
                into.close()

    def fetch(self, package: LockedPackage) -> Path:
        dest = cache_path(self.cache_dir, package)
        source = local_source(package)
        if self._good(dest, package):
            self._skip(dest)
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        # One download per wheel for every process sharing the cache (the pods of a node):
        # the others wait for it, then find the file. The kernel drops the lock of a writer
        # that dies, so waiting has no bound of its own; the download's timeouts bound it.
        with prefixlock.hold(dest.parent / ENTRY_LOCK, reporter=self.reporter, timeout=math.inf):
            if self._good(dest, package):  # another process may have written it meanwhile
                self._skip(dest)
                return dest
            self._download(package, source, dest)
        return dest

    def _good(self, dest: Path, package: LockedPackage) -> bool:
        """Whether the store's file is the locked wheel (see the class)."""
        if not _complete(dest, package):
            return False
        sha256 = package.wheel.sha256
        if self.checked.trusted(dest, sha256):
            return True
        try:
            seen = _identity(dest)
            if self._bad.get(dest) == seen:  # found wrong before, and still that file
                return False
            good = file_sha256(dest) == sha256
        except OSError:
            return False
        if good:
            self.checked.record(dest, sha256)
            return True
        self.checked.forget(dest)
        with self._lock:
            self._bad[dest] = seen
            if package.name not in self.damaged:
                self.damaged.append(package.name)
        return False

    def _skip(self, cached: Path) -> None:
        with self._lock:
            self.done += cached.stat().st_size

    def _download(self, package: LockedPackage, source: Path | None, dest: Path) -> None:
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            if source is not None:
                sha256, size = self._copy_local(package, source, tmp)
            else:
                digests, size = self._http().fetch_file(
                    package.wheel.url, tmp, size=package.wheel.size, progress=self._advance
                )
                sha256 = digests["sha256"]
            locked = package.wheel.size  # optional in PEP 751: the sha256 decides alone then
            if sha256 != package.wheel.sha256 or locked not in (None, size):
                raise IntegrityError(
                    f"{package.wheel.name} from {package.wheel.url} does not match the lock "
                    f"(sha256 {sha256[:16]}…, {size} bytes; the lock has "
                    f"{package.wheel.sha256[:16]}…, {package.wheel.size or '?'} bytes)",
                    hint="the index changed the file or the download was tampered with; "
                    "re-lock with `torchenv lock` if the change is expected",
                    details={"package": package.name, "url": package.wheel.url},
                )
            os.replace(tmp, dest)
            self.checked.record(dest, sha256)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def drop_damaged(
    packages: Sequence[LockedPackage], files: Mapping[str, Path], reporter: Reporter
) -> list[str]:
    """Remove the cached wheels whose sha256 is no longer the locked one; their names."""
    damaged = []
    for package in packages:
        path = files[package.name]
        try:
            good = file_sha256(path) == package.wheel.sha256
        except OSError:
            good = False
        if not good:
            with prefixlock.try_hold(path.parent / ENTRY_LOCK) as free:
                if free:  # nobody is writing it: drop it (a writer replaces it anyway)
                    path.unlink(missing_ok=True)
            damaged.append(package.name)
    _warn_damaged(damaged, reporter)
    return damaged


def _warn_damaged(damaged: Sequence[str], reporter: Reporter) -> None:
    if damaged:
        reporter.warning(
            f"the cached wheel(s) of {', '.join(damaged)} no longer match the lock; "
            "downloading them again"
        )


def _identity(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _complete(dest: Path, package: LockedPackage) -> bool:
    locked = package.wheel.size  # optional in PEP 751: the sha256 decides alone then
    return dest.is_file() and (locked is None or dest.stat().st_size == locked)


def clean_parts(cache_dir: Path) -> None:
    """Remove partial downloads that nobody is writing.

    A writer holds its wheel's entry lock while a part exists, so a part whose lock is free
    was left by a process that died. (Pids say nothing here: the pods sharing a node's cache
    each have their own pid namespace.)
    """
    for directory in {part.parent for part in (cache_dir / "wheels").glob("*/*/.*.part")}:
        with prefixlock.try_hold(directory / ENTRY_LOCK) as free:
            if free:
                for part in directory.glob(".*.part"):
                    part.unlink(missing_ok=True)


def missing(packages: Sequence[LockedPackage], cache_dir: Path) -> int:
    """How many of the wheels are not in the store yet (a download each)."""
    return sum(1 for p in packages if not _complete(cache_path(cache_dir, p), p))


def _fetch_each(fetcher: Fetcher, packages: Sequence[LockedPackage]) -> list[Path]:
    """Each package's checked file, in order: downloads side by side when more than one
    wheel is missing, the largest started first (torch does not queue behind the small
    ones); in this thread otherwise (a pool's start-up would buy nothing)."""
    count = missing(packages, fetcher.cache_dir)
    if count <= 1:
        return [fetcher.fetch(p) for p in packages]
    from concurrent.futures import ThreadPoolExecutor

    order = sorted(range(len(packages)), key=lambda i: -(packages[i].wheel.size or 0))
    with ThreadPoolExecutor(max_workers=min(DOWNLOAD_WORKERS, count)) as pool:
        futures = {i: pool.submit(fetcher.fetch, packages[i]) for i in order}
        return [futures[i].result() for i in range(len(packages))]


def fetch_all(
    packages: Sequence[LockedPackage], cache_dir: Path, reporter: Reporter
) -> tuple[dict[str, Path], int, int]:
    """Every locked wheel as a checked local file; returns (files, bytes fetched, cache hits)."""
    hits = sum(1 for p in packages if cache_path(cache_dir, p).is_file())
    total = sum(p.wheel.size or 0 for p in packages)
    clean_parts(cache_dir)
    fetcher = Fetcher(cache_dir, reporter, total)
    try:
        files = dict(zip((p.name for p in packages), _fetch_each(fetcher, packages), strict=True))
    except OSError as exc:
        raise os_error("download into", cache_dir, exc) from exc
    finally:
        fetcher.close()
        fetcher.checked.save()
    _warn_damaged(fetcher.damaged, reporter)
    return files, fetcher.fetched, hits
