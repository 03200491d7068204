"""HTTP for the index client: retries with backoff, the cache, bounded streamed bodies."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import httpx

from torchenv.agent.base.errors import IndexError_, IntegrityError
from torchenv.agent.base.limits import MAX_PAGE
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.index.bodies import ACCEPT_ENCODING, HINT, Retry, body_chunks, bounded
from torchenv.agent.index.httpcache import CacheEntry, HttpCache, cache_key, entry_from_response
from torchenv.agent.index.lazytls import LazyTLSTransport, environment_names_a_proxy, new_client
from torchenv.agent.index.model import Artifact, IndexStats
from torchenv.agent.index.partial import Partial

if TYPE_CHECKING:  # imported where used: importing the client stays cheap
    from concurrent.futures import Future, ThreadPoolExecutor

CHUNK = 1 << 20

T = TypeVar("T")
R = TypeVar("R")


class _RangesRefused(Exception):
    """The server answered a range request with the whole file, now in `body`."""

    def __init__(self, body: IO[bytes]) -> None:
        super().__init__("range refused")
        self.body = body


@dataclass(frozen=True)
class _Answer:
    """One HTTP answer: status, headers (names lower-cased), the whole body, final URL."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


class _StreamContext:
    """client.stream() whose transport failures become Retry."""

    def __init__(self, client: httpx.Client, url: str, headers: dict[str, str]) -> None:
        self._url = url
        self._cm = client.stream("GET", url, headers=headers)

    def __enter__(self) -> httpx.Response:
        try:
            return self._cm.__enter__()
        except httpx.TransportError as exc:
            raise Retry(f"{type(exc).__name__}: {exc}") from exc
        except httpx.InvalidURL as exc:
            raise IndexError_(
                f"{self._url!r} is not a URL torchenv can fetch ({exc})", hint=HINT
            ) from exc

    def __exit__(self, *exc: Any) -> None:
        # closing a broken connection may fail; the attempt's outcome is already known
        with contextlib.suppress(httpx.TransportError):
            self._cm.__exit__(*exc)


def _raise_if_retryable(response: httpx.Response) -> None:
    if response.status_code >= 500 or response.status_code == 429:
        raise Retry(f"HTTP {response.status_code}")


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


class HttpSession:
    """The client's HTTP side: a pooled httpx client, the caches, retries, bounded bodies."""

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
        limits = httpx.Limits(
            max_connections=self.concurrency + 2, max_keepalive_connections=self.concurrency
        )
        # The TLS context too is made at the first https request; but httpx reads the
        # environment's proxies only for transports it makes itself, so with a proxy set
        # it makes them (one per proxy, NO_PROXY honoured), as any httpx client does.
        if transport is None and not environment_names_a_proxy():
            transport = LazyTLSTransport(limits)
        self._http_args: dict[str, Any] = {
            "timeout": httpx.Timeout(timeout),
            "follow_redirects": True,
            "transport": transport,
            "limits": limits,
            "headers": {"User-Agent": "torchenv", "Accept-Encoding": ACCEPT_ENCODING},
        }
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # Pages read (and being read ahead) by this client, which lives for one command.
        self._pages: dict[str, list[Artifact]] = {}
        self._ahead: dict[str, Future[list[Artifact]]] = {}
        # (URL, until when what this client used of it stays young: `_page_read`) for each
        # page read: a lock kept for reuse lasts as long as the first (pipeline/locking.py).
        self.page_reads: list[tuple[str, float | None]] = []

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
                self._http = new_client(self._http_args)
            return self._http

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """fn over items on the worker pool, results in order; the first error is raised."""
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(item) for item in items]
        return list(self._workers().map(fn, items))

    def _workers(self) -> ThreadPoolExecutor:
        from concurrent.futures import ThreadPoolExecutor  # loaded at the first fan-out

        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="index")
            return self._pool

    def _fetch_into(self, url: str, into: Partial, limit: int) -> None:
        """One attempt of a download; a write that failed is its failure, whatever stopped
        it (a full disk is said as itself, not as the network's failure after it, and is
        not retried)."""
        try:
            self._fetch_once(url, into, limit)
        except Exception as exc:
            into.settle(exc)
            raise

    def _fetch_once(self, url: str, into: Partial, limit: int) -> None:
        headers = {"Range": f"bytes={into.received}-"} if into.received else {}
        with self._stream(url, kind="download", headers=headers) as response:
            _raise_if_retryable(response)
            status = response.status_code
            if into.received and status == 416:
                into.restart()
                raise Retry("HTTP 416 on a resumed download")
            if into.received and (
                status != 206
                or _content_range(response.headers.get("content-range"))[0] != into.received
            ):
                into.restart()  # the server sends the whole file again
            _require_ok(_answer_head(response))
            for chunk in body_chunks(response, self.stats, "download"):
                into.write(chunk)
                if into.received > limit:
                    raise IntegrityError(
                        f"{url} sent more than the {limit} bytes expected; the transfer was "
                        "stopped and the file refused",
                        hint="The file on the index is not the one expected (or never ends); "
                        + HINT,
                        details={"url": url, "expected": limit},
                    )

    # HTTP plumbing
    def _get_cached(
        self, url: str, *, kind: str, accept: str, fresh: bool = False
    ) -> _Answer | None:
        key = cache_key(url, accept)
        if fresh:
            self._http_cache.delete(key)
        entry = None if fresh else self._http_cache.get(key)
        now = time.time()
        if entry is not None and (
            entry.fresh(now) or (kind == "page" and entry.young(now, self.page_max_age))
        ):
            self.stats.bump("cache_hits")
            self._page_read(kind, url, entry)
            return _Answer(200, _entry_headers(entry), entry.body, entry.url)
        headers = {"Accept": accept}
        if entry is not None:
            headers.update(entry.conditional_headers())
        answer = self._get(url, kind=kind, headers=headers)
        if answer.status == 304 and entry is not None:
            self.stats.bump("not_modified")
            entry = entry.refreshed(answer.headers, time.time())
            self._http_cache.put(key, entry)
            self._page_read(kind, url, entry)
            return _Answer(200, _entry_headers(entry), entry.body, entry.url)
        if answer.status == 404:
            self._page_read(kind, url, None, now)  # an answer too, kept by no cache
            return None
        _require_ok(answer)
        stored = entry_from_response(answer.url, answer.headers, answer.body, time.time())
        self._page_read(kind, url, stored)
        if stored is not None:
            self._http_cache.put(key, stored)
        elif entry is not None:
            self._http_cache.delete(key)
        return answer

    def _page_read(self, kind: str, url: str, entry: CacheEntry | None, at: float = 0) -> None:
        """Note until when a page read stays young (None: no-cache or no-store); `at`: a 404
        then, young for index-max-age."""
        if kind == "page":
            young = None if entry is None else entry.until(self.page_max_age)
            self.page_reads.append((url, at + self.page_max_age if at else young))

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
                body = b"".join(bounded(body_chunks(response, self.stats, kind), limit, url))
                return _Answer(head.status, head.headers, body, head.url)

        return self._with_retries(url, once)

    def _stream(
        self, url: str, *, kind: str, headers: Mapping[str, str] | None = None
    ) -> _StreamContext:
        self.stats.count_request(kind)
        return _StreamContext(self._client, url, dict(headers or {}))

    def _with_retries(self, url: str, attempt: Callable[[], T]) -> T:
        last: Retry | None = None
        for n in range(self.retries + 1):
            if n:
                self.stats.bump("retries")
                time.sleep(self._delay(n))
            try:
                return attempt()
            except Retry as exc:
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
