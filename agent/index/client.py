"""The package-index client: pages (PEP 503/691), metadata (PEP 658/714 or HTTP ranges), downloads.

Concurrency: one synchronous `httpx.Client` (thread-safe, pooled connections) shared by a
thread pool of `concurrency` workers; `metadata_many` and `project_pages` fan out on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import html.parser
import os
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import httpx
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from torchenv.agent.base.errors import IndexError_, IntegrityError
from torchenv.agent.base.limits import MAX_METADATA, MAX_PAGE, MAX_WHEEL, MAX_ZIP_DIRECTORY
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.index.httpcache import CacheEntry, HttpCache, entry_from_response

if TYPE_CHECKING:  # imported where used: `import torchenv.agent.index.client` stays cheap
    from concurrent.futures import ThreadPoolExecutor

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

T = TypeVar("T")
R = TypeVar("R")

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
PAGE_ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
TAIL_BYTES = 64 * 1024  # first range read: the end of the zip (EOCD, usually all of the CD)
METADATA_SLACK = 1024  # extra bytes read after METADATA's data for a longer local extra field
CHUNK = 1 << 20
HINT = (
    "Check the index URL and mirror settings (`torchenv config` shows index-url and "
    "torch-index-url) and this host's network connection"
)


@dataclass(frozen=True)
class Artifact:
    """One file listed on a project page."""

    project: str  # normalised (PEP 503)
    filename: str
    url: str  # absolute, without the hash fragment
    hashes: Mapping[str, str]
    requires_python: str | None
    core_metadata: Mapping[str, str] | bool  # PEP 658/714: False, True or {"sha256": ...}
    yanked: str | None  # None: not yanked; "" yanked without a reason
    size: int | None
    version: Version | None
    tags: frozenset[Tag]

    def __hash__(self) -> int:  # the mappings are not hashable; the URL names the file
        return hash((self.url, self.filename))

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")

    @property
    def metadata_url(self) -> str:
        return self.url + ".metadata"


@dataclass(frozen=True)
class CoreMetadata:
    name: str
    version: Version
    requires_dist: tuple[Requirement, ...]
    requires_python: SpecifierSet | None
    raw: str


@dataclass
class KindStats:
    requests: int = 0
    bytes_fetched: int = 0


@dataclass
class IndexStats:
    """What the client asked the network for. Kinds: page, metadata, range, download."""

    requests: int = 0
    bytes_fetched: int = 0  # body bytes received
    not_modified: int = 0  # 304 answers to conditional requests
    cache_hits: int = 0  # answered from the cache without a request
    retries: int = 0
    by_kind: dict[str, KindStats] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_request(self, kind: str) -> None:
        with self._lock:
            self.requests += 1
            self.by_kind.setdefault(kind, KindStats()).requests += 1

    def count_bytes(self, kind: str, n: int) -> None:
        with self._lock:
            self.bytes_fetched += n
            self.by_kind.setdefault(kind, KindStats()).bytes_fetched += n

    def bump(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "bytes_fetched": self.bytes_fetched,
                "not_modified": self.not_modified,
                "cache_hits": self.cache_hits,
                "retries": self.retries,
                "by_kind": {k: vars(v).copy() for k, v in sorted(self.by_kind.items())},
            }


# --- pages (pure) -----------------------------------------------------------------------


def project_url(index_url: str, project: str) -> str:
    return index_url.rstrip("/") + "/" + canonicalize_name(project) + "/"


def make_artifact(
    project: str,
    url: str,
    *,
    hashes: Mapping[str, str] | None = None,
    requires_python: str | None = None,
    core_metadata: Mapping[str, str] | bool = False,
    yanked: str | None = None,
    size: int | None = None,
) -> Artifact:
    """An Artifact from a link; the hash fragment of `url` (if any) joins `hashes`."""
    parts = urlsplit(url)
    found = dict(hashes or {})
    if parts.fragment:
        algo, sep, value = parts.fragment.partition("=")
        if sep and algo in hashlib.algorithms_guaranteed:
            found.setdefault(algo, value)
    bare = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
    filename = unquote(parts.path.rsplit("/", 1)[-1])
    version, tags = _parse_filename(filename)
    return Artifact(
        project=canonicalize_name(project),
        filename=filename,
        url=bare,
        hashes=found,
        requires_python=requires_python or None,
        core_metadata=core_metadata,
        yanked=yanked,
        size=size,
        version=version,
        tags=tags,
    )


def _parse_filename(filename: str) -> tuple[Version | None, frozenset[Tag]]:
    try:
        if filename.endswith(".whl"):
            _, version, _, tags = parse_wheel_filename(filename)
            return version, tags
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)[1], frozenset()
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        pass
    return None, frozenset()


def _file_project(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[0]
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)[0]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


def _belongs(artifact: Artifact) -> bool:
    """Keep files of this project only (a page may link others), named by plain file names
    (a link whose name decodes to a path, `..%2F..%2Fx.whl`, is no file of the project)."""
    from torchenv.agent.base.fsutil import Escapes, file_name

    try:
        file_name(artifact.filename)
    except Escapes:
        return False
    owner = _file_project(artifact.filename)
    return owner is None or owner == artifact.project


def _metadata_attr(value: str | None) -> Mapping[str, str] | bool:
    """data-core-metadata / data-dist-info-metadata: "true" or "<algo>=<hex>" (PEP 658)."""
    if value is None:
        return False
    value = value.strip()
    if value.lower() == "true":
        return True
    algo, sep, digest = value.partition("=")
    if sep and algo:
        return {algo.lower(): digest}
    return False


class _LinkParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "a":
            found = dict(attrs)
            if found.get("href"):
                self.links.append(found)


def parse_html_page(text: str, page_url: str, project: str) -> list[Artifact]:
    """A PEP 503 page (with PEP 592 yanks, PEP 658/714 metadata, data-requires-python)."""
    parser = _LinkParser()
    parser.feed(text)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    out = []
    for link in parser.links:
        href = link["href"]
        assert href is not None
        core = link.get("data-core-metadata")
        if core is None:
            core = link.get("data-dist-info-metadata")
        artifact = make_artifact(
            project,
            urljoin(base, href),
            requires_python=link.get("data-requires-python"),
            core_metadata=_metadata_attr(core),
            yanked=(link["data-yanked"] or "") if "data-yanked" in link else None,
        )
        if _belongs(artifact):
            out.append(artifact)
    return out


def parse_json_page(doc: Mapping[str, Any], page_url: str, project: str) -> list[Artifact]:
    """A PEP 691 JSON page."""
    files = doc.get("files")
    if not isinstance(files, list):
        raise IndexError_(
            f"The JSON page {page_url} has no list of files",
            hint="The index answered something that is not a PEP 691 page; " + HINT,
        )
    out = []
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            continue
        core = entry.get("core-metadata", entry.get("dist-info-metadata", False))
        yanked = entry.get("yanked", False)
        size = entry.get("size")
        artifact = make_artifact(
            project,
            urljoin(page_url, entry["url"]),
            hashes={str(k): str(v) for k, v in (entry.get("hashes") or {}).items()},
            requires_python=entry.get("requires-python"),
            core_metadata=_json_core_metadata(core),
            yanked=(yanked if isinstance(yanked, str) else "") if yanked else None,
            size=size if isinstance(size, int) else None,
        )
        if _belongs(artifact):
            out.append(artifact)
    return out


def _json_core_metadata(value: Any) -> Mapping[str, str] | bool:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()} or True
    return bool(value)


def parse_core_metadata(raw: bytes, source: str) -> CoreMetadata:
    """Parse METADATA (an email-header document); `source` names it in errors."""
    from email.parser import Parser

    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    text = raw.decode("utf-8", errors="replace")
    headers = Parser().parsestr(text, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        raise IndexError_(
            f"The metadata of {source} has no Name or Version", hint="The file is damaged; " + HINT
        )
    try:
        reqs = tuple(Requirement(r) for r in headers.get_all("Requires-Dist") or ())
        rp = headers.get("Requires-Python")
        return CoreMetadata(
            name=str(name).strip(),
            version=Version(str(version).strip()),
            requires_dist=reqs,
            requires_python=SpecifierSet(str(rp)) if rp else None,
            raw=text,
        )
    except (InvalidRequirement, InvalidVersion, InvalidSpecifier) as exc:
        raise IndexError_(
            f"The metadata of {source} cannot be parsed: {exc}",
            hint="The wheel's METADATA is invalid; pin another version of the project",
        ) from exc


# --- zip reading over ranges (pure) -------------------------------------------------------

EOCD = b"PK\x05\x06"
ZIP64_LOCATOR = b"PK\x06\x07"
ZIP64_EOCD = b"PK\x06\x06"
CENTRAL = b"PK\x01\x02"
LOCAL = b"PK\x03\x04"
CENTRAL_FMT = "<4s6H3I5H2I"  # 46 bytes
LOCAL_FMT = "<4s5H3I2H"  # 30 bytes


class ZipFormatError(ValueError):
    """The bytes are not the zip structure expected."""


@dataclass(frozen=True)
class ZipDirectory:
    offset: int
    size: int


@dataclass(frozen=True)
class ZipMember:
    name: str
    method: int
    crc: int
    compressed_size: int
    size: int
    local_offset: int


def find_directory(tail: bytes, tail_offset: int) -> tuple[ZipDirectory, int | None]:
    """The central directory's place from the end of a zip.

    Returns the directory (when known) and, for zip64 files whose zip64 end record lies
    outside `tail`, that record's offset (read 56 bytes there and call `zip64_directory`).
    """
    pos = tail.rfind(EOCD)
    if pos < 0 or len(tail) - pos < 22:
        raise ZipFormatError("no end-of-central-directory record")
    _, _, _, _, _, cd_size, cd_offset, _ = struct.unpack("<4s4H2IH", tail[pos : pos + 22])
    loc = pos - 20
    if loc >= 0 and tail[loc : loc + 4] == ZIP64_LOCATOR:
        _, _, record_offset, _ = struct.unpack("<4sIQI", tail[loc : loc + 20])
        rel = record_offset - tail_offset
        if 0 <= rel <= len(tail) - 56:
            return zip64_directory(tail[rel : rel + 56]), None
        return ZipDirectory(0, 0), record_offset
    return ZipDirectory(cd_offset, cd_size), None


def zip64_directory(record: bytes) -> ZipDirectory:
    if record[:4] != ZIP64_EOCD or len(record) < 56:
        raise ZipFormatError("bad zip64 end-of-central-directory record")
    cd_size, cd_offset = struct.unpack("<QQ", record[40:56])
    return ZipDirectory(cd_offset, cd_size)


def central_members(directory: bytes) -> list[ZipMember]:
    out = []
    pos = 0
    while pos + 46 <= len(directory) and directory[pos : pos + 4] == CENTRAL:
        fields = struct.unpack(CENTRAL_FMT, directory[pos : pos + 46])
        method, crc, csize, usize = fields[4], fields[7], fields[8], fields[9]
        name_len, extra_len, comment_len, offset = fields[10], fields[11], fields[12], fields[16]
        name = directory[pos + 46 : pos + 46 + name_len].decode("utf-8", errors="replace")
        extra = directory[pos + 46 + name_len : pos + 46 + name_len + extra_len]
        usize, csize, offset = _zip64_sizes(extra, usize, csize, offset)
        out.append(ZipMember(name, method, crc, csize, usize, offset))
        pos += 46 + name_len + extra_len + comment_len
    return out


def _zip64_sizes(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        kind, length = struct.unpack("<HH", extra[pos : pos + 4])
        if kind == 1:
            values = list(
                struct.unpack(f"<{length // 8}Q", extra[pos + 4 : pos + 4 + length // 8 * 8])
            )
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
        pos += 4 + length
    return usize, csize, offset


def metadata_member(members: Sequence[ZipMember], project: str) -> ZipMember:
    """The top-level `<name>-<version>.dist-info/METADATA`, preferring the project's own."""
    found = [
        m for m in members if m.name.count("/") == 1 and m.name.endswith(".dist-info/METADATA")
    ]
    own = [m for m in found if canonicalize_name(m.name.split("-", 1)[0]) == project]
    if len(own) == 1:
        return own[0]
    if len(found) == 1:
        return found[0]
    raise ZipFormatError(f"{len(found)} .dist-info/METADATA members")


