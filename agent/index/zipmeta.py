"""A wheel's zip structures (EOCD, zip64, central directory, local header), parsed (pure)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packaging.utils import (
    canonicalize_name,
)

from torchenv.agent.base.limits import MAX_METADATA

if TYPE_CHECKING:  # imported where used: `import torchenv.agent.index.client` stays cheap
    pass


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
    """Where a zip's central directory lies: its offset and size in bytes."""

    offset: int
    size: int


@dataclass(frozen=True)
class ZipMember:
    """One central-directory entry: a file's name, method, CRC, sizes, local header offset."""

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


def central_members(directory: bytes, suffix: bytes = b"") -> list[ZipMember]:
    """The central directory's members; with `suffix`, only those whose name ends so (the
    others are stepped over, not decoded: a torch wheel has some 13,000)."""
    out = []
    pos, end = 0, len(directory)
    while pos + 46 <= end and directory.startswith(CENTRAL, pos):
        name_len, extra_len, comment_len = struct.unpack_from("<3H", directory, pos + 28)
        if not suffix or directory.endswith(suffix, pos + 46, pos + 46 + name_len):
            out.append(_member(directory, pos))
        pos += 46 + name_len + extra_len + comment_len
    return out


MAX_FALSE_STARTS = 8  # signatures tried in a directory's tail before reading all of it


def members_in_part(part: bytes, suffix: bytes = b"") -> list[ZipMember] | None:
    """The members of a central directory's last `part` bytes (it ends where the directory
    ends, but may start inside an entry): found from the first central-header signature from
    which the entries chain exactly to the end. A signature that does not (one inside a name,
    an extra field or a cut entry) is a false start; None after MAX_FALSE_STARTS of them, or
    when no signature chains (the caller reads the whole directory then)."""
    pos = part.find(CENTRAL)
    for _ in range(MAX_FALSE_STARTS + 1):
        if pos < 0:
            return None
        end = _chain_end(part, pos)
        if end == len(part):
            return central_members(part[pos:], suffix)
        pos = part.find(CENTRAL, pos + 1)
    return None


def _chain_end(directory: bytes, pos: int) -> int:
    """Where walking the entries from `pos` stops (the directory's length when they chain)."""
    end = len(directory)
    while pos + 46 <= end and directory.startswith(CENTRAL, pos):
        name_len, extra_len, comment_len = struct.unpack_from("<3H", directory, pos + 28)
        pos += 46 + name_len + extra_len + comment_len
    return pos


def _member(directory: bytes, pos: int) -> ZipMember:
    fields = struct.unpack(CENTRAL_FMT, directory[pos : pos + 46])
    method, crc, csize, usize = fields[4], fields[7], fields[8], fields[9]
    name_len, extra_len, offset = fields[10], fields[11], fields[16]
    name = directory[pos + 46 : pos + 46 + name_len].decode("utf-8", errors="replace")
    extra = directory[pos + 46 + name_len : pos + 46 + name_len + extra_len]
    usize, csize, offset = _zip64_sizes(extra, usize, csize, offset)
    return ZipMember(name, method, crc, csize, usize, offset)


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


METADATA_SUFFIX = b".dist-info/METADATA"


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


def own_metadata_member(members: Sequence[ZipMember], project: str) -> ZipMember | None:
    """The project's own top-level METADATA when exactly one is among `members` (a part of the
    directory: what is not there may hold others, so anything else is left undecided)."""
    own = [
        m
        for m in members
        if m.name.count("/") == 1
        and m.name.endswith(".dist-info/METADATA")
        and canonicalize_name(m.name.split("-", 1)[0]) == project
    ]
    return own[0] if len(own) == 1 else None


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
