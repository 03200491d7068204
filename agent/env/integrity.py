"""Is an environment still what was installed? A stat manifest for the no-op path, RECORD hashes
for `verify` and the agent.

At sync time `write_manifest` records (size, mtime, inode) of the files the wheels' RECORDs
list that Python loads: everything but C/C++ headers and sources, which only extension builds
read (9,300 of the 12,254 files of torch 2.13's CPU wheel). `quick_check` compares them with
one stat per file, cheap enough for every no-op `auto`; `full_check` hashes every file RECORD
lists against its sha256. Both name the distributions whose files changed, so a rebuild can
drop those from the installer's cache. The module is stdlib only (the agent imports it).

`tree_facts` is what the no-op fast path (agent/cli/fastpath.py) stats instead of every file:
each directory of the manifest's files (mtime, inode: creating, deleting, renaming or replacing
a file in it changes them, as installs, uninstalls, `rm` and rename-writing editors do) and
the sentinel files (`SENTINELS`), which keep their own stat. A write into another file in
place (same name, same inode) is not seen there; `quick_check` (the full no-op path), `verify`
and the agent's integrity interval see it. Python creating a package's `__pycache__` (its
first import without bytecode) changes that directory too: one full no-op, which stamps again.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "torchenv-files.json"  # inside the environment, beside its pylock.toml
SCHEMA = 1
SKIP_QUICK = (".h", ".hh", ".hpp", ".hxx", ".cuh", ".inl", ".c", ".cc", ".cpp", ".cu", ".cmake")
CHUNK = 1 << 20
# Files the fast path stats one by one: what an import runs first (package __init__, .pth),
# native code, the distributions' metadata, and the environment's commands.
SENTINELS = ("__init__.py", ".pth", ".so", ".dylib", ".pyd")


@dataclass(frozen=True)
class Damage:
    """Files of one distribution that are not what its wheel installed."""

    dist: str  # the distribution's name as its .dist-info directory spells it
    paths: tuple[str, ...]  # relative to the environment


def site_packages(env_dir: Path) -> Path | None:
    found = sorted(env_dir.glob("lib/python*/site-packages")) or sorted(
        env_dir.glob("Lib/site-packages")
    )
    return found[0] if found else None


def site_stamp(env_dir: Path) -> int:
    """Changes when anything installs into or removes from the environment's site-packages."""
    site = site_packages(env_dir)
    return site.stat().st_mtime_ns if site is not None else 0


def _records(site: Path) -> Iterator[tuple[str, Path]]:
    """(distribution name, RECORD path) for every .dist-info in site-packages."""
    for record in sorted(site.glob("*.dist-info/RECORD")):
        yield record.parent.name[: -len(".dist-info")].rsplit("-", 1)[0], record


def _rows(record: Path) -> Iterator[tuple[str, str]]:
    """(path relative to site-packages, "sha256=<b64>" or "") for each RECORD row."""
    try:
        text = record.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    for row in csv.reader(io.StringIO(text)):
        if row and row[0]:
            yield row[0], row[1] if len(row) > 1 else ""


def _inside(env_dir: Path, site: Path, relative: str) -> str | None:
    """`relative` normalised against site-packages, or None when it leaves the environment."""
    path = os.path.normpath(os.path.join(site, relative))
    root = os.path.normpath(env_dir)
    return path if os.path.commonpath([root, path]) == root else None


def write_manifest(env_dir: Path) -> int:
    """Record the quick-check facts of a fresh environment; returns the number of files."""
    site = site_packages(env_dir)
    files: dict[str, dict[str, list[list[object]]]] = {}
    count = 0
    if site is not None:
        for dist, record in _records(site):
            groups: dict[str, list[list[object]]] = {}
            for relative, _ in _rows(record):
                path = _inside(env_dir, site, relative)
                if path is None or path.endswith(SKIP_QUICK):
                    continue
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                directory, name = os.path.split(os.path.relpath(path, env_dir))
                groups.setdefault(directory, []).append(
                    [name, st.st_size, st.st_mtime_ns, st.st_ino]
                )
                count += 1
            files[dist] = groups
    data = json.dumps({"schema": SCHEMA, "files": files}, separators=(",", ":"))
    (env_dir / MANIFEST).write_text(data, encoding="utf-8")
    return count


