"""An HTTP body as the index client reads it: decoded as it arrives, counted, bounded."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from torchenv.agent.base.errors import IndexError_
from torchenv.agent.base.limits import size_text
from torchenv.agent.index.model import IndexStats

HINT = (
    "Check the index URL and mirror settings (`torchenv config` shows index-url and "
    "torch-index-url) and this host's network connection"
)


class _Retry(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, reason: str, *, truncated: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.truncated = truncated


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
            raise IndexError_(
                f"{url} answered more than {size_text(limit)}, the most torchenv reads of "
                "such an answer; it was not read further",
                hint="The index (or a proxy in front of it) answers something that is not a "
                "package index; " + HINT,
                details={"url": url, "limit": limit},
            )
        yield chunk
