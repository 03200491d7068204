"""A node takes the lock published for its class (`lock-source`): looked up, hash-checked, checked.

`lock-source` is a directory or an http(s) URL written by `torchenv lock --publish`. A node
reads its index, takes the entry for its own fingerprint, reads that lock (bounded, checked
against the index's sha256 and size), checks it against the host and the request, and syncs it
instead of resolving. An index fetched over HTTP is kept in the cache (with its ETag) and used
without asking for `lock-source-max-age` seconds; after that one conditional request
revalidates it. A lock whose bytes the node already holds is not fetched again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from torchenv.agent.base.errors import LockFileError
from torchenv.agent.fleet.lockindex import Entry, LockSourceError

if TYPE_CHECKING:
    from torchenv.agent.base.options import LockSourceConfig, SelectionOptions
    from torchenv.agent.base.reporter import Reporter
    from torchenv.agent.lock.pylock import PyLock
    from torchenv.probes.report import HostReport
from torchenv.agent.base.locksetting import LockSource, parse_source
from torchenv.agent.fleet.readers import HttpReader, IndexRead, Reader, _mismatch, open_reader

# ---------------------------------------------------------------- the setting (pure)


# ---------------------------------------------------------------- checks (pure)


def request_problems(
    lock: PyLock,
    requirements: Sequence[str],
    *,
    backend: str | None,
    channel: str | None,
    markers: Mapping[str, str],
) -> list[str]:
    """Why a published lock does not give what this node asks for (empty: it does)."""
    from packaging.requirements import InvalidRequirement, Requirement

    problems = []
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            problems.append(f"{text!r} is not a requirement ({exc})")
            continue
        if req.marker is not None and not req.marker.evaluate({**markers, "extra": ""}):
            continue
        package = lock.package(req.name)
        if package is None:
            problems.append(f"{req.name} is not in it")
        elif req.specifier and not req.specifier.contains(package.version, prereleases=True):
            problems.append(f"it has {req.name} {package.version}, not {req.specifier}")
    table = lock.tool_torchenv
    if backend not in (None, "", "auto") and table.get("backend") != backend:
        problems.append(f"it is for the backend {table.get('backend')}, not {backend}")
    if channel and table.get("channel") and table.get("channel") != channel:
        problems.append(f"it is from the {table.get('channel')} channel, not {channel}")
    return problems


# ---------------------------------------------------------------- reading a source (the edge)


# ---------------------------------------------------------------- what a node takes


@dataclass(frozen=True)
class SourceLock:
    """The lock this node takes from the source, checked."""

    source: LockSource
    entry: Entry
    where: str  # the lock's URL or path
    raw: bytes
    lock: PyLock
    fetched: bool  # False: the node's own copy already held these bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source.describe(),
            "fingerprint": self.entry.fingerprint,
            "lock": self.where,
            "sha256": self.entry.sha256,
            "fetched": self.fetched,
        }


@dataclass(frozen=True)
class Lookup:
    """What `auto` takes from the lock source: the published lock (None: lock here), notes."""

    found: SourceLock | None  # None: no source set, or no lock for this class (resolve)
    notes: tuple[str, ...] = ()

    def sha256(self, local: bytes) -> str:
        """The sha256 of the lock the environment must be built from: the published one, or
        the node's own when nothing is published for it."""
        return self.found.entry.sha256 if self.found else hashlib.sha256(local).hexdigest()


@dataclass(frozen=True)
class Located:
    """This class's entry in the index, and the lock's checked bytes."""

    entry: Entry
    where: str  # the lock's URL or path
    raw: bytes
    fetched: bool  # False: the node's own copy already held these bytes
    read: IndexRead


def locate_lock(reader: Reader, fingerprint: str, local: bytes | None) -> Located | None:
    """The lock for this class, its size and sha256 checked; None when the index has none.

    A kept index that lacks the class, or names a lock that is gone, is asked again first.
    """
    read = reader.index()
    for attempt in range(2):
        entry = read.index.classes.get(fingerprint)
        if entry is None and read.cached and attempt == 0:
            read = reader.index(revalidate=True)
            continue
        if entry is None:
            return None
        where = _location(read.where, entry)
        if local is not None and hashlib.sha256(local).hexdigest() == entry.sha256:
            return Located(entry, where, local, False, read)
        raw = reader.lock(entry, read.where)
        if raw is None and attempt == 0:
            read = reader.index(revalidate=True)
            continue
        if raw is None:
            raise LockSourceError(
                f"the index at {read.where} names {entry.lock} for class {fingerprint}, "
                "but there is no such file",
                hint="the directory is incomplete; publish the locks again "
                "(`torchenv lock ... --publish DIR`)",
                details={"fingerprint": fingerprint, "lock": where},
            )
        if len(raw) != entry.size or hashlib.sha256(raw).hexdigest() != entry.sha256:
            got = f"sha256 {hashlib.sha256(raw).hexdigest()[:16]}…, {len(raw)} bytes"
            raise _mismatch(entry, where, got)
        return Located(entry, where, raw, True, read)
    return None  # pragma: no cover - the loop returns or raises on its second pass


