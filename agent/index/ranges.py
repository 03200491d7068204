"""A wheel's METADATA read over HTTP range requests, without downloading the wheel."""

from __future__ import annotations

import tempfile
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from torchenv.agent.base.limits import MAX_WHEEL, MAX_ZIP_DIRECTORY

if TYPE_CHECKING:  # imported where used: `import torchenv.agent.index.client` stays cheap
    pass

from torchenv.agent.index.bodies import body_chunks, bounded
from torchenv.agent.index.model import Artifact
from torchenv.agent.index.transport import (
    CHUNK,
    HttpSession,
    _answer_head,
    _content_range,
    _int,
    _raise_if_retryable,
    _RangesRefused,
    _require_ok,
)
from torchenv.agent.index.zipmeta import (
    METADATA_SUFFIX,
    ZipDirectory,
    ZipFormatError,
    ZipMember,
    central_members,
    find_directory,
    inflate,
    local_data_offset,
    members_in_part,
    metadata_member,
    own_metadata_member,
    zip64_directory,
)

TAIL_BYTES = 64 * 1024  # first range read: the end of the zip (EOCD, usually all of the CD)


METADATA_SLACK = 1024  # extra bytes read after METADATA's data for a longer local extra field


class _RangeReader:
    """Byte ranges of one remote file, keeping what was read."""

    def __init__(self, client: HttpSession, url: str) -> None:
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
                    chunks = body_chunks(response, client.stats, "range")
                    body = b"".join(bounded(chunks, length, self.url))
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
                    for chunk in bounded(
                        body_chunks(full, client.stats, "range"), MAX_WHEEL, self.url
                    ):
                        spool.write(chunk)
            else:
                for chunk in bounded(
                    body_chunks(response, client.stats, "range"), MAX_WHEEL, self.url
                ):
                    spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        return spool


def _read_metadata(reader: _RangeReader, artifact: Artifact) -> bytes:
    """METADATA from the zip's end. The first read, the tail, holds the end record and, in
    real wheels (dist-info written last), the directory entry of METADATA even where the
    directory begins before it (torch's 13,000 entries: ~1.3 MB); then the member itself is
    read. Only where the tail does not settle it is the rest of the directory read."""
    tail_offset, tail = reader.tail(TAIL_BYTES)
    directory, record_at = find_directory(tail, tail_offset)
    if record_at is not None:
        directory = zip64_directory(reader.read(record_at, 56))
    end = directory.offset + directory.size
    if directory.offset < tail_offset < end <= tail_offset + len(tail):
        part = members_in_part(tail[: end - tail_offset], METADATA_SUFFIX)
        member = own_metadata_member(part, artifact.project) if part else None
        if member is not None:
            return _member_data(reader, member)
    members = central_members(_directory(reader, directory, tail_offset, tail), METADATA_SUFFIX)
    return _member_data(reader, metadata_member(members, artifact.project))


def _directory(
    reader: _RangeReader, directory: ZipDirectory, tail_offset: int, tail: bytes
) -> bytes:
    """The whole central directory: where its end is in the tail, only the part before."""
    end = directory.offset + directory.size
    if directory.offset < tail_offset < end <= tail_offset + len(tail):
        if directory.size > MAX_ZIP_DIRECTORY:
            raise ZipFormatError(f"a zip structure claims {directory.size} bytes")
        head = reader.read(directory.offset, tail_offset - directory.offset)
        return head + tail[: end - tail_offset]
    return reader.read(directory.offset, directory.size)


def _member_data(reader: _RangeReader, member: ZipMember) -> bytes:
    """The member's content: its local header and data in one read (none when already read)."""
    guess = 30 + len(member.name.encode()) + member.compressed_size + METADATA_SLACK
    if reader.size is not None:
        guess = min(guess, reader.size - member.local_offset)
    blob = reader.read(member.local_offset, guess)
    start = local_data_offset(blob, member) - member.local_offset
    if start + member.compressed_size > len(blob):
        blob = reader.read(member.local_offset, start + member.compressed_size)
    return inflate(member, blob[start : start + member.compressed_size])
