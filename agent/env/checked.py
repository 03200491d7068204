"""The wheel store's note of checked wheels: a later sync trusts a wheel whose stat is unchanged.

For each wheel whose sha256 matched the lock, `checked.json` beside the wheels keeps the
sha256 and the file's size, mtime_ns, ctime_ns, inode and device as they were then. A write
to the file changes its mtime and ctime (ctime cannot be set back without changing the
clock), a replacement its inode: any of them, and the wheel is hashed again.

The note is only ever a shortcut: a missing, unreadable, foreign, truncated or oversized
note trusts nothing, and a note that cannot be written is no failure. It is written whole
(temp + rename, merged with what another process wrote meanwhile) and holds at most
MAX_ENTRIES wheels, the latest kept. The installer checks the lock's hashes in any case.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from torchenv.agent.base.fsutil import write_atomic

NOTE = "checked.json"
SCHEMA = 1
MAX_ENTRIES = 10_000
MAX_BYTES = 4 << 20  # a note of MAX_ENTRIES is about 2 MB
CHUNK = 1 << 20

Stat = tuple[str, int, int, int, int, int]  # (sha256, size, mtime_ns, ctime_ns, inode, device)


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks (the one place the store's wheels are hashed)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _stat(path: Path, sha256: str) -> Stat:
    st = path.stat()
    return (sha256, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _valid(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 6
        and isinstance(value[0], str)
        and len(value[0]) == 64
        and all(type(v) is int and v >= 0 for v in value[1:])
    )


def read_note(wheels_dir: Path) -> dict[str, Stat]:
    """The note's entries (relative path: stat); {} for anything but a valid note."""
    try:
        with (wheels_dir / NOTE).open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError:
        return {}
    if len(data) > MAX_BYTES:
        return {}
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    entries = doc.get("wheels") if isinstance(doc, dict) and doc.get("schema") == SCHEMA else None
    if not isinstance(entries, dict):
        return {}
    return {
        key: (value[0], value[1], value[2], value[3], value[4], value[5])
        for key, value in entries.items()
        if isinstance(key, str) and _valid(value)
    }


class Checked:
    """The note of one wheel store, read once; `save` writes what changed (thread-safe)."""

    def __init__(self, wheels_dir: Path) -> None:
        self.wheels_dir = wheels_dir
        self._entries = read_note(wheels_dir)
        self._new: dict[str, Stat | None] = {}  # None: forget the entry
        self._lock = threading.Lock()

    def _key(self, path: Path) -> str:
        return path.relative_to(self.wheels_dir).as_posix()

    def trusted(self, path: Path, sha256: str) -> bool:
        """Whether the note says `path` matched `sha256` and its stat has not changed since."""
        with self._lock:
            entry = self._entries.get(self._key(path))
        if entry is None or entry[0] != sha256:
            return False
        try:
            return _stat(path, sha256) == entry
        except OSError:
            return False

    def record(self, path: Path, sha256: str) -> None:
        """Note that `path` matched `sha256` (call right after checking its bytes)."""
        try:
            stat = _stat(path, sha256)
        except OSError:
            return
        with self._lock:
            self._entries[self._key(path)] = self._new[self._key(path)] = stat

    def forget(self, path: Path) -> None:
        with self._lock:
            self._entries.pop(self._key(path), None)
            self._new[self._key(path)] = None

    def save(self) -> None:
        """Write the note when anything changed: this run's entries over what is on disk now."""
        with self._lock:
            if not self._new:
                return
            entries = read_note(self.wheels_dir)
            for key, stat in self._new.items():
                entries.pop(key, None)  # re-inserted last: the latest are the ones kept
                if stat is not None:
                    entries[key] = stat
            self._new = {}
        kept = [(k, list(v)) for k, v in entries.items()][-MAX_ENTRIES:]
        data = json.dumps({"schema": SCHEMA, "wheels": dict(kept)}, separators=(",", ":"))
        with contextlib.suppress(OSError):  # a shortcut: the next sync hashes them instead
            write_atomic(self.wheels_dir / NOTE, data.encode("utf-8"), shared=True)