def local_data_offset(header: bytes, member: ZipMember) -> int:
    """Where the member's data starts, from its local header (at least 30 bytes)."""
    fields = struct.unpack(LOCAL_FMT, header[:30])
    if fields[0] != LOCAL:
        raise ZipFormatError(f"no local header for {member.name}")
    name_len: int = fields[9]
    extra_len: int = fields[10]
    return member.local_offset + 30 + name_len + extra_len


def inflate(member: ZipMember, data: bytes) -> bytes:
    """The member's content from its stored or deflated data, CRC-checked."""
    if member.size > MAX_METADATA:
        raise ZipFormatError(f"{member.name} claims {member.size} bytes")
    if member.method == 0:
        content = data[: member.size]
    elif member.method == 8:
        content = zlib.decompressobj(-15).decompress(
            data[: member.compressed_size], member.size + 1
        )
    else:
        raise ZipFormatError(f"compression method {member.method} for {member.name}")
    if len(content) != member.size or zlib.crc32(content) != member.crc:
        raise ZipFormatError(f"{member.name} does not match its CRC")
    return content


# --- the client ------------------------------------------------------------------------


class _Retry(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, reason: str, *, truncated: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.truncated = truncated


class _RangesRefused(Exception):
    """The server answered a range request with the whole file, now in `body`."""

    def __init__(self, body: IO[bytes]) -> None:
        super().__init__("range refused")
        self.body = body


class _Partial:
    """A download in progress: the bytes written so far and their running digests."""

    def __init__(
        self, out: IO[bytes], hashes: Mapping[str, str], progress: Callable[[int], None]
    ) -> None:
        self.out = out
        self.algorithms = ["sha256"] + [
            a for a in hashes if a in hashlib.algorithms_guaranteed and a != "sha256"
        ]
        self.progress = progress
        self.received = 0
        self.hashers = {a: hashlib.new(a) for a in self.algorithms}

    def restart(self) -> None:
        self.progress(-self.received)
        self.out.seek(0)
        self.out.truncate()
        self.hashers = {a: hashlib.new(a) for a in self.algorithms}
        self.received = 0

    def write(self, chunk: bytes) -> None:
        self.out.write(chunk)
        for h in self.hashers.values():
            h.update(chunk)
        self.received += len(chunk)
        self.progress(len(chunk))

    def digests(self) -> dict[str, str]:
        return {a: h.hexdigest() for a, h in self.hashers.items()}


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


class IndexClient:
    """Reads package indexes. Thread-safe; use as a context manager or call close()."""

    def __init__(
        self,
        *,
        cache_dir: Path | None = None,
        reporter: Reporter | None = None,
        concurrency: int = 8,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        page_max_age: float = 0.0,
    ) -> None:
        self.reporter = reporter or Reporter()
        # Seconds a cached page the server gave no freshness for is used without asking it
        # again (the `index-max-age` setting; 0: always revalidate; Cache-Control wins).
        self.page_max_age = page_max_age
        self.concurrency = max(1, concurrency)
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stats = IndexStats()
        self._http_cache = HttpCache(cache_dir / "http" if cache_dir else None)
        self._meta_cache = HttpCache(cache_dir / "metadata" if cache_dir else None)
        # The HTTP client (and its TLS context: some 60 ms of certificate loading) is made at
        # the first request: a warm lock or select that sends none never pays for it.
        self._http: httpx.Client | None = None
        self._http_lock = threading.Lock()
        self._http_args: dict[str, Any] = {
            "timeout": httpx.Timeout(timeout),
            "follow_redirects": True,
            "transport": transport,
            "limits": httpx.Limits(
                max_connections=self.concurrency + 2, max_keepalive_connections=self.concurrency
            ),
            "headers": {"User-Agent": "torchenv"},
        }
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # Pages already read by this client: asked for again (selection, then the lock), they
        # are known, so no request is sent. A client lives for one command.
        self._pages: dict[str, list[Artifact]] = {}

    # lifecycle
    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._http is not None:
            self._http.close()

    @property
    def _client(self) -> httpx.Client:
        with self._http_lock:
            if self._http is None:
                self._http = httpx.Client(**self._http_args)
            return self._http

    def __enter__(self) -> IndexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """fn over items on the worker pool, results in order; the first error is raised."""
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(item) for item in items]
        with self._pool_lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="index")
            pool = self._pool
        return list(pool.map(fn, items))

    # pages
    def project_page(self, index_url: str, project: str, *, fresh: bool = False) -> list[Artifact]:
        """Every file on the project's page; [] when the index does not have the project (404).

        `fresh` reads it past the cache (no revalidation) and replaces what the cache held.
        """
        url = project_url(index_url, project)
        known = None if fresh else self._pages.get(url)
        if known is not None:
            self.stats.bump("cache_hits")
            return list(known)
        page = self._read_page(url, project, fresh=fresh)
        self._pages[url] = page
        return list(page)

    def _read_page(self, url: str, project: str, *, fresh: bool = False) -> list[Artifact]:
        answer = self._get_cached(url, kind="page", accept=PAGE_ACCEPT, fresh=fresh)
        if answer is None:
            return []
        ctype = (answer.headers.get("content-type") or "").split(";")[0].strip().lower()
        if ctype == JSON_TYPE:
            import json

            try:
                doc = json.loads(answer.body)
            except ValueError as exc:
                raise IndexError_(f"The JSON page {url} is not valid JSON", hint=HINT) from exc
            return parse_json_page(doc, answer.url, project)
        return parse_html_page(answer.body.decode("utf-8", errors="replace"), answer.url, project)

    def project_pages(self, index_url: str, projects: Sequence[str]) -> dict[str, list[Artifact]]:
        """project_page for many projects at once (keys are the normalised names)."""
        pages = self.map(lambda p: self.project_page(index_url, p), list(projects))
        return {canonicalize_name(p): page for p, page in zip(projects, pages, strict=True)}

    # metadata
    def metadata(self, artifact: Artifact) -> CoreMetadata:
        """The core metadata of this very file (metadata can differ between wheels of a version)."""
        key = f"{artifact.url}#{artifact.sha256 or ''}"
        cached = self._meta_cache.get(key)
        if cached is not None:
            self.stats.bump("cache_hits")
            return parse_core_metadata(cached.body, artifact.filename)
        raw = self._fetch_metadata(artifact)
        meta = parse_core_metadata(raw, artifact.filename)
        _check_identity(meta, artifact)
        self._meta_cache.put(
            key, CacheEntry(artifact.url, raw, None, None, None, time.time(), None, False)
        )
        return meta

    def metadata_many(self, artifacts: Sequence[Artifact]) -> list[CoreMetadata]:
        return self.map(self.metadata, list(artifacts))

    def _fetch_metadata(self, artifact: Artifact) -> bytes:
        if artifact.core_metadata:
            raw = self._pep658(artifact)
            if raw is not None:
                return raw
        if not artifact.is_wheel:
            raise IndexError_(
                f"{artifact.filename} is not a wheel, so its metadata cannot be read without "
                "building it",
                hint="Use a version of the project that has wheels for this target",
                details={"url": artifact.url},
            )
        return self._metadata_by_ranges(artifact)

    def _pep658(self, artifact: Artifact) -> bytes | None:
        answer = self._get(artifact.metadata_url, kind="metadata", limit=MAX_METADATA)
        if answer.status == 404:
            return None  # advertised but missing: read it from the wheel instead
        _require_ok(answer)
        expected = artifact.core_metadata
        if isinstance(expected, Mapping):
            for algo, digest in expected.items():
                if algo in hashlib.algorithms_guaranteed:
                    actual = hashlib.new(algo, answer.body).hexdigest()
                    if actual != digest.lower():
                        raise IntegrityError(
                            f"The metadata file {artifact.metadata_url} has {algo} {actual}, "
                            f"but the index advertised {digest}",
                            hint="The index or a proxy serves a damaged file; " + HINT,
                            details={"url": artifact.metadata_url},
                        )
        return answer.body

    def _metadata_by_ranges(self, artifact: Artifact) -> bytes:
        reader = _RangeReader(self, artifact.url)
        try:
            return _read_metadata(reader, artifact)
        except _RangesRefused as refused:
            with refused.body:
                return self._metadata_from_whole(artifact, refused.body)
        except ZipFormatError as exc:
            raise IndexError_(
                f"{artifact.url} is not a readable wheel ({exc})",
                hint="The index serves a damaged wheel; pin another version or check the mirror",
                details={"url": artifact.url},
            ) from exc

    def _metadata_from_whole(self, artifact: Artifact, body: IO[bytes]) -> bytes:
        import zipfile

        body.seek(0)
        _check_hash(artifact, _hash_stream(body), artifact.url)
        body.seek(0)
        try:
            with zipfile.ZipFile(body) as zf:
                names = [ZipMember(n, 0, 0, 0, 0, 0) for n in zf.namelist()]
                name = metadata_member(names, artifact.project).name
                if zf.getinfo(name).file_size > MAX_METADATA:
                    raise ZipFormatError(f"{name} claims {zf.getinfo(name).file_size} bytes")
                return zf.read(name)
        except (zipfile.BadZipFile, ZipFormatError, KeyError) as exc:
            raise IndexError_(
                f"{artifact.url} is not a readable wheel ({exc})",
                hint="The index serves a damaged wheel; pin another version or check the mirror",
            ) from exc

    # downloads
    def download(self, artifact: Artifact, dest_dir: Path) -> Path:
        """Stream the file into dest_dir, checking size and hash; nothing partial is left."""
        from torchenv.agent.base.fsutil import Escapes, file_name

        try:
            dest = dest_dir / file_name(artifact.filename)
        except Escapes as exc:
            raise IndexError_(
                f"{artifact.url} names the file {artifact.filename!r}, which is not a file name",
                hint="The index serves a malformed link; " + HINT,
                details={"url": artifact.url},
            ) from exc
        dest_dir.mkdir(parents=True, exist_ok=True)
        if artifact.sha256 and dest.is_file() and sha256_of(dest) == artifact.sha256:
            self.stats.bump("cache_hits")
            return dest
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        task = f"download {artifact.filename}"
        done = [0]

        def progress(n: int) -> None:
            done[0] += n
            self.reporter.progress(task, done[0], artifact.size)

        try:
            digests, size = self.fetch_file(
                artifact.url, tmp, size=artifact.size, hashes=artifact.hashes, progress=progress
            )
            if artifact.size is not None and size != artifact.size:
                raise IntegrityError(
                    f"{artifact.url} has {size} bytes, but the index listed {artifact.size}",
                    hint="The download was cut short or the index is inconsistent; " + HINT,
                    details={"url": artifact.url, "expected": artifact.size, "got": size},
                )
            _check_hash(artifact, digests, artifact.url)
            os.replace(tmp, dest)
            return dest
        finally:
            tmp.unlink(missing_ok=True)

    def fetch_file(
        self,
        url: str,
        part: Path,
        *,
        size: int | None,
        hashes: Mapping[str, str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[dict[str, str], int]:
        """Stream `url` into the file `part`, with retries; returns (digests, bytes).

        A retry resumes with an HTTP range from the bytes already received where the server
        answers 206 (else it starts over). More than `size` bytes (or MAX_WHEEL
        when the size is unknown) stop the transfer: IntegrityError, not retried. `progress`
        gets each chunk's length (negative when a transfer starts over).
        """
        limit = size if size is not None else MAX_WHEEL
        with part.open("wb") as out:
            into = _Partial(out, hashes or {}, progress or (lambda _n: None))
            self._with_retries(url, lambda: self._fetch_into(url, into, limit))
            return into.digests(), into.received

    def _fetch_into(self, url: str, into: _Partial, limit: int) -> None:
        headers = {"Range": f"bytes={into.received}-"} if into.received else {}
        with self._stream(url, kind="download", headers=headers) as response:
            _raise_if_retryable(response)
            status = response.status_code
            if into.received and status == 416:
                into.restart()
                raise _Retry("HTTP 416 on a resumed download")
            if into.received and (
                status != 206
                or _content_range(response.headers.get("content-range"))[0] != into.received
            ):
                into.restart()  # the server sends the whole file again
            _require_ok(_answer_head(response))
            for chunk in _body_chunks(response, self.stats, "download"):
                into.write(chunk)
                if into.received > limit:
                    raise IntegrityError(
                        f"{url} sent more than the {limit} bytes expected; the transfer was "
                        "stopped and the file refused",
                        hint="The file on the index is not the one expected (or never ends); "
                        + HINT,
                        details={"url": url, "expected": limit},
                    )

    def size_of(self, url: str) -> int:
        """A file's size from one HEAD request on the pooled connections (PEP 503 pages list
        no sizes), retried as GETs are; IndexError_ when the server does not say."""

        def once() -> int:
            self.stats.count_request("head")
            try:
                response = self._client.head(url)
            except httpx.TransportError as exc:
                raise _Retry(f"{type(exc).__name__}: {exc}") from exc
            _raise_if_retryable(response)
            length = _int(response.headers.get("content-length"))
            if response.status_code == 200 and length is not None:
                return length
            raise IndexError_(
                f"cannot learn the size of {url} (HTTP {response.status_code}"
                + (")" if response.status_code != 200 else " without a Content-Length)"),
                hint=HINT,
                details={"url": url, "status": response.status_code},
            )

        return self._with_retries(url, once)

    # HTTP plumbing
    def _get_cached(
        self, url: str, *, kind: str, accept: str, fresh: bool = False
    ) -> _Answer | None:
        key = f"{accept}\n{url}"
        if fresh:
            self._http_cache.delete(key)
        entry = None if fresh else self._http_cache.get(key)
        now = time.time()
        if entry is not None and (
            entry.fresh(now) or (kind == "page" and entry.young(now, self.page_max_age))
        ):
            self.stats.bump("cache_hits")
            return _Answer(200, _entry_headers(entry), entry.body, entry.url)
        headers = {"Accept": accept}
        if entry is not None:
            headers.update(entry.conditional_headers())
        answer = self._get(url, kind=kind, headers=headers)
        if answer.status == 304 and entry is not None:
            self.stats.bump("not_modified")
            entry = entry.refreshed(answer.headers, time.time())
            self._http_cache.put(key, entry)
            return _Answer(200, _entry_headers(entry), entry.body, entry.url)
        if answer.status == 404:
            return None
        _require_ok(answer)
        stored = entry_from_response(answer.url, answer.headers, answer.body, time.time())
        if stored is not None:
            self._http_cache.put(key, stored)
        elif entry is not None:
            self._http_cache.delete(key)
        return answer

    def _get(
        self,
        url: str,
        *,
        kind: str,
        headers: Mapping[str, str] | None = None,
        limit: int = MAX_PAGE,
    ) -> _Answer:
        """One GET with retries; any final status is returned (5xx only after the retries).

        A body longer than `limit` is refused (IndexError_), never read to its end.
        """

        def once() -> _Answer:
            with self._stream(url, kind=kind, headers=headers) as response:
                _raise_if_retryable(response)
                head = _answer_head(response)
                body = b"".join(_bounded(_body_chunks(response, self.stats, kind), limit, url))
                return _Answer(head.status, head.headers, body, head.url)

        return self._with_retries(url, once)

    def _stream(
        self, url: str, *, kind: str, headers: Mapping[str, str] | None = None
    ) -> _StreamContext:
        self.stats.count_request(kind)
        return _StreamContext(self._client, url, dict(headers or {}))

    def _with_retries(self, url: str, attempt: Callable[[], T]) -> T:
        last: _Retry | None = None
        for n in range(self.retries + 1):
            if n:
                self.stats.bump("retries")
                time.sleep(self._delay(n))
            try:
                return attempt()
            except _Retry as exc:
                last = exc
        assert last is not None
        tries = self.retries + 1
        if last.truncated:
            raise IntegrityError(
                f"{url} was cut short {tries} times ({last.reason})",
                hint="The server or a proxy drops the connection mid-transfer; " + HINT,
                details={"url": url, "attempts": tries},
            )
        raise IndexError_(
            f"Fetching {url} failed after {tries} attempts: {last.reason}",
            hint=HINT,
            details={"url": url, "attempts": tries, "reason": last.reason},
        )

    def _delay(self, attempt: int) -> float:
        base: float = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        import random

        return base * (0.5 + random.random() / 2)  # jitter spreads concurrent retries


class _StreamContext:
    """client.stream() whose transport failures become _Retry."""

    def __init__(self, client: httpx.Client, url: str, headers: dict[str, str]) -> None:
        self._url = url
        self._cm = client.stream("GET", url, headers=headers)

    def __enter__(self) -> httpx.Response:
        try:
            return self._cm.__enter__()
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        except httpx.InvalidURL as exc:
            raise IndexError_(
                f"{self._url!r} is not a URL torchenv can fetch ({exc})", hint=HINT
            ) from exc

    def __exit__(self, *exc: Any) -> None:
        # closing a broken connection may fail; the attempt's outcome is already known
        with contextlib.suppress(httpx.TransportError):
            self._cm.__exit__(*exc)


def _body_chunks(response: httpx.Response, stats: IndexStats, kind: str) -> Iterator[bytes]:
    seen = 0
    try:
        for chunk in response.iter_bytes():  # decoded content, as it arrives (resumable)
            wire = response.num_bytes_downloaded
            stats.count_bytes(kind, wire - seen)
            seen = wire
            yield chunk
        stats.count_bytes(kind, response.num_bytes_downloaded - seen)
    except httpx.TransportError as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}", truncated=True) from exc


def _bounded(chunks: Iterator[bytes], limit: int, url: str) -> Iterator[bytes]:
    """The chunks, stopping with IndexError_ once they pass `limit` bytes."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            from torchenv.agent.base.limits import size_text

            raise IndexError_(
                f"{url} answered more than {size_text(limit)}, the most torchenv reads of "
                "such an answer; it was not read further",
                hint="The index (or a proxy in front of it) answers something that is not a "
                "package index; " + HINT,
                details={"url": url, "limit": limit},
            )
        yield chunk


def _raise_if_retryable(response: httpx.Response) -> None:
    if response.status_code >= 500 or response.status_code == 429:
        raise _Retry(f"HTTP {response.status_code}")


def _answer_head(response: httpx.Response) -> _Answer:
    headers = {k.lower(): v for k, v in response.headers.items()}
    return _Answer(response.status_code, headers, b"", str(response.url))


def _entry_headers(entry: CacheEntry) -> dict[str, str]:
    return {"content-type": entry.content_type} if entry.content_type else {}


def _require_ok(answer: _Answer) -> None:
    if 200 <= answer.status < 300:
        return
    raise IndexError_(
        f"{answer.url} answered HTTP {answer.status}",
        hint=HINT,
        details={"url": answer.url, "status": answer.status},
    )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _check_hash(artifact: Artifact, actual: Mapping[str, str], url: str) -> None:
    for algo, expected in artifact.hashes.items():
        got = actual.get(algo)
        if got is not None and got != expected.lower():
            raise IntegrityError(
                f"{url} has {algo} {got}, but the index advertised {expected}",
                hint="The file was damaged or replaced on the index or a proxy; " + HINT,
                details={"url": url, "algorithm": algo, "expected": expected, "got": got},
            )


def _check_identity(meta: CoreMetadata, artifact: Artifact) -> None:
    if canonicalize_name(meta.name) != artifact.project or (
        artifact.version is not None and meta.version != artifact.version
    ):
        raise IndexError_(
            f"The metadata of {artifact.filename} describes {meta.name} {meta.version}",
            hint="The index serves metadata that does not belong to this file; " + HINT,
            details={"url": artifact.url},
        )


def _hash_stream(body: IO[bytes]) -> dict[str, str]:
    digest = hashlib.sha256()
    for block in iter(lambda: body.read(CHUNK), b""):
        digest.update(block)
    return {"sha256": digest.hexdigest()}


def sha256_of(path: Path) -> str:
    """The sha256 of a file on disk (hex)."""
    with path.open("rb") as fh:
        return _hash_stream(fh)["sha256"]


# --- range reads --------------------------------------------------------------------------


class _RangeReader:
    """Byte ranges of one remote file, keeping what was read."""

    def __init__(self, client: IndexClient, url: str) -> None:
        self.client = client
        self.url = url
        self.size: int | None = None
        self.chunks: list[tuple[int, bytes]] = []

    def cached(self, start: int, length: int) -> bytes | None:
        for offset, data in self.chunks:
            if offset <= start and start + length <= offset + len(data):
                return data[start - offset : start - offset + length]
        return None

    def read(self, start: int, length: int) -> bytes:
        hit = self.cached(start, length)
        if hit is not None:
            return hit
        if not 0 < length <= MAX_ZIP_DIRECTORY or start < 0:
            raise ZipFormatError(f"a zip structure claims {length} bytes at offset {start}")
        offset, data = self._fetch(f"bytes={start}-{start + length - 1}", length)
        self.chunks.append((offset, data))
        return data[start - offset : start - offset + length]

    def tail(self, length: int) -> tuple[int, bytes]:
        offset, data = self._fetch(f"bytes=-{length}", length)
        self.chunks.append((offset, data))
        return offset, data

    def _fetch(self, spec: str, length: int) -> tuple[int, bytes]:
        client = self.client
        return client._with_retries(self.url, lambda: self._fetch_once(spec, length))

    def _fetch_once(self, spec: str, length: int) -> tuple[int, bytes]:
        client = self.client
        with client._stream(self.url, kind="range", headers={"Range": spec}) as response:
            _raise_if_retryable(response)
            status = response.status_code
            if status == 206:
                first, total = _content_range(response.headers.get("content-range"))
                if first is not None:
                    self.size = total
                    chunks = _body_chunks(response, client.stats, "range")
                    body = b"".join(_bounded(chunks, length, self.url))
                    return first, body
            if status in (200, 206, 416):
                raise _RangesRefused(self._whole(response, status))
            _require_ok(_answer_head(response))
            raise AssertionError("unreachable")

    def _whole(self, response: httpx.Response, status: int) -> IO[bytes]:
        client = self.client
        size = _int(response.headers.get("content-length"))
        host = urlsplit(self.url).netloc
        client.reporter.warning(
            f"{host} does not answer range requests; downloading "
            f"{self.url.rsplit('/', 1)[-1]} whole"
            + (f" ({size / 1e6:.1f} MB)" if size else "")
            + " to read its metadata"
        )
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=32 * CHUNK)  # noqa: SIM115
        try:
            if status != 200:
                response.close()
                with client._stream(self.url, kind="range") as full:
                    _raise_if_retryable(full)
                    _require_ok(_answer_head(full))
                    for chunk in _bounded(
                        _body_chunks(full, client.stats, "range"), MAX_WHEEL, self.url
                    ):
                        spool.write(chunk)
            else:
                for chunk in _bounded(
                    _body_chunks(response, client.stats, "range"), MAX_WHEEL, self.url
                ):
                    spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        return spool


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from `bytes first-last/total`."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    first, _, _ = span.partition("-")
    try:
        return int(first), (int(total) if total.strip() != "*" else None)
    except ValueError:
        return None, None


def _read_metadata(reader: _RangeReader, artifact: Artifact) -> bytes:
    """METADATA from the zip's end: tail, central directory, then the member itself."""
    tail_offset, tail = reader.tail(TAIL_BYTES)
    directory, record_at = find_directory(tail, tail_offset)
    if record_at is not None:
        directory = zip64_directory(reader.read(record_at, 56))
    members = central_members(reader.read(directory.offset, directory.size))
    member = metadata_member(members, artifact.project)
    guess = 30 + len(member.name.encode()) + member.compressed_size + METADATA_SLACK
    if reader.size is not None:
        guess = min(guess, reader.size - member.local_offset)
    blob = reader.read(member.local_offset, guess)
    start = local_data_offset(blob, member) - member.local_offset
    if start + member.compressed_size > len(blob):
        blob = reader.read(member.local_offset, start + member.compressed_size)
    return inflate(member, blob[start : start + member.compressed_size])


__all__ = [
    "Artifact",
    "CoreMetadata",
    "IndexClient",
    "IndexStats",
    "make_artifact",
    "parse_core_metadata",
    "parse_html_page",
    "parse_json_page",
    "project_url",
    "sha256_of",
]
