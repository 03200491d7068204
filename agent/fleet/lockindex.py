"""The published lock index (index.json): its entries, planned and parsed (pure)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from torchenv.agent.base.errors import TorchenvError

if TYPE_CHECKING:
    from torchenv.agent.lock.pylock import PyLock

from torchenv.agent.fleet.classes import ClassLock, HostClass

INDEX_FORMAT = "torchenv-lock-index"


INDEX_VERSION = 1


_SHA256 = re.compile(r"[0-9a-f]{64}")


_FINGERPRINT = re.compile(r"[0-9a-f]{16}")


_LOCK_NAME = re.compile(r"pylock\.[0-9a-f]{16}\.toml")


_REPUBLISH = "publish the locks again with `torchenv lock --publish DIR`"


class LockSourceError(TorchenvError):
    """A lock source is unreachable, malformed, or has no usable lock for this host."""

    kind = "lock-source"


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
    """A lock index (index.json): the entry of each class by fingerprint, and the requirements."""

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
