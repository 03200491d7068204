"""Reading a lock source: a directory or an HTTP server, bounded, cached and retried."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin

from torchenv.agent.base.errors import IntegrityError
from torchenv.agent.base.limits import MAX_LOCK_FILE, MAX_LOCK_INDEX
from torchenv.agent.fleet.lockindex import Entry, LockIndex, LockSourceError, parse_index

if TYPE_CHECKING:
    import httpx

    from torchenv.agent.base.options import LockSourceConfig

from torchenv.agent.base.locksetting import LockSource

MAX_INDEX = MAX_LOCK_INDEX  # bytes of an index read (agent/base/limits.py)


MAX_LOCK = MAX_LOCK_FILE  # bytes of a published lock


HTTP_ATTEMPTS = 3


CACHE_DIR = "lock-source"  # under cache-dir: the index (HttpCache) and locks by sha256


_HINT = "check lock-source (`torchenv config` shows it and where it came from)"


@dataclass(frozen=True)
class IndexRead:
    """A lock index as read: parsed and raw, where from, whether the cache answered."""

    index: LockIndex
    raw: bytes
    where: str  # the index's final URL, or its path: lock paths are relative to it
    cached: bool  # taken from the cache without asking the server
    note: str | None = None


class Reader(Protocol):
    def index(self, *, revalidate: bool = False) -> IndexRead: ...

    def lock(self, entry: Entry, where: str) -> bytes | None:
        """The lock file's bytes (at most its size + 1), None when it is not there."""
        ...


