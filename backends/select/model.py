"""What selection takes and gives: the request, each candidate and the selection."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from torchenv.backends.vocabulary import Kind, backend_kind, family_index_url


class InvalidRequest(ValueError):
    """A requirement string or channel that cannot be understood."""


class Flag(str, enum.Enum):
    MINOR_VERSION_COMPAT = "minor-version-compat"
    PTX_ONLY = "ptx-only"
    INFERRED = "inferred"
    CC_UNKNOWN = "cc-unknown"
    FORCED = "forced"


@dataclass(frozen=True)
class Request:
    """What to select for: the requirements, the channel, a backend, and the index URLs."""

    requirements: tuple[str, ...] = ("torch",)
    channel: str = "stable"
    backend: str | None = None  # None or "auto": choose
    torch_index_url: str = "https://download.pytorch.org/whl"
    default_index_url: str = "https://pypi.org/simple"


@dataclass(frozen=True)
class Candidate:
    """One (torch release, backend) considered: whether it fits, why, what would unlock it."""

    torch: str
    backend: str
    ok: bool
    reasons: tuple[str, ...]
    flags: tuple[Flag, ...] = ()
    unlock: tuple[str, ...] = ()  # what would make this candidate usable
    host_ok: bool = True  # runs on the host, whatever the user's constraints say
    request_ok: bool = True  # allowed by the user's constraints
    rank: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    index_url: str | None = field(default=None, compare=False)  # where this build comes from
    unavailable: str | None = None  # why the index does not have it (when that is why not)

    @property
    def accelerated(self) -> bool:
        return backend_kind(self.backend) not in (Kind.CPU, None)

    def to_json(self) -> dict[str, Any]:
        return {
            "torch": self.torch,
            "backend": self.backend,
            "ok": self.ok,
            "reasons": list(self.reasons),
            "flags": [f.value for f in self.flags],
            "index_url": self.index_url,
        }


@dataclass(frozen=True)
class Selection:
    """The chosen build (or why none fits), with every candidate considered."""

    ok: bool
    backend: str | None
    torch: str | None
    index_url: str | None
    channel: str
    platform: str | None
    python: str
    candidates: tuple[Candidate, ...]
    reasons: tuple[str, ...] = ()  # why the chosen candidate, or why nothing fits
    warnings: tuple[str, ...] = ()
    unlock: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()
    skipped: tuple[str, ...] = ()  # better-ranked builds the index does not hold, and why

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "backend": self.backend,
            "torch": self.torch,
            "index_url": self.index_url,
            "channel": self.channel,
            "platform": self.platform,
            "python": self.python,
            "flags": [f.value for f in self.flags],
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "unlock": list(self.unlock),
            "skipped": list(self.skipped),
            "candidates": [c.to_json() for c in self.candidates],
        }


def index_url(backend: str, channel: str, request: Request, platform: str | None) -> str:
    return family_index_url(
        backend,
        channel,
        macos=(platform or "").startswith("macos"),
        torch_index=request.torch_index_url,
        default_index=request.default_index_url,
    )
