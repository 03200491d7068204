"""The PEP 751 lock file: a frozen data model, an atomic writer and a strict reader."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import tomli_w

from torchenv.agent.base.errors import LockFileError
from torchenv.agent.base.limits import MAX_LOCK_FILE

if TYPE_CHECKING:
    from torchenv.agent.lock.resolvers.target import Target

LOCK_VERSION = "1.0"
CREATED_BY = "torchenv"
DEFAULT_NAME = "pylock.toml"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REGENERATE = "regenerate it with `torchenv lock`"
MAX_LOCK_BYTES = MAX_LOCK_FILE  # the most of a lock file read (agent/base/limits.py)
URL_SCHEMES = ("https", "http", "file")
_UNSAFE = frozenset("/\\:\0")  # a wheel name is one file name, on every OS


@dataclass(frozen=True)
class LockedWheel:
    """One wheel of a package (PEP 751 `packages.wheels`)."""

    name: str  # the wheel's file name (validated: no directories, no `..`)
    url: str  # http, https or file
    size: int | None  # optional in PEP 751 (uv leaves it out where the index lists none)
    sha256: str


@dataclass(frozen=True)
class LockedPackage:
    """A `[[packages]]` entry. torchenv's own locks have one wheel each; other tools' locks may
    list several (one per platform), and `PyLock.for_target` keeps the one a target installs."""

    name: str  # normalised project name
    version: str
    index: str | None  # the simple-API base URL the package was taken from (optional)
    wheels: tuple[LockedWheel, ...]
    marker: str | None = None
    dependencies: tuple[str, ...] = ()  # normalised names of the packages it requires
    requires_python: str | None = None
    source: str | None = None  # "sdist", "vcs", "directory" or "archive" for a non-wheel

    @property
    def wheel(self) -> LockedWheel:
        """The wheel to install; only a lock selected for one target has exactly one."""
        if len(self.wheels) != 1:
            raise LockFileError(
                f"package {self.name} lists {len(self.wheels)} wheels; choose the target's first",
                hint="this is a torchenv bug: the lock should have been selected for the target",
            )
        return self.wheels[0]


@dataclass(frozen=True)
class PyLock:
    """A whole pylock.toml; `tool_torchenv` is `[tool.torchenv]` (see docs/architecture.md)."""

    packages: tuple[LockedPackage, ...]
    requires_python: str | None = None
    environments: tuple[str, ...] = ()
    tool_torchenv: Mapping[str, Any] = field(default_factory=dict)
    lock_version: str = LOCK_VERSION
    created_by: str = CREATED_BY
    notes: tuple[str, ...] = field(default=(), compare=False)  # warnings from reading the file
    document: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def package(self, name: str) -> LockedPackage | None:
        wanted = normalize(name)
        return next((p for p in self.packages if p.name == wanted), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.packages)

    def for_target(self, target: Target) -> PyLock:
        """The packages and wheels `target` installs, chosen as PEP 751 says (packaging's
        `Pylock.select`: environments, requires-python, markers, then the best wheel tag)."""
        return select_for_target(self, target)


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
    """Each target fact where a lock's `target` and a host's facts differ: (key, lock, host).
    Compared with named keys; a lock written with the older arrays reads the same."""
    from torchenv.agent.lock.locktarget import comparable

    host, locked = comparable(host_facts), comparable(locked)  # the TOML form: no None
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
    if package.requires_python:
        entry["requires-python"] = package.requires_python
    if package.index:
        entry["index"] = package.index
    if package.dependencies:
        entry["dependencies"] = [{"name": d} for d in sorted(package.dependencies)]
    entry["wheels"] = [_wheel_dict(w) for w in package.wheels]
    return entry


def _wheel_dict(wheel: LockedWheel) -> dict[str, Any]:
    out: dict[str, Any] = {"name": wheel.name, "url": wheel.url}
    if wheel.size is not None:
        out["size"] = wheel.size
    out["hashes"] = {"sha256": wheel.sha256}
    return out


def dumps(lock: PyLock) -> str:
    return tomli_w.dumps(to_toml_dict(lock))


def write_pylock(path: Path, lock: PyLock) -> bytes:
    """Write atomically: a temporary file beside `path`, then os.replace; never half a file.

    A lock is meant to be committed and shared: its mode is what the umask allows (0644
    under umask 022), not private like torchenv's state and caches.

    Returns the bytes written (what a later read of `path` gives).
    """
    from torchenv.agent.base.fsutil import write_atomic

    text = dumps(lock).encode("utf-8")
    try:
        write_atomic(path, text, fsync=True, make_parents=False, shared=True)  # the umask's mode
    except OSError as exc:
        raise LockFileError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint="choose a directory you can write with -o",
        ) from exc
    return text


# -- reading ---------------------------------------------------------------------------------


def read_pylock(path: Path) -> PyLock:
    """Read and validate a lock torchenv can install from; LockFileError says what is wrong."""
    return read_lock_file(path)[0]


def read_lock_file(path: Path) -> tuple[PyLock, bytes]:
    """The validated lock at `path` and the exact bytes it was parsed from."""
    raw = read_lock_bytes(path)
    return parse_pylock(raw, source=str(path), base=path.parent), raw


def read_lock_bytes(path: Path) -> bytes:
    """The lock file's bytes, unchecked: at most MAX_LOCK_BYTES + 1 (parse_pylock refuses more)."""
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_LOCK_BYTES + 1)
    except OSError as exc:
        raise LockFileError(
            f"cannot read {path}: {exc.strerror or exc}",
            hint=f"pass an existing lock file, or {_REGENERATE}",
        ) from exc


