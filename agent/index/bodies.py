"""An HTTP body as the index client reads it: decoded as it arrives, counted, bounded."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import httpx

from torchenv.agent.base.errors import IndexError_
from torchenv.agent.base.limits import size_text
from torchenv.agent.index.model import IndexStats

# The client asks for gzip only (ACCEPT_ENCODING) and inflates it here, at most INFLATE_STEP
# bytes at a time: httpx inflates each read whole, so a few hundred KiB of a crafted page
# could become gigabytes before any bound on the body saw them.
ACCEPT_ENCODING = "gzip"
INFLATE_STEP = 1 << 20

HINT = (
    "Check the index URL and mirror settings (`torchenv config` shows index-url and "
    "torch-index-url) and this host's network connection"
)


class Retry(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, reason: str, *, truncated: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.truncated = truncated


def decoded(response: httpx.Response) -> Iterator[bytes]:
    """The body as it arrives, decoded: gzip inflated in steps of at most INFLATE_STEP; none,
    an encoding the client did not ask for (a server's own choice) or a body already read
    (a test's answer made in memory) as httpx decodes it."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("gzip", "x-gzip") or response.is_stream_consumed:
        yield from response.iter_bytes()
        return
    inflate, received = zlib.decompressobj(16 + zlib.MAX_WBITS), 0
    for raw in response.iter_raw():
        received, data = received + len(raw), raw
        while not inflate.eof:  # output zlib still holds comes with no input left
            try:
                piece = inflate.decompress(data, INFLATE_STEP)
            except zlib.error as exc:
                raise Retry(f"the gzip-encoded answer is damaged ({exc})") from exc
            data = inflate.unconsumed_tail
            if piece:
                yield piece
            elif not data:
                break
    if received and not inflate.eof:  # no body at all (a 304, a HEAD) has nothing to end
        raise Retry("the gzip-encoded answer stops before its end", truncated=True)


def body_chunks(response: httpx.Response, stats: IndexStats, kind: str) -> Iterator[bytes]:
    seen = 0
    try:
        for chunk in decoded(response):  # decoded content, as it arrives (resumable)
            wire = response.num_bytes_downloaded
            stats.count_bytes(kind, wire - seen)
            seen = wire
            yield chunk
        stats.count_bytes(kind, response.num_bytes_downloaded - seen)
    except httpx.TransportError as exc:
        raise Retry(f"{type(exc).__name__}: {exc}", truncated=True) from exc


def bounded(chunks: Iterator[bytes], limit: int, url: str) -> Iterator[bytes]:
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
