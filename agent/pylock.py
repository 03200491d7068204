"""The PEP 751 lock file: a frozen data model, an atomic writer and a strict reader."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from torchenv.agent.errors import LockFileError

LOCK_VERSION = "1.0"
CREATED_BY = "torchenv"
DEFAULT_NAME = "pylock.toml"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REGENERATE = "regenerate it with `torchenv lock`"


@dataclass(frozen=True)
class LockedWheel:
    """The one wheel the target installs for a package (PEP 751 `packages.wheels`)."""

    name: str  # the wheel's file name
    url: str
    size: int
    sha256: str


@dataclass(frozen=True)
class LockedPackage:
    """A `[[packages]]` entry: exactly one wheel, from the index the package is pinned to."""

    name: str  # normalised project name
    version: str
    index: str  # the simple-API base URL the package was taken from
    wheel: LockedWheel
    marker: str | None = None
    dependencies: tuple[str, ...] = ()  # normalised names of the packages it requires


@dataclass(frozen=True)
class PyLock:
    """A whole pylock.toml; `tool_torchenv` is `[tool.torchenv]` (see docs/architecture.md)."""

    packages: tuple[LockedPackage, ...]
    requires_python: str | None = None
    environments: tuple[str, ...] = ()
    tool_torchenv: Mapping[str, Any] = field(default_factory=dict)
    lock_version: str = LOCK_VERSION
    created_by: str = CREATED_BY

    def package(self, name: str) -> LockedPackage | None:
        wanted = normalize(name)
        return next((p for p in self.packages if p.name == wanted), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.packages)


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def toml_safe(value: Any) -> Any:
    """TOML has no null: drop None keys from tables and write None inside arrays as ""."""
    if isinstance(value, Mapping):
        return {str(k): toml_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return ["" if v is None else toml_safe(v) for v in value]
    return value


def target_changes(
    locked: Mapping[str, Any], host_facts: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """Each target fact where a lock's `target` and a host's facts differ: (key, lock, host)."""
    host = toml_safe(dict(host_facts))  # the lock holds the TOML form ("" for None)
    return [
        (key, locked.get(key), host.get(key))
        for key in sorted(set(locked) | set(host))
        if locked.get(key) != host.get(key)
    ]


# -- writing -----------------------------------------------------------------------------------


def to_toml_dict(lock: PyLock) -> dict[str, Any]:
    """The document in PEP 751's key order, packages sorted by name."""
    doc: dict[str, Any] = {"lock-version": lock.lock_version}
    if lock.environments:
        doc["environments"] = list(lock.environments)
    if lock.requires_python:
        doc["requires-python"] = lock.requires_python
    doc["created-by"] = lock.created_by
    doc["packages"] = [_package_dict(p) for p in sorted(lock.packages, key=lambda p: p.name)]
    if lock.tool_torchenv:
        doc["tool"] = {"torchenv": toml_safe(lock.tool_torchenv)}
    return doc


def _package_dict(package: LockedPackage) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": package.name, "version": package.version}
    if package.marker:
        entry["marker"] = package.marker
    entry["index"] = package.index
    if package.dependencies:
        entry["dependencies"] = [{"name": d} for d in sorted(package.dependencies)]
    wheel = package.wheel
    entry["wheels"] = [
        {
            "name": wheel.name,
            "url": wheel.url,
            "size": wheel.size,
            "hashes": {"sha256": wheel.sha256},
        }
    ]
    return entry


def dumps(lock: PyLock) -> str:
    return tomli_w.dumps(to_toml_dict(lock))


def write_pylock(path: Path, lock: PyLock) -> bytes:
    """Write atomically: a temporary file beside `path`, then os.replace; never half a file.

    A lock is meant to be committed and shared: its mode is what the umask allows (0644
    under umask 022), not private like torchenv's state and caches.

    Returns the bytes written (what a later read of `path` gives).
    """
    from torchenv.agent.fsutil import write_atomic

    text = dumps(lock).encode("utf-8")
    try:
        write_atomic(path, text, fsync=True, make_parents=False, shared=True)  # the umask's mode
    except OSError as exc:
        raise LockFileError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint="choose a directory you can write with -o",
        ) from exc
    return text


# -- reading -----------------------------------------------------------------------------------


def read_pylock(path: Path) -> PyLock:
    """Read and validate a lock torchenv can install from; LockFileError says what is wrong."""
    return read_lock_file(path)[0]