def parse_pylock(raw: bytes, *, source: str = "the lock", base: Path | None = None) -> PyLock:
    """Validate the bytes of a lock file (pure); LockFileError says what is wrong.

    `base` is the lock's directory: PEP 751 `path` entries are relative to it.
    """
    if len(raw) > MAX_LOCK_BYTES:
        raise LockFileError(
            f"{source} is larger than {MAX_LOCK_BYTES >> 20} MiB, which no lock file is",
            hint=f"pass the pylock.toml itself, or {_REGENERATE}",
        )
    from torchenv.agent.base import toml as tomllib

    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LockFileError(f"{source} is not a TOML file ({exc})", hint=_REGENERATE) from exc
    return from_toml_dict(doc, source=source, base=base)


def lock_version_notes(doc: Mapping[str, Any], source: str) -> tuple[str, ...]:
    """PEP 751 on `lock-version`: a newer minor version is read with a warning, a newer
    major version (or none at all) is refused."""
    from packaging.version import InvalidVersion, Version

    text = doc.get("lock-version")
    if not isinstance(text, str):
        raise LockFileError(
            f"{source} has no lock-version; it is not a PEP 751 lock", hint=_REGENERATE
        )
    try:
        version = Version(text)
    except InvalidVersion as exc:
        raise LockFileError(
            f"{source} has lock-version {text!r}, which is no version", hint=_REGENERATE
        ) from exc
    ours = Version(LOCK_VERSION)
    if version.major != ours.major:
        raise LockFileError(
            f"{source} has lock-version {text!r}; torchenv reads {ours.major}.x "
            f"(PEP 751 lock-version {LOCK_VERSION})",
            hint=f"upgrade torchenv, or {_REGENERATE}",
        )
    if version > ours:
        return (
            f"{source} has lock-version {text}, newer than the {LOCK_VERSION} torchenv knows; "
            f"reading it as {LOCK_VERSION} (what a newer minor version adds is ignored)",
        )
    return ()


def from_toml_dict(
    doc: Mapping[str, Any], *, source: str = "the lock", base: Path | None = None
) -> PyLock:
    """Validate a parsed lock with packaging's PEP 751 reader, then torchenv's own checks
    (a safe file name and URL for every wheel, a sha256 to check each download against)."""
    from packaging.pylock import Pylock, PylockValidationError

    notes = lock_version_notes(doc, source)
    checked = {**doc, "lock-version": LOCK_VERSION} if notes else doc
    try:
        valid = Pylock.from_dict(checked)
    except PylockValidationError as exc:
        raise LockFileError(
            f"{source} is not a valid PEP 751 lock: {exc}",
            hint=f"the file is incomplete or was edited by hand; {_REGENERATE}",
        ) from exc
    if not valid.packages:
        raise LockFileError(f"{source} locks no packages", hint=_REGENERATE)
    tool = valid.tool or {}
    table = tool.get("torchenv", {})
    return PyLock(
        packages=tuple(_package(p, source, base) for p in valid.packages),
        requires_python=str(valid.requires_python) if valid.requires_python else None,
        environments=tuple(str(e) for e in valid.environments or ()),
        tool_torchenv=dict(table) if isinstance(table, Mapping) else {},
        lock_version=str(doc["lock-version"]),
        created_by=valid.created_by,
        notes=notes,
        document=checked,
    )


