"""Fleets: hosts grouped into classes by target fingerprint, one lock each, published with an index.

A published directory (`torchenv lock --publish DIR`):

    DIR/index.json                          what the nodes read first (written last)
    DIR/<fingerprint>/pylock.<sha16>.toml   one lock per class, named by its content

The index maps each fingerprint to its lock's path (relative to the index), sha256 and size,
the class's target facts, the backend and torch chosen, and the input hosts of the class.
Lock files are named by their content, so a node that read the previous index still finds
the lock that index names until the next publication removes it; a publication that changes
nothing leaves every byte (and so every ETag) as it was.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from torchenv.agent.base.errors import LockFileError, TorchenvError

if TYPE_CHECKING:
    from torchenv.agent.base.reporter import Reporter
    from torchenv.agent.lock.pylock import PyLock
    from torchenv.probes.report import HostReport

INDEX_NAME = "index.json"
INDEX_FORMAT = "torchenv-lock-index"
INDEX_VERSION = 1
PUBLISH_LOCK = ".publish.lock"  # held while a publication writes the directory
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
_LOCK_NAME = re.compile(r"pylock\.[0-9a-f]{16}\.toml")
_REPUBLISH = "publish the locks again with `torchenv lock --publish DIR`"


class LockSourceError(TorchenvError):
    """A lock source is unreachable, malformed, or has no usable lock for this host."""

    kind = "lock-source"


# ---------------------------------------------------------------- classes (pure)


@dataclass(frozen=True)
class NamedHost:
    """One input host: its name (the file or directory it came from) and its report."""

    name: str
    report: HostReport


@dataclass(frozen=True)
class HostClass:
    """Hosts with one target fingerprint: one lock serves them all."""

    fingerprint: str
    report: HostReport  # the first host of the class: the lock is made for it
    hosts: tuple[str, ...]

    @property
    def target(self) -> dict[str, Any]:
        return self.report.target_facts()


def classes_of(hosts: Iterable[NamedHost]) -> tuple[HostClass, ...]:
    """The classes of the hosts, in the order their first host was given."""
    members: dict[str, list[NamedHost]] = {}
    for host in hosts:
        members.setdefault(host.report.fingerprint(), []).append(host)
    return tuple(
        HostClass(fingerprint, named[0].report, tuple(h.name for h in named))
        for fingerprint, named in members.items()
    )


@dataclass(frozen=True)
class ClassLock:
    """What locking one class gave: its lock, or the error that stopped it."""

    host_class: HostClass
    lock: PyLock | None = None
    error: TorchenvError | None = None


def lock_each(
    classes: Sequence[HostClass], locker: Callable[[HostReport], PyLock], reporter: Reporter
) -> list[ClassLock]:
    """One resolution per class; an error in one class is kept and the others go on."""
    results = []
    for number, host_class in enumerate(classes, 1):
        reporter.info(
            f"class {number}/{len(classes)} {host_class.fingerprint} "
            f"({len(host_class.hosts)} host{'s' if len(host_class.hosts) != 1 else ''})"
        )
        try:
            results.append(ClassLock(host_class, lock=locker(host_class.report)))
        except TorchenvError as exc:
            reporter.warning(f"class {host_class.fingerprint}: {exc.message}")
            results.append(ClassLock(host_class, error=exc))
    return results


# ---------------------------------------------------------------- the index (pure)


@dataclass(frozen=True)
class Entry:
    """One class in the index."""

    fingerprint: str
    lock: str  # the lock's path relative to the index, e.g. "<fingerprint>/pylock.<sha16>.toml"
    sha256: str
    size: int
    target: Mapping[str, Any]
    backend: str | None
    torch: str | None
    hosts: tuple[str, ...]
    kept: str | None = None  # set when this class failed to lock and its earlier lock was kept

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "lock": self.lock,
            "sha256": self.sha256,
            "size": self.size,
            "target": dict(self.target),
            "backend": self.backend,
            "torch": self.torch,
            "hosts": list(self.hosts),
        }
        if self.kept:
            out["kept"] = self.kept
        return out


@dataclass(frozen=True)
class LockIndex:
    classes: Mapping[str, Entry] = field(default_factory=dict)
    requirements: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """Deterministic JSON: the same classes and locks give the same bytes."""
        from torchenv.agent import __version__

        doc = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "created-by": f"torchenv {__version__}",
            "requirements": list(self.requirements),
            "classes": {fp: self.classes[fp].to_json() for fp in sorted(self.classes)},
        }
        return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()


def lock_name(fingerprint: str, sha256: str) -> str:
    return f"{fingerprint}/pylock.{sha256[:16]}.toml"


def lock_bytes(lock: PyLock) -> bytes:
    from torchenv.agent.lock.pylock import dumps

    return dumps(lock).encode("utf-8")


def entry_for(host_class: HostClass, raw: bytes, lock: PyLock) -> Entry:
    from torchenv.agent.lock.pylock import toml_safe

    sha = hashlib.sha256(raw).hexdigest()
    torch = lock.package("torch")
    backend = lock.tool_torchenv.get("backend")
    return Entry(
        fingerprint=host_class.fingerprint,
        lock=lock_name(host_class.fingerprint, sha),
        sha256=sha,
        size=len(raw),
        target=toml_safe(host_class.target),
        backend=backend if isinstance(backend, str) else None,
        torch=torch.version if torch else None,
        hosts=host_class.hosts,
    )


def plan_index(
    results: Sequence[ClassLock],
    entries: Mapping[str, Entry],
    previous: LockIndex | None,
    requirements: Sequence[str],
) -> LockIndex:
    """The new index: every class locked now, and a failed class's earlier lock (kept).

    Classes of the earlier index that no input host belongs to any more are left out.
    """
    classes: dict[str, Entry] = {}
    for result in results:
        fp = result.host_class.fingerprint
        if fp in entries:
            classes[fp] = entries[fp]
        elif previous is not None and fp in previous.classes and result.error is not None:
            old = previous.classes[fp]
            classes[fp] = Entry(
                old.fingerprint, old.lock, old.sha256, old.size, old.target, old.backend,
                old.torch, result.host_class.hosts, kept=result.error.message,
            )  # fmt: skip
    return LockIndex(classes, tuple(requirements))


def parse_index(raw: bytes, where: str) -> LockIndex:
    """Read and check an index (pure); LockSourceError says what is wrong with it."""

    def bad(problem: str) -> LockSourceError:
        return LockSourceError(
            f"{where} is not a torchenv lock index: {problem}",
            hint=f"point lock-source at a directory or URL written by {_REPUBLISH}",
            details={"index": where},
        )

    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        raise bad(f'no "format": "{INDEX_FORMAT}"')
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > INDEX_VERSION:
        raise bad(f"version {version!r}; this torchenv reads version {INDEX_VERSION}")
    classes = doc.get("classes")
    if not isinstance(classes, dict):
        raise bad('"classes" is not an object')
    requirements = doc.get("requirements", [])
    if not isinstance(requirements, list) or not all(isinstance(r, str) for r in requirements):
        raise bad('"requirements" is not a list of strings')
    entries = {}
    for fingerprint, value in classes.items():
        problem = _entry_problem(fingerprint, value)
        if problem:
            raise bad(f"class {fingerprint!r}: {problem}")
        entries[fingerprint] = Entry(
            fingerprint=fingerprint,
            lock=value["lock"],
            sha256=value["sha256"],
            size=value["size"],
            target=value.get("target") if isinstance(value.get("target"), dict) else {},
            backend=_text(value.get("backend")),
            torch=_text(value.get("torch")),
            hosts=tuple(h for h in value.get("hosts", []) if isinstance(h, str)),
            kept=_text(value.get("kept")),
        )
    return LockIndex(entries, tuple(requirements))


def _entry_problem(fingerprint: str, value: Any) -> str | None:
    if not _FINGERPRINT.fullmatch(fingerprint):
        return "the key is not a fingerprint (16 hex digits)"
    if not isinstance(value, dict):
        return "not an object"
    if not isinstance(value.get("sha256"), str) or not _SHA256.fullmatch(value["sha256"]):
        return "no sha256 (64 lower-case hex digits)"
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        return "no size"
    lock = value.get("lock")
    if not isinstance(lock, str) or not safe_relative(lock):
        return f"its lock {lock!r} is not a path inside the published directory"
    return None


def safe_relative(path: str) -> bool:
    """A relative path that stays below the index's directory (no scheme, no `..`)."""
    pure = PurePosixPath(path)
    return (
        bool(path)
        and ":" not in path
        and "\\" not in path
        and not pure.is_absolute()
        and ".." not in pure.parts
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# ---------------------------------------------------------------- publishing (the edge)


@dataclass(frozen=True)
class Publication:
    """What `publish` did to the directory."""

    directory: Path
    index: LockIndex
    results: tuple[ClassLock, ...]
    written: tuple[str, ...]  # lock files written (others were already there, byte for byte)
    removed: tuple[str, ...]  # stale files and class directories removed after the index

    @property
    def failed(self) -> tuple[ClassLock, ...]:
        return tuple(r for r in self.results if r.error is not None)

    def to_json(self) -> dict[str, Any]:
        classes = []
        for result in self.results:
            fp = result.host_class.fingerprint
            entry = self.index.classes.get(fp)
            item: dict[str, Any] = {
                "fingerprint": fp,
                "ok": result.error is None,
                "hosts": list(result.host_class.hosts),
                "target": result.host_class.target,
            }
            if entry is not None:
                item.update(
                    lock=str(self.directory / entry.lock), sha256=entry.sha256,
                    backend=entry.backend, torch=entry.torch, kept=entry.kept is not None,
                )  # fmt: skip
            if result.error is not None:
                item["error"] = result.error.to_json()
            classes.append(item)
        return {
            "directory": str(self.directory),
            "index": str(self.directory / INDEX_NAME),
            "resolutions": len(self.results),
            "hosts": sum(len(r.host_class.hosts) for r in self.results),
            "classes": classes,
            "written": list(self.written),
            "removed": list(self.removed),
        }


def publish(
    directory: Path,
    results: Sequence[ClassLock],
    *,
    requirements: Sequence[str],
    reporter: Reporter,
) -> Publication:
    """Write each class's lock, then the index, then remove what the index no longer names.

    Every file is written atomically (a temporary file, then a rename), the index last, so a
    reader sees the old directory or the new one; a second publisher waits for the first.
    """
    from torchenv.agent.env import prefixlock

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(directory, exc) from exc
    with prefixlock.hold(directory / PUBLISH_LOCK, reporter=reporter):
        previous = _previous_index(directory, reporter)
        entries: dict[str, Entry] = {}
        written = []
        for result in results:
            if result.lock is None:
                continue
            raw = lock_bytes(result.lock)
            entry = entry_for(result.host_class, raw, result.lock)
            if _write_if_changed(directory / entry.lock, raw):
                written.append(entry.lock)
            entries[entry.fingerprint] = entry
        index = plan_index(results, entries, previous, requirements)
        from torchenv.agent.base.faults import fault_point

        fault_point("publish-index")  # tests: a publisher that dies before the index
        _write(directory / INDEX_NAME, index.encode())
        removed = remove_stale(directory, index)
    return Publication(directory, index, tuple(results), tuple(written), tuple(removed))


def _previous_index(directory: Path, reporter: Reporter) -> LockIndex | None:
    path = directory / INDEX_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LockFileError(
            f"cannot read {path}: {exc.strerror or exc}",
            hint="check the directory's permissions, or publish into another one",
        ) from exc
    try:
        return parse_index(raw, str(path))
    except TorchenvError as exc:
        reporter.warning(f"replacing {path}, which is unusable: {exc.message}")
        return None


def _write_if_changed(path: Path, raw: bytes) -> bool:
    try:
        if path.read_bytes() == raw:
            return False
    except OSError:
        pass
    _write(path, raw)
    return True


def _write(path: Path, raw: bytes) -> None:
    from torchenv.agent.base.fsutil import write_atomic

    try:
        write_atomic(path, raw, fsync=True, mode=0o644)
    except OSError as exc:
        raise _write_error(path, exc) from exc


def _write_error(path: Path, exc: OSError) -> LockFileError:
    return LockFileError(
        f"cannot write {path}: {exc.strerror or exc}",
        hint="publish into a directory you can write (--publish DIR)",
        details={"path": str(path)},
    )


def remove_stale(directory: Path, index: LockIndex) -> list[str]:
    """Remove lock files and class directories the index does not name (only torchenv's own:
    fingerprint directories holding `pylock.<sha16>.toml` files and leftover temporaries)."""
    named = {entry.lock for entry in index.classes.values()}
    removed = []
    for child in sorted(directory.iterdir()):
        if child.name.startswith(f".{INDEX_NAME}.") and child.name.endswith(".tmp"):
            child.unlink(missing_ok=True)  # a publisher killed mid-write (we hold the lock)
            removed.append(child.name)
            continue
        if not (child.is_dir() and _FINGERPRINT.fullmatch(child.name)):
            continue
        for item in sorted(child.iterdir()):
            rel = f"{child.name}/{item.name}"
            ours = _LOCK_NAME.fullmatch(item.name) or (
                item.name.startswith(".pylock.") and item.name.endswith(".tmp")
            )
            if ours and rel not in named and item.is_file():
                item.unlink(missing_ok=True)
                removed.append(rel)
        if child.name not in index.classes and not any(child.iterdir()):
            child.rmdir()
            removed.append(child.name + "/")
    return removed


class PublishError(TorchenvError):
    """Some classes could not be locked (the others were published)."""

    kind = "publish"


def publish_error(done: Publication) -> PublishError:
    """One error naming every class that failed, with its hosts and why."""
    failed = [(r.host_class, r.error) for r in done.results if r.error is not None]
    parts = [f"{c.fingerprint} ({', '.join(c.hosts)}): {e.message}" for c, e in failed]
    hints = list(dict.fromkeys(e.hint for _, e in failed if e.hint))
    kept = [c.fingerprint for c, _ in failed if c.fingerprint in done.index.classes]
    return PublishError(
        f"{len(failed)} of {len(done.results)} classes could not be locked: " + "; ".join(parts),
        hint="the other classes' locks are published"
        + (f" (and {', '.join(kept)} keep the lock published before)" if kept else "")
        + ("; " + "; ".join(hints) if hints else ""),
        details={
            "failed": [
                {"fingerprint": c.fingerprint, "hosts": list(c.hosts), "error": e.to_json()}
                for c, e in failed
            ]
        },
        exit_code=max(e.exit_code for _, e in failed),
    )
