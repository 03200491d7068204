"""The index's data: a listed file (Artifact), a wheel's core metadata, request counts."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from packaging.tags import Tag
from packaging.version import Version

if TYPE_CHECKING:  # imported where used: `import torchenv.agent.index.client` stays cheap
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet


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
    """A wheel's METADATA: name, version, Requires-Dist and Requires-Python, and the text."""

    name: str
    version: Version
    requires_dist: tuple[Requirement, ...]
    requires_python: SpecifierSet | None
    raw: str


@dataclass
class KindStats:
    """Requests and body bytes for one kind of request (page, metadata, range, download)."""

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
