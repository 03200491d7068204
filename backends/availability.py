"""What the configured index holds: the torch page of each backend, as data for select()."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torchenv.backends.vocabulary import dotted


def version_key(version: str) -> tuple[Any, ...]:
    """Order torch versions without packaging (backends stays light): 2.14.1 > 2.14.0 >
    2.14.0rc1; dev and rc suffixes sort before the release they lead to."""
    public = version.split("+", 1)[0]
    head = ""
    for i, ch in enumerate(public):
        if not (ch.isdigit() or ch == "."):
            head, tail = public[:i].rstrip("."), public[i:]
            break
    else:
        head, tail = public, ""
    release = tuple(int(p) for p in head.split(".") if p.isdigit())
    return (release, 0 if tail else 1, tail)


@dataclass(frozen=True)
class Listed:
    """One (torch release, platform, backend) the page lists, with its Pythons and versions."""

    torch: str  # "2.14"
    platform: str  # a catalog platform key
    backend: str  # the wheel's local label, or the page's backend for unlabelled wheels
    python: tuple[str, ...]  # "3.12"
    python_ft: tuple[str, ...]  # free-threaded builds ("3.14" for cp314t)
    versions: tuple[str, ...]  # "2.14.1+cu130"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Listed:
        """A row as catalog_refresh.summarize() writes it."""
        return cls(
            torch=str(row["torch"]),
            platform=str(row["platform"]),
            backend=str(row["backend"]),
            python=tuple(row.get("python", ())),
            python_ft=tuple(row.get("python_ft", ())),
            versions=tuple(row.get("versions", ())),
        )

    def serves(self, python: str, free_threaded: bool) -> bool:
        return python in (self.python_ft if free_threaded else self.python)

    @property
    def newest(self) -> str:
        return max(self.versions, key=version_key) if self.versions else self.torch


@dataclass(frozen=True)
class IndexListing:
    """The torch page of one index URL (…/whl/cu130, or the default index on macOS)."""

    url: str
    listed: tuple[Listed, ...] = ()
    found: bool = True  # False: the index has no torch page there (404, or no wheels)
    error: str | None = None  # set when the page could not be read (and nothing was cached)
    age: float | None = None  # seconds since the page was read, when it is a kept copy

    @property
    def known(self) -> bool:
        """Whether the listing says anything (an unreadable page says nothing)."""
        return self.error is None

    def rows(self, platform: str, backend: str) -> list[Listed]:
        return [r for r in self.listed if r.platform == platform and r.backend == backend]

    def newest_for(
        self, platform: str, backend: str, python: str, free_threaded: bool
    ) -> Listed | None:
        """The newest release the page has for this platform, backend and interpreter."""
        rows = [r for r in self.rows(platform, backend) if r.serves(python, free_threaded)]
        return max(rows, key=lambda r: dotted(r.torch)) if rows else None

    @property
    def age_text(self) -> str:
        if self.age is None:
            return ""
        return f" (as read {show_age(self.age)} ago)"


def show_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


@dataclass(frozen=True)
class Availability:
    """Index listings by URL; select() checks each candidate against its index's listing."""

    listings: Mapping[str, IndexListing] = field(default_factory=dict)

    def get(self, url: str) -> IndexListing | None:
        return self.listings.get(url.rstrip("/"))

    def with_listings(self, listings: Iterable[IndexListing]) -> Availability:
        merged = dict(self.listings)
        merged.update({listing.url.rstrip("/"): listing for listing in listings})
        return Availability(merged)

    def rows(self) -> list[dict[str, Any]]:
        """Every listed row (in catalog_refresh's form), for adding releases the catalog lacks."""
        return [
            {
                "torch": r.torch,
                "platform": r.platform,
                "backend": r.backend,
                "python": list(r.python),
                "python_ft": list(r.python_ft),
                "versions": list(r.versions),
            }
            for listing in self.listings.values()
            for r in listing.listed
        ]


def listed_backend(backend: str, platform: str) -> str:
    """The backend a page's wheel stands for: macOS wheels are Apple's builds whatever the page."""
    if platform == "macos-arm64":
        return "mps"
    if platform == "macos-x86_64":
        return "cpu"
    return backend