def _package(package: Any, source: str, base: Path | None) -> LockedPackage:
    where = f"{source}: package {package.name}"
    wheels = tuple(_wheel(w, where, base) for w in package.wheels or ())
    version = package.version
    if version is None and wheels:
        from packaging.utils import parse_wheel_filename

        version = parse_wheel_filename(wheels[0].name)[1]
    kinds = ("vcs", "directory", "archive", "sdist")
    other = next((k for k in kinds if getattr(package, k) is not None), None)
    return LockedPackage(
        name=str(package.name),
        version=str(version) if version is not None else "",
        index=package.index,
        wheels=wheels,
        marker=str(package.marker) if package.marker is not None else None,
        dependencies=tuple(
            str(d["name"]) for d in package.dependencies or () if isinstance(d.get("name"), str)
        ),
        requires_python=str(package.requires_python) if package.requires_python else None,
        source=other,
    )


def safe_wheel_name(name: str) -> bool:
    """A wheel file name as the spec defines it: one path component, never `.` or `..`."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    if not name or name.startswith(".") or ".." in name or any(c in name for c in _UNSAFE):
        return False
    try:
        parse_wheel_filename(name)
    except InvalidWheelFilename:
        return False
    return True


def _wheel(wheel: Any, where: str, base: Path | None) -> LockedWheel:
    name = wheel.filename
    if not safe_wheel_name(name):
        raise LockFileError(
            f"{where}: {name!r} is not a wheel file name",
            hint="a wheel's name is one file name such as torch-2.6.0-cp311-cp311-"
            f"manylinux_2_28_x86_64.whl, never a path; {_REGENERATE}",
        )
    url = wheel.url
    if url is None:
        path = Path(wheel.path)
        if not path.is_absolute():
            if base is None:
                raise LockFileError(
                    f"{where}: the wheel {name} has a relative path and no URL",
                    hint="read the lock from its file, or give the wheel a url",
                )
            path = base / path
        url = path.resolve().as_uri()
    scheme = urlsplit(url).scheme
    if scheme not in URL_SCHEMES:
        raise LockFileError(
            f"{where}: the wheel {name} has the URL {url!r}; torchenv fetches only "
            + ", ".join(URL_SCHEMES)
            + " URLs",
            hint=f"point the wheel at an http(s) index or a local file; {_REGENERATE}",
        )
    sha256 = str(wheel.hashes.get("sha256", "")).lower()
    if not _SHA256.fullmatch(sha256):
        raise LockFileError(
            f"{where} has no sha256 hash for its wheel {name} (it lists "
            + (", ".join(sorted(wheel.hashes)) or "none")
            + ")",
            hint="torchenv checks every download against its sha256; lock with a tool that "
            "records it (uv and torchenv do), or " + _REGENERATE,
        )
    if wheel.size is not None and wheel.size < 0:
        raise LockFileError(f"{where}: the wheel {name} has a negative size", hint=_REGENERATE)
    return LockedWheel(name=name, url=url, size=wheel.size, sha256=sha256)


# -- choosing what a target installs -----------------------------------------------------------


def select_for_target(lock: PyLock, target: Target) -> PyLock:
    """PEP 751's installation algorithm for one target; LockFileError when it cannot install."""
    from packaging.pylock import PackageWheel, Pylock, PylockSelectError, PylockValidationError

    doc = lock.document if lock.document is not None else to_toml_dict(lock)
    try:
        valid = Pylock.from_dict(doc)
        chosen = list(valid.select(environment=target.markers(), tags=list(target.tags())))  # type: ignore[arg-type]
    except (PylockSelectError, PylockValidationError) as exc:
        raise LockFileError(
            f"the lock cannot be installed for {target.describe()}: {exc}",
            hint="lock for this target with `torchenv lock` (or pass the --python/--os the "
            "lock was made for)",
        ) from exc
    by_name = {p.name: p for p in lock.packages}
    packages = []
    for package, dist in chosen:
        ours = by_name[str(package.name)]
        if not isinstance(dist, PackageWheel):
            raise LockFileError(
                f"package {ours.name}: the lock gives this target its {ours.source or 'source'}, "
                "and torchenv installs wheels only (it never builds)",
                hint="lock with --only-binary :all: (uv) or `torchenv lock`",
            )
        wheel = next(w for w in ours.wheels if w.name == dist.filename)
        packages.append(replace(ours, wheels=(wheel,)))
    return replace(lock, packages=tuple(packages))
