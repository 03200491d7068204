"""A node takes the lock published for its class (`lock-source`): looked up, hash-checked, checked.

`lock-source` is a directory or an http(s) URL written by `torchenv lock --publish`. A node
reads its index, takes the entry for its own fingerprint, reads that lock (bounded, checked
against the index's sha256 and size), checks it against the host and the request, and syncs it
instead of resolving. An index fetched over HTTP is kept in the cache (with its ETag) and used
without asking for `lock-source-max-age` seconds; after that one conditional request
revalidates it. A lock whose bytes the node already holds is not fetched again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urljoin, urlsplit

from torchenv.agent.base.errors import IntegrityError, LockFileError
from torchenv.agent.base.limits import MAX_LOCK_FILE, MAX_LOCK_INDEX
from torchenv.agent.fleet.publish import INDEX_NAME, Entry, LockIndex, LockSourceError, parse_index

if TYPE_CHECKING:
    import httpx

    from torchenv.agent.base.reporter import Reporter
    from torchenv.agent.base.settings import Settings
    from torchenv.agent.lock.pylock import PyLock
    from torchenv.probes.report import HostReport

MAX_INDEX = MAX_LOCK_INDEX  # bytes of an index read (agent/limits.py)
MAX_LOCK = MAX_LOCK_FILE  # bytes of a published lock
HTTP_ATTEMPTS = 3
CACHE_DIR = "lock-source"  # under cache-dir: the index (HttpCache) and locks by sha256
_HINT = "check lock-source (`torchenv config` shows it and where it came from)"


# ---------------------------------------------------------------- the setting (pure)


@dataclass(frozen=True)
class LockSource:
    """Where the published locks are: an index URL, or an index file in a directory."""

    text: str  # as configured
    index_url: str | None = None
    index_path: Path | None = None

    def describe(self) -> str:
        return self.index_url or str(self.index_path)


def parse_source(text: str, *, cwd: Path | None = None) -> LockSource | None:
    """The configured value as a source (None when empty); ValueError when it is not one.

    A URL or path that ends in `.json` names the index itself; otherwise it is the directory
    (or URL prefix) that holds `index.json`.
    """
    text = text.strip()
    if not text:
        return None
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        if not parts.hostname:
            raise ValueError("names no host")
        url = text if parts.path.endswith(".json") else text.rstrip("/") + "/" + INDEX_NAME
        return LockSource(text, index_url=url)
    if "://" in text and not text.startswith("file://"):
        raise ValueError("must be a directory, or an http://, https:// or file:// URL")
    path = Path(unquote(urlsplit(text).path)) if text.startswith("file://") else Path(text)
    path = path.expanduser()
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    return LockSource(text, index_path=path if path.suffix == ".json" else path / INDEX_NAME)


# ---------------------------------------------------------------- checks (pure)


def request_problems(
    lock: PyLock,
    requirements: Sequence[str],
    *,
    backend: str | None,
    channel: str | None,
    markers: Mapping[str, str],
) -> list[str]:
    """Why a published lock does not give what this node asks for (empty: it does)."""
    from packaging.requirements import InvalidRequirement, Requirement

    problems = []
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            problems.append(f"{text!r} is not a requirement ({exc})")
            continue
        if req.marker is not None and not req.marker.evaluate({**markers, "extra": ""}):
            continue
        package = lock.package(req.name)
        if package is None:
            problems.append(f"{req.name} is not in it")
        elif req.specifier and not req.specifier.contains(package.version, prereleases=True):
            problems.append(f"it has {req.name} {package.version}, not {req.specifier}")
    table = lock.tool_torchenv
    if backend not in (None, "", "auto") and table.get("backend") != backend:
        problems.append(f"it is for the backend {table.get('backend')}, not {backend}")
    if channel and table.get("channel") and table.get("channel") != channel:
        problems.append(f"it is from the {table.get('channel')} channel, not {channel}")
    return problems


# ---------------------------------------------------------------- reading a source (the edge)


@dataclass(frozen=True)
class IndexRead:
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

        if self._client is None:
            self._client = httpx.Client(
                timeout=httpx.Timeout(30.0, connect=10.0),
                follow_redirects=True,
                headers={"User-Agent": "torchenv"},
            )
        return self._client

    def _get(self, url: str, headers: Mapping[str, str], limit: int) -> _Answer:
        """One GET, retried on 5xx, 429 and transport errors; a body over `limit` is refused."""
        import httpx

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
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > limit:
                            raise _TooLarge
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
def open_reader(source: LockSource, settings: Settings) -> Iterator[Reader]:
    if source.index_url is None:
        yield DirectoryReader(source)
        return
    reader = HttpReader(
        source,
        cache_dir=Path(settings.get_value("cache-dir")),
        max_age=float(settings.get_value("lock-source-max-age")),
    )
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


# ---------------------------------------------------------------- what a node takes


@dataclass(frozen=True)
class SourceLock:
    """The lock this node takes from the source, checked."""

    source: LockSource
    entry: Entry
    where: str  # the lock's URL or path
    raw: bytes
    lock: PyLock
    fetched: bool  # False: the node's own copy already held these bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source.describe(),
            "fingerprint": self.entry.fingerprint,
            "lock": self.where,
            "sha256": self.entry.sha256,
            "fetched": self.fetched,
        }


@dataclass(frozen=True)
class Lookup:
    found: SourceLock | None  # None: no source set, or no lock for this class (resolve)
    notes: tuple[str, ...] = ()

    def sha256(self, local: bytes) -> str:
        """The sha256 of the lock the environment must be built from: the published one, or
        the node's own when nothing is published for it."""
        return self.found.entry.sha256 if self.found else hashlib.sha256(local).hexdigest()