def _read_file(path: Path, limit: int) -> bytes | None:
    """At most `limit + 1` bytes of a file; None when it does not exist."""
    try:
        with path.open("rb") as fh:
            return fh.read(limit + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise LockSourceError(
            f"cannot read {path}: {exc.strerror or exc}", hint=_HINT, details={"path": str(path)}
        ) from exc


def _too_large(where: str, limit: int) -> LockSourceError:
    return LockSourceError(
        f"{where} is larger than {limit >> 20} MiB, the most torchenv reads of a lock index",
        hint=_HINT,
        details={"index": where},
    )


class DirectoryReader:
    """A published directory on this machine (a volume, NFS, ...): read as it is, every time."""

    def __init__(self, source: LockSource) -> None:
        assert source.index_path is not None
        self.path = source.index_path

    def index(self, *, revalidate: bool = False) -> IndexRead:
        raw = _read_file(self.path, MAX_INDEX)
        if raw is None:
            raise LockSourceError(
                f"there is no lock index at {self.path}",
                hint="publish one with `torchenv lock --host-report FILE... --publish DIR`, "
                "or " + _HINT,
                details={"index": str(self.path)},
            )
        if len(raw) > MAX_INDEX:
            raise _too_large(str(self.path), MAX_INDEX)
        return IndexRead(parse_index(raw, str(self.path)), raw, str(self.path), cached=False)

    def lock(self, entry: Entry, where: str) -> bytes | None:
        return _read_file(Path(where).parent / entry.lock, min(entry.size, MAX_LOCK))


@dataclass(frozen=True)
class _Answer:
    """One HTTP answer: status, headers (names lower-cased), the whole body, final URL."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


class _TooLarge(Exception):
    pass


class HttpReader:
    """A published directory behind an HTTP server: the index cached with its validators."""

    def __init__(self, source: LockSource, *, cache_dir: Path | None, max_age: float) -> None:
        from torchenv.agent.index.httpcache import HttpCache

        assert source.index_url is not None
        self.url = source.index_url
        self.max_age = max_age
        self.cache = HttpCache(cache_dir / CACHE_DIR / "http" if cache_dir else None)
        self.locks = cache_dir / CACHE_DIR / "locks" if cache_dir else None
        self._client: httpx.Client | None = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def index(self, *, revalidate: bool = False) -> IndexRead:
        from torchenv.agent.index.httpcache import CacheEntry

        key = "lock-index\n" + self.url
        kept = self.cache.get(key)
        now = time.time()
        if kept is not None and not revalidate and now - kept.stored_at < self.max_age:
            return IndexRead(parse_index(kept.body, kept.url), kept.body, kept.url, cached=True)
        try:
            answer = self._get(self.url, kept.conditional_headers() if kept else {}, MAX_INDEX)
        except _TooLarge:
            raise _too_large(self.url, MAX_INDEX) from None
        except LockSourceError as exc:
            if kept is None:
                raise
            note = f"{exc.message}; using the lock index read {now - kept.stored_at:.0f} s ago"
            return IndexRead(parse_index(kept.body, kept.url), kept.body, kept.url, True, note)
        if answer.status == 304 and kept is not None:
            kept = kept.refreshed(answer.headers, now)
            self.cache.put(key, kept)
            return IndexRead(parse_index(kept.body, kept.url), kept.body, kept.url, cached=False)
        if answer.status != 200:
            raise LockSourceError(
                f"{self.url} answered HTTP {answer.status}: there is no lock index there",
                hint="publish one (`torchenv lock ... --publish DIR`) and serve DIR there, or "
                + _HINT,
                details={"index": self.url, "status": answer.status},
            )
        index = parse_index(answer.body, answer.url)  # only a usable index is kept
        entry = CacheEntry(
            url=answer.url, body=answer.body, content_type=answer.headers.get("content-type"),
            etag=answer.headers.get("etag"), last_modified=answer.headers.get("last-modified"),
            stored_at=now, max_age=None, no_cache=False,
        )  # fmt: skip
        self.cache.put(key, entry)
        return IndexRead(index, answer.body, answer.url, cached=False)

    def lock(self, entry: Entry, where: str) -> bytes | None:
        kept = self._kept_lock(entry.sha256)
        if kept is not None:
            return kept
        url = urljoin(where, entry.lock)
        try:
            answer = self._get(url, {}, min(entry.size, MAX_LOCK))
        except _TooLarge:
            raise _mismatch(entry, url, "more bytes than the index says") from None
        if answer.status in (404, 410):
            return None
        if answer.status != 200:
            raise LockSourceError(
                f"{url} answered HTTP {answer.status}", hint=_HINT, details={"url": url}
            )
        return answer.body

    def keep_lock(self, raw: bytes) -> None:
        """Keep a checked lock by its sha256: the other pods of a node need not fetch it."""
        if self.locks is None:
            return
        from torchenv.agent.base.fsutil import write_atomic

        try:
            write_atomic(self.locks / hashlib.sha256(raw).hexdigest(), raw)
        except OSError:
            return  # a cache that cannot be written only costs a later fetch

    def _kept_lock(self, sha256: str) -> bytes | None:
        if self.locks is None:
            return None
        raw = _read_file(self.locks / sha256, MAX_LOCK)
        return raw if raw is not None and hashlib.sha256(raw).hexdigest() == sha256 else None

    def _http(self) -> httpx.Client:
        import httpx

        from torchenv.agent.index.bodies import ACCEPT_ENCODING

        if self._client is None:  # gzip only: decoded inflates it in bounded steps
            self._client = httpx.Client(
                timeout=httpx.Timeout(30.0, connect=10.0),
                follow_redirects=True,
                headers={"User-Agent": "torchenv", "Accept-Encoding": ACCEPT_ENCODING},
            )
        return self._client

    def _get(self, url: str, headers: Mapping[str, str], limit: int) -> _Answer:
        """One GET, retried on 5xx, 429, transport errors and damaged gzip; a body over `limit`
        is refused (decoded bytes, counted as they are inflated: agent/index/bodies.py)."""
        import httpx

        from torchenv.agent.index.bodies import Retry, decoded

        last = ""
        for attempt in range(HTTP_ATTEMPTS):
            if attempt:
                time.sleep(0.2 * 2 ** (attempt - 1))
            try:
                with self._http().stream("GET", url, headers=dict(headers)) as response:
                    if response.status_code >= 500 or response.status_code == 429:
                        last = f"HTTP {response.status_code}"
                        continue
                    body = bytearray()
                    try:
                        for chunk in decoded(response):
                            body += chunk
                            if len(body) > limit:
                                raise _TooLarge
                    except Retry as exc:
                        last = f"HTTP {response.status_code}, {exc.reason}"
                        continue
                    head = {k.lower(): v for k, v in response.headers.items()}
                    return _Answer(response.status_code, head, bytes(body), str(response.url))
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
        raise LockSourceError(
            f"cannot read {url} ({last}, {HTTP_ATTEMPTS} attempts)",
            hint=_HINT + ", and that its server answers from this host",
            details={"url": url, "reason": last},
        )


@contextmanager
def open_reader(source: LockSource, config: LockSourceConfig) -> Iterator[Reader]:
    if source.index_url is None:
        yield DirectoryReader(source)
        return
    reader = HttpReader(source, cache_dir=config.cache_dir, max_age=config.max_age)
    try:
        yield reader
    finally:
        reader.close()


def _mismatch(entry: Entry, where: str, what: str) -> IntegrityError:
    return IntegrityError(
        f"the lock published for class {entry.fingerprint} at {where} does not match the "
        f"index ({what}; the index says sha256 {entry.sha256[:16]}…, {entry.size} bytes)",
        hint="the file was changed or damaged after it was published; publish the locks "
        "again (`torchenv lock ... --publish DIR`). Nothing was installed",
        details={"fingerprint": entry.fingerprint, "lock": where, "sha256": entry.sha256},
    )
