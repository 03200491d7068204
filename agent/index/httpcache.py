"""An on-disk HTTP cache: ETag/Last-Modified revalidation, Cache-Control, atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from torchenv.agent.base.fsutil import read_bounded, write_atomic
from torchenv.agent.base.limits import MAX_CACHE_ENTRY, TooLarge

MAGIC = b"torchenv-http-cache 1\n"


@dataclass(frozen=True)
class CachePolicy:
    """What a response's Cache-Control allows."""

    store: bool
    max_age: float | None  # seconds the entry is fresh without asking the server
    no_cache: bool  # always revalidate before use


@dataclass(frozen=True)
class CacheEntry:
    """One stored response: its body, validators (ETag, Last-Modified) and freshness."""

    url: str  # the final URL (after redirects): relative links resolve against it
    body: bytes
    content_type: str | None
    etag: str | None
    last_modified: str | None
    stored_at: float
    max_age: float | None
    no_cache: bool

    def fresh(self, now: float) -> bool:
        if self.no_cache or self.max_age is None:
            return False
        return now < self.stored_at + self.max_age

    def young(self, now: float, max_age: float) -> bool:
        """Fresh by the reader's own policy: stored less than `max_age` seconds ago, and the
        server set no freshness of its own (no max-age, no no-cache)."""
        if self.no_cache or self.max_age is not None:
            return False
        return self.stored_at <= now < self.stored_at + max_age

    def until(self, max_age: float) -> float | None:
        """Until when a reader keeping pages `max_age` seconds uses this entry unasked: the
        server's max-age wins where shorter; None for no-cache."""
        if self.no_cache:
            return None
        return self.stored_at + (max_age if self.max_age is None else min(self.max_age, max_age))

    @property
    def revalidatable(self) -> bool:
        return bool(self.etag or self.last_modified)

    def conditional_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers

    def refreshed(self, headers: Mapping[str, str], now: float) -> CacheEntry:
        """The entry after a 304: new validators and freshness, same body."""
        policy = cache_policy(headers)
        return replace(
            self,
            etag=headers.get("etag", self.etag),
            last_modified=headers.get("last-modified", self.last_modified),
            stored_at=now - _age(headers),
            max_age=policy.max_age if "cache-control" in headers else self.max_age,
            no_cache=policy.no_cache if "cache-control" in headers else self.no_cache,
        )


def cache_policy(headers: Mapping[str, str]) -> CachePolicy:
    """Parse Cache-Control (keys of `headers` are lower-case, as httpx gives them)."""
    directives: dict[str, str] = {}
    for part in headers.get("cache-control", "").split(","):
        key, _, value = part.strip().partition("=")
        if key:
            directives[key.lower()] = value.strip().strip('"')
    max_age: float | None = None
    if "max-age" in directives:
        try:
            max_age = max(0.0, float(directives["max-age"]))
        except ValueError:
            max_age = None
    return CachePolicy(
        store="no-store" not in directives,
        max_age=max_age,
        no_cache="no-cache" in directives,
    )


def entry_from_response(
    url: str, headers: Mapping[str, str], body: bytes, now: float
) -> CacheEntry | None:
    """The entry to store for a 200 response, or None when it must or need not be kept."""
    policy = cache_policy(headers)
    etag = headers.get("etag")
    last_modified = headers.get("last-modified")
    if not policy.store:
        return None
    if not (etag or last_modified) and not policy.max_age:
        return None  # could never be used: not fresh and not revalidatable
    return CacheEntry(
        url=url,
        body=body,
        content_type=headers.get("content-type"),
        etag=etag,
        last_modified=last_modified,
        stored_at=now - _age(headers),
        max_age=policy.max_age,
        no_cache=policy.no_cache,
    )


def _age(headers: Mapping[str, str]) -> float:
    try:
        return max(0.0, float(headers.get("age", "0")))
    except ValueError:
        return 0.0


def cache_key(url: str, accept: str) -> str:
    """The key of URL's answer read with this Accept header."""
    return f"{accept}\n{url}"


class HttpCache:
    """Entries under `root/<2 hex>/<sha256 of key>`; `root=None` keeps nothing."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def _path(self, key: str) -> Path | None:
        if self.root is None:
            return None
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.root / digest[:2] / digest

    def holds(self, key: str) -> bool:
        """Whether an entry is stored under `key` (one stat; it may still be unreadable)."""
        path = self._path(key)
        return path is not None and path.is_file()

    def get(self, key: str) -> CacheEntry | None:
        """The stored entry, or None when missing or unreadable (a corrupt entry is a miss)."""
        path = self._path(key)
        if path is None:
            return None
        try:
            raw = read_bounded(path, MAX_CACHE_ENTRY, "cache entry")
        except FileNotFoundError:
            return None
        except (OSError, TooLarge):
            raw = b""
        entry = _decode(raw)
        if entry is None:
            self.delete(key)  # damaged (or not ours): drop it, the next answer replaces it
        return entry

    def put(self, key: str, entry: CacheEntry) -> None:
        path = self._path(key)
        if path is None:
            return
        header = {
            "url": entry.url,
            "content_type": entry.content_type,
            "etag": entry.etag,
            "last_modified": entry.last_modified,
            "stored_at": entry.stored_at,
            "max_age": entry.max_age,
            "no_cache": entry.no_cache,
            "sha256": hashlib.sha256(entry.body).hexdigest(),
            "length": len(entry.body),
        }
        data = MAGIC + json.dumps(header).encode() + b"\n" + entry.body
        try:
            write_atomic(path, data)
        except OSError:
            return  # a cache that cannot be written only costs a later refetch

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path is not None:
            with contextlib.suppress(OSError):  # as in put(): only costs a later refetch
                path.unlink(missing_ok=True)


def _decode(raw: bytes) -> CacheEntry | None:
    if not raw.startswith(MAGIC):
        return None
    head, sep, body = raw[len(MAGIC) :].partition(b"\n")
    if not sep:
        return None
    try:
        header = json.loads(head)
        if not isinstance(header, dict):
            return None
        if header["length"] != len(body) or header["sha256"] != hashlib.sha256(body).hexdigest():
            return None
        return CacheEntry(
            url=str(header["url"]),
            body=body,
            content_type=header["content_type"],
            etag=header["etag"],
            last_modified=header["last_modified"],
            stored_at=float(header["stored_at"]),
            max_age=None if header["max_age"] is None else float(header["max_age"]),
            no_cache=bool(header["no_cache"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def now() -> float:
    return time.time()