def quick_check(env_dir: Path) -> list[Damage] | None:
    """The distributions whose files changed since `write_manifest`; None without a manifest.

    One lstat per file (relative to an open directory): about 10 ms for torch's 2,900.
    """
    try:
        doc = json.loads((env_dir / MANIFEST).read_text(encoding="utf-8"))
        files = doc["files"] if doc.get("schema") == SCHEMA else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(files, dict):
        return None
    damage = []
    for dist, groups in files.items():
        changed = [
            os.path.join(d, name)
            for d, entries in groups.items()
            for name in _changed(env_dir / d, entries)
        ]
        if changed:
            damage.append(Damage(str(dist), tuple(sorted(changed))))
    return damage


def _changed(directory: Path, entries: list[list[object]]) -> Iterator[str]:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        yield from (str(e[0]) for e in entries)
        return
    try:
        for name, size, mtime, ino in entries:
            try:
                st = os.stat(str(name), dir_fd=fd, follow_symlinks=False)
            except OSError:
                yield str(name)
                continue
            if (st.st_size, st.st_mtime_ns, st.st_ino) != (size, mtime, ino):
                yield str(name)
    finally:
        os.close(fd)


def sentinel(relative: str) -> bool:
    """Whether the fast path stats this file (a path relative to the environment) itself."""
    directory, name = os.path.split(relative)
    parts = directory.replace("\\", "/").split("/")
    return (
        name.endswith(SENTINELS)
        or ".so." in name  # libfoo.so.1
        or parts[0] in {"bin", "Scripts"}
        or any(p.endswith(".dist-info") for p in parts)
    )


Dirs = list[tuple[str, int, int]]  # (directory, mtime_ns, inode)
Sentinels = list[tuple[str, int, int, int]]  # (path, size, mtime_ns, inode)


def tree_facts(env_dir: Path) -> tuple[Dirs, Sentinels]:
    """(directory, mtime, inode) of every directory of the manifest's files, stat'ed now, and
    (path, size, mtime, inode) of its sentinel files as the manifest recorded them; paths are
    relative to the environment. Take it before `quick_check`: a change after the check then
    shows in a directory. Raises OSError or ValueError for a missing or unreadable manifest."""
    doc = json.loads((env_dir / MANIFEST).read_text(encoding="utf-8"))
    files = doc.get("files") if isinstance(doc, dict) and doc.get("schema") == SCHEMA else None
    if not isinstance(files, dict):
        raise ValueError(f"{env_dir / MANIFEST}: not a schema {SCHEMA} manifest")
    dirs: Dirs = []
    sentinels: Sentinels = []
    for groups in files.values():
        for directory, entries in groups.items():
            st = os.lstat(env_dir / directory)
            dirs.append((directory or ".", st.st_mtime_ns, st.st_ino))
            for name, size, mtime, ino in entries:
                path = os.path.join(directory, name)
                if sentinel(path):
                    sentinels.append((path, int(size), int(mtime), int(ino)))
    return sorted(set(dirs)), sentinels


def full_check(env_dir: Path) -> list[Damage]:
    """Every file each RECORD lists with a sha256, hashed and compared (reads all the bytes)."""
    site = site_packages(env_dir)
    if site is None:
        return []
    damage = []
    for dist, record in _records(site):
        bad = [
            os.path.relpath(os.path.join(site, relative), env_dir)
            for relative, digest in _rows(record)
            if digest.startswith("sha256=") and not _matches(env_dir, site, relative, digest)
        ]
        if bad:
            damage.append(Damage(dist, tuple(bad)))
    return damage


def _matches(env_dir: Path, site: Path, relative: str, digest: str) -> bool:
    path = _inside(env_dir, site, relative)
    if path is None:
        return True  # not a file of this environment; nothing to compare
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK):
                h.update(block)
    except OSError:
        return False
    encoded = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
    return "sha256=" + encoded == digest


def describe(damage: list[Damage], limit: int = 3) -> str:
    """ "torch (2 files: torch/__init__.py, …)" for a message."""
    parts = []
    for d in damage:
        shown = ", ".join(d.paths[:limit]) + (", …" if len(d.paths) > limit else "")
        parts.append(f"{d.dist} ({len(d.paths)} file{'s' if len(d.paths) != 1 else ''}: {shown})")
    return "; ".join(parts)
