"""The package-index client: pages (PEP 503/691), metadata (PEP 658/714 or HTTP ranges), downloads.

Concurrency: one synchronous `httpx.Client` (thread-safe, pooled connections) shared by a
thread pool of `concurrency` workers; `metadata_many` and `project_pages` fan out on it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from packaging.utils import (
    canonicalize_name,
)

from torchenv.agent.base.errors import IndexError_, IntegrityError
from torchenv.agent.base.limits import MAX_METADATA, MAX_WHEEL
from torchenv.agent.index.httpcache import CacheEntry, cache_key
from torchenv.agent.index.lazytls import LazyTLSTransport

if TYPE_CHECKING:  # imported where used: `import torchenv.agent.index.client` stays cheap
    pass
from torchenv.agent.index.bodies import HINT
from torchenv.agent.index.model import Artifact, CoreMetadata, IndexStats
from torchenv.agent.index.pages import (
    JSON_TYPE,
    PAGE_ACCEPT,
    make_artifact,
    parse_core_metadata,
    parse_html_page,
    parse_json_page,
    project_url,
)
from torchenv.agent.index.partial import Partial
from torchenv.agent.index.transport import (
    CHUNK,
    HttpSession,
    _RangesRefused,
    _require_ok,
)

T = TypeVar("T")
R = TypeVar("R")


class IndexClient(HttpSession):
    """Reads package indexes. Thread-safe; use as a context manager or call close()."""

    def __enter__(self) -> IndexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._pool_lock:
            for untaken in self._ahead.values():
                untaken.cancel()  # not started yet: never sent
            self._ahead.clear()
        super().close()

    def must_ask(self, url: str, accept: str) -> bool:
        """Whether reading URL certainly sends a request: the cache holds no answer for it."""
        return not self._http_cache.holds(cache_key(url, accept))

    def ready(self, url: str) -> None:
        """Make the HTTP client and its transport for URL's scheme in the calling thread, now:
        httpcore's import and, for https, the TLS context (20-60 ms of CPU). A read started
        ahead on a worker then sends its request at once, instead of doing that work while it
        shares the interpreter with its caller's."""
        transport = self._http_args["transport"]  # the client's: None where httpx makes it
        if isinstance(transport, LazyTLSTransport):
            self._client  # noqa: B018 - made here, as the transport is
            transport.ready(urlsplit(url).scheme)

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
        with self._pool_lock:
            ahead = None if fresh else self._ahead.pop(url, None)
        if ahead is not None and not ahead.cancel():
            page = ahead.result()  # its answer, or its error raised as reading it now would
        else:  # not read ahead, or not started yet (then it never is: read here instead)
            page = self._read_page(url, project, fresh=fresh)
        self._pages[url] = page
        return list(page)

    def read_ahead(self, index_url: str, projects: Sequence[str]) -> None:
        """Start reading these pages in the background, for a caller that will certainly ask
        for each of them (project_page then takes the answer, or raises its error, once): pages
        asked for one after another are read in one round trip. Pages already read are not."""
        if self.concurrency == 1:
            return
        workers = self._workers()
        urls = {project_url(index_url, p): p for p in projects}
        with self._pool_lock:
            todo = [u for u in urls if u not in self._pages and u not in self._ahead]
        if any(self.must_ask(url, PAGE_ACCEPT) for url in todo):
            self.ready(index_url)  # here: the workers' first request then goes out at once
        for url in todo:
            with self._pool_lock:
                if url not in self._pages and url not in self._ahead:
                    self._ahead[url] = workers.submit(self._read_page, url, urls[url])

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
        # Only for wheels without a metadata file (HTML-only mirrors): loaded when one is met.
        from torchenv.agent.index.ranges import _RangeReader, _read_metadata
        from torchenv.agent.index.zipmeta import ZipFormatError

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

        from torchenv.agent.index.zipmeta import ZipFormatError, ZipMember, metadata_member

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
            into = Partial(out, hashes or {}, progress or (lambda _n: None))
            try:
                self._with_retries(url, lambda: self._fetch_into(url, into, limit))
                return into.digests(), into.received
            finally:
                into.close()


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
