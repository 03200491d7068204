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

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchenv.agent.base.errors import LockFileError, TorchenvError

if TYPE_CHECKING:
    from torchenv.agent.base.reporter import Reporter
from torchenv.agent.base.locksetting import INDEX_NAME
from torchenv.agent.fleet.classes import ClassLock
from torchenv.agent.fleet.lockindex import (
    _FINGERPRINT,
    _LOCK_NAME,
    Entry,
    LockIndex,
    entry_for,
    lock_bytes,
    parse_index,
    plan_index,
)

PUBLISH_LOCK = ".publish.lock"  # held while a publication writes the directory


# ---------------------------------------------------------------- classes (pure)


# ---------------------------------------------------------------- the index (pure)


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