@dataclass(frozen=True)
class Located:
    """This class's entry in the index, and the lock's checked bytes."""

    entry: Entry
    where: str  # the lock's URL or path
    raw: bytes
    fetched: bool  # False: the node's own copy already held these bytes
    read: IndexRead


def locate_lock(reader: Reader, fingerprint: str, local: bytes | None) -> Located | None:
    """The lock for this class, its size and sha256 checked; None when the index has none.

    A kept index that lacks the class, or names a lock that is gone, is asked again first.
    """
    read = reader.index()
    for attempt in range(2):
        entry = read.index.classes.get(fingerprint)
        if entry is None and read.cached and attempt == 0:
            read = reader.index(revalidate=True)
            continue
        if entry is None:
            return None
        where = _location(read.where, entry)
        if local is not None and hashlib.sha256(local).hexdigest() == entry.sha256:
            return Located(entry, where, local, False, read)
        raw = reader.lock(entry, read.where)
        if raw is None and attempt == 0:
            read = reader.index(revalidate=True)
            continue
        if raw is None:
            raise LockSourceError(
                f"the index at {read.where} names {entry.lock} for class {fingerprint}, "
                "but there is no such file",
                hint="the directory is incomplete; publish the locks again "
                "(`torchenv lock ... --publish DIR`)",
                details={"fingerprint": fingerprint, "lock": where},
            )
        if len(raw) != entry.size or hashlib.sha256(raw).hexdigest() != entry.sha256:
            got = f"sha256 {hashlib.sha256(raw).hexdigest()[:16]}…, {len(raw)} bytes"
            raise _mismatch(entry, where, got)
        return Located(entry, where, raw, True, read)
    return None  # pragma: no cover - the loop returns or raises on its second pass


def _location(index_where: str, entry: Entry) -> str:
    if "://" in index_where:
        return urljoin(index_where, entry.lock)
    return str(Path(index_where).parent / entry.lock)