def read_lock_file(path: Path) -> tuple[PyLock, bytes]:
    """The validated lock at `path` and the exact bytes it was parsed from."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LockFileError(
            f"cannot read {path}: {exc.strerror or exc}",
            hint=f"pass an existing lock file, or {_REGENERATE}",
        ) from exc
    return parse_pylock(raw, source=str(path)), raw


def parse_pylock(raw: bytes, *, source: str = "the lock") -> PyLock:
    """Validate the bytes of a lock file (pure); LockFileError says what is wrong."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LockFileError(f"{source} is not a TOML file ({exc})", hint=_REGENERATE) from exc
    return from_toml_dict(doc, source=source)


def from_toml_dict(doc: Mapping[str, Any], *, source: str = "the lock") -> PyLock:
    version = doc.get("lock-version")
    if not isinstance(version, str):
        raise LockFileError(
            f"{source} has no lock-version; it is not a PEP 751 lock", hint=_REGENERATE
        )
    if version.split(".", 1)[0] != LOCK_VERSION.split(".", 1)[0]:
        raise LockFileError(
            f"{source} has lock-version {version!r}; torchenv reads {LOCK_VERSION}",
            hint=f"upgrade torchenv, or {_REGENERATE}",
        )
    created_by = _need(doc, "created-by", str, source)
    packages = doc.get("packages")
    if not isinstance(packages, list) or not packages:
        raise LockFileError(f"{source} locks no packages", hint=_REGENERATE)
    tool = doc.get("tool", {})
    table = tool.get("torchenv", {}) if isinstance(tool, Mapping) else {}
    environments = doc.get("environments", [])
    requires_python = doc.get("requires-python")
    if not isinstance(environments, list) or not all(isinstance(e, str) for e in environments):
        raise LockFileError(f"{source}: environments must be an array of markers", hint=_REGENERATE)
    if requires_python is not None and not isinstance(requires_python, str):
        raise LockFileError(f"{source}: requires-python must be a string", hint=_REGENERATE)
    return PyLock(
        packages=tuple(_read_package(p, i, source) for i, p in enumerate(packages)),
        requires_python=requires_python,
        environments=tuple(environments),
        tool_torchenv=dict(table) if isinstance(table, Mapping) else {},
        lock_version=version,
        created_by=created_by,
    )


def _need(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise LockFileError(
            f"{where}: {key} is missing or not a {kind.__name__}",
            hint=f"the file is incomplete or was edited by hand; {_REGENERATE}",
        )
    return value


def _read_package(entry: Any, position: int, source: str) -> LockedPackage:
    if not isinstance(entry, Mapping):
        raise LockFileError(f"{source}: packages[{position}] is not a table", hint=_REGENERATE)
    name = _need(entry, "name", str, f"{source}: packages[{position}]")
    where = f"{source}: package {name}"
    version = _need(entry, "version", str, where)
    index = _need(entry, "index", str, where)
    wheels = entry.get("wheels")
    if not isinstance(wheels, list) or len(wheels) != 1:
        raise LockFileError(
            f"{where} must have exactly one wheel (it has "
            f"{len(wheels) if isinstance(wheels, list) else 0})",
            hint="torchenv installs locks made for one target, with one wheel per package; "
            + _REGENERATE,
        )
    wheel = wheels[0]
    if not isinstance(wheel, Mapping):
        raise LockFileError(f"{where}: its wheel is not a table", hint=_REGENERATE)
    hashes = wheel.get("hashes")
    sha256 = hashes.get("sha256") if isinstance(hashes, Mapping) else None
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256.lower()):
        raise LockFileError(
            f"{where} has no sha256 hash for its wheel",
            hint="every artifact in a lock must carry its hash; " + _REGENERATE,
        )
    size = _need(wheel, "size", int, where)
    dependencies = entry.get("dependencies", [])
    names = (
        tuple(
            d["name"]
            for d in dependencies
            if isinstance(d, Mapping) and isinstance(d.get("name"), str)
        )
        if isinstance(dependencies, Sequence)
        else ()
    )
    marker = entry.get("marker")
    return LockedPackage(
        name=normalize(name),
        version=version,
        index=index,
        wheel=LockedWheel(
            name=_need(wheel, "name", str, where),
            url=_need(wheel, "url", str, where),
            size=size,
            sha256=sha256.lower(),
        ),
        marker=marker if isinstance(marker, str) else None,
        dependencies=names,
    )