def _location(index_where: str, entry: Entry) -> str:
    if "://" in index_where:
        return urljoin(index_where, entry.lock)
    return str(Path(index_where).parent / entry.lock)


def for_host(
    config: LockSourceConfig,
    host: HostReport,
    *,
    requirements: Sequence[str],
    wanted: SelectionOptions,
    local: bytes | None,
    reporter: Reporter,
) -> Lookup:
    """The published lock `auto` syncs for this host, checked; Lookup(None) to lock as before.
    `wanted` is what this node asks of the selection (the lock must give its backend, channel)."""
    source = parse_source(config.source)
    if source is None:
        return Lookup(None)
    fingerprint = host.fingerprint()
    with reporter.stage("lock-source", source.describe()), open_reader(source, config) as reader:
        found = locate_lock(reader, fingerprint, local)
        if found is not None and found.fetched and isinstance(reader, HttpReader):
            reader.keep_lock(found.raw)
    if found is None:
        return _missing(source, fingerprint, config)
    lock = check_published(
        found.raw, found.where, found.entry, host, requirements=requirements,
        backend=wanted.backend, channel=wanted.channel,
    )  # fmt: skip
    notes = [found.read.note] if found.read.note else []
    notes.append(
        f"the lock published for this host's class {fingerprint} ({found.where}, sha256 "
        f"{found.entry.sha256[:16]}…); no resolution"
    )
    published = SourceLock(source, found.entry, found.where, found.raw, lock, found.fetched)
    return Lookup(published, tuple(notes))


def _missing(source: LockSource, fingerprint: str, config: LockSourceConfig) -> Lookup:
    what = f"{source.describe()} has no lock for this host's class {fingerprint}"
    if config.missing == "fail":
        raise LockSourceError(
            what,
            hint="publish one for this host (`torchenv probe --json > host.json` here, then "
            "`torchenv lock ... --host-report host.json --publish DIR` with the other hosts), "
            'or set lock-source-missing = "resolve" to lock for this host instead',
            details={"fingerprint": fingerprint, "source": source.describe()},
        )
    return Lookup(None, (f"{what}; locking for this host (lock-source-missing = resolve)",))


def check_published(
    raw: bytes,
    where: str,
    entry: Entry,
    host: HostReport,
    *,
    requirements: Sequence[str],
    backend: str | None,
    channel: str | None,
) -> PyLock:
    """Parse the published lock; refuse it unless it was made for this host and request."""
    from torchenv.agent.lock.check import check_lock
    from torchenv.agent.lock.pylock import parse_pylock
    from torchenv.agent.lock.resolvers import target_of

    what = f"the lock published for class {entry.fingerprint} at {where}"
    lock = parse_pylock(raw, source=what)
    differences = check_lock(lock, host)
    if differences:
        facts = "; ".join(f"{d.fact}: lock {d.locked!r}, host {d.host!r}" for d in differences)
        raise LockFileError(
            f"{what} was made for another target: {facts}",
            hint="the index files it under the wrong class; publish the locks again "
            "(`torchenv lock ... --publish DIR`). Nothing was installed",
            details={"fingerprint": entry.fingerprint, "lock": where},
        )
    problems = request_problems(
        lock, requirements, backend=backend, channel=channel, markers=target_of(host).markers(),
    )  # fmt: skip
    if problems:
        locked = lock.tool_torchenv.get("requirements") or []
        raise LockSourceError(
            f"{what} does not give what is asked for here: " + "; ".join(problems),
            hint="publish locks for these requirements (`torchenv lock REQ... --publish DIR`), "
            f"or ask for what the published locks hold ({', '.join(map(str, locked))})",
            details={"fingerprint": entry.fingerprint, "problems": problems},
        )
    return lock


def keep_copy(path: Path, raw: bytes) -> None:
    """The published lock, byte for byte, where `auto` keeps its lock."""
    from torchenv.agent.base.fsutil import write_atomic

    try:
        write_atomic(path, raw, fsync=True, make_parents=False, shared=True)  # like write_pylock
    except OSError as exc:
        raise LockFileError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint="choose a prefix (or --lock FILE) in a directory you can write",
        ) from exc


def index_digest(config: LockSourceConfig) -> str | None:
    """A short hash of the published index in force (None: no lock-source); the agent re-runs
    `auto` when it changes. Read through the same cache as `auto`, so no request is doubled."""
    source = parse_source(config.source)
    if source is None:
        return None
    with open_reader(source, config) as reader:
        return hashlib.sha256(reader.index().raw).hexdigest()[:16]