def for_host(
    settings: Settings,
    host: HostReport,
    *,
    requirements: Sequence[str],
    local: bytes | None,
    reporter: Reporter,
) -> Lookup:
    """The published lock `auto` syncs for this host, checked; Lookup(None) to lock as before."""
    source = parse_source(str(settings.get_value("lock-source") or ""))
    if source is None:
        return Lookup(None)
    fingerprint = host.fingerprint()
    with reporter.stage("lock-source", source.describe()), open_reader(source, settings) as reader:
        found = locate_lock(reader, fingerprint, local)
        if found is not None and found.fetched and isinstance(reader, HttpReader):
            reader.keep_lock(found.raw)
    if found is None:
        return _missing(source, fingerprint, settings)
    lock = check_published(
        found.raw, found.where, found.entry, host, requirements=requirements, settings=settings
    )
    notes = [found.read.note] if found.read.note else []
    notes.append(
        f"the lock published for this host's class {fingerprint} ({found.where}, sha256 "
        f"{found.entry.sha256[:16]}…); no resolution"
    )
    published = SourceLock(source, found.entry, found.where, found.raw, lock, found.fetched)
    return Lookup(published, tuple(notes))


def _missing(source: LockSource, fingerprint: str, settings: Settings) -> Lookup:
    what = f"{source.describe()} has no lock for this host's class {fingerprint}"
    if settings.get_value("lock-source-missing") == "fail":
        raise LockSourceError(
            what,
            hint="publish one for this host (`torchenv probe --json > host.json` here, then "
            "`torchenv lock ... --host-report host.json --publish DIR` with the other hosts), "
            'or set lock-source-missing = "resolve" to lock for this host instead',
            details={"fingerprint": fingerprint, "source": source.describe()},
        )
    return Lookup(None, (f"{what}; locking for this host (lock-source-missing = resolve)",))


def check_published(
    raw: bytes,
    where: str,
    entry: Entry,
    host: HostReport,
    *,
    requirements: Sequence[str],
    settings: Settings,
) -> PyLock:
    """Parse the published lock; refuse it unless it was made for this host and request."""
    from torchenv.agent.lock.locker import check_lock
    from torchenv.agent.lock.pylock import parse_pylock
    from torchenv.agent.lock.resolvers import target_of

    what = f"the lock published for class {entry.fingerprint} at {where}"
    lock = parse_pylock(raw, source=what)
    differences = check_lock(lock, host)
    if differences:
        facts = "; ".join(f"{d.fact}: lock {d.locked!r}, host {d.host!r}" for d in differences)
        raise LockFileError(
            f"{what} was made for another target: {facts}",
            hint="the index files it under the wrong class; publish the locks again "
            "(`torchenv lock ... --publish DIR`). Nothing was installed",
            details={"fingerprint": entry.fingerprint, "lock": where},
        )
    problems = request_problems(
        lock, requirements, backend=settings.get_value("backend"),
        channel=settings.get_value("channel"), markers=target_of(host).markers(),
    )  # fmt: skip
    if problems:
        locked = lock.tool_torchenv.get("requirements") or []
        raise LockSourceError(
            f"{what} does not give what is asked for here: " + "; ".join(problems),
            hint="publish locks for these requirements (`torchenv lock REQ... --publish DIR`), "
            f"or ask for what the published locks hold ({', '.join(map(str, locked))})",
            details={"fingerprint": entry.fingerprint, "problems": problems},
        )
    return lock


def keep_copy(path: Path, raw: bytes) -> None:
    """The published lock, byte for byte, where `auto` keeps its lock."""
    from torchenv.agent.base.fsutil import write_atomic

    try:
        write_atomic(path, raw, fsync=True, make_parents=False, shared=True)  # like write_pylock
    except OSError as exc:
        raise LockFileError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint="choose a prefix (or --lock FILE) in a directory you can write",
        ) from exc


def index_digest(settings: Settings) -> str | None:
    """A short hash of the published index in force (None: no lock-source); the agent re-runs
    `auto` when it changes. Read through the same cache as `auto`, so no request is doubled."""
    source = parse_source(str(settings.get_value("lock-source") or ""))
    if source is None:
        return None
    with open_reader(source, settings) as reader:
        return hashlib.sha256(reader.index().raw).hexdigest()[:16]
