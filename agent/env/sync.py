"""Materialize a pylock.toml: fetch the locked wheels (hash-checked), build beside, switch."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from torchenv.agent.base.errors import (
    EnvironmentBuildError,
    IntegrityError,
    LockFileError,
    VerifyError,
)
from torchenv.agent.base.faults import fault_point
from torchenv.agent.base.fsutil import Escapes, file_name, inside
from torchenv.agent.base.limits import MAX_WHEEL, size_text
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.env import integrity, prefixlock, venv
from torchenv.agent.lock.pylock import LockedPackage, PyLock, target_changes
from torchenv.agent.verify.check import VerifyReport

LOCK_COPY = venv.LOCK_COPY  # the lock an environment was built from, inside it
CHUNK = 1 << 20
ENTRY_LOCK = ".lock"  # in each wheel's cache directory: held by whoever is downloading it
DOWNLOAD_WORKERS = 4


@dataclass(frozen=True)
class SyncResult:
    prefix: Path
    env_id: str
    env_dir: Path
    previous: str | None
    installer: str  # "uv" or "pip"
    packages: tuple[tuple[str, str], ...]  # (name, version)
    downloaded_bytes: int
    cached: int  # wheels that were already in the cache
    verify: VerifyReport | None
    adopted: Path | None  # where a user's own environment was moved aside
    seconds: Mapping[str, float]
    notes: tuple[str, ...] = ()  # what the user must know: lock warnings, unchecked facts

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": str(self.prefix),
            "env": self.env_id,
            "env_dir": str(self.env_dir),
            "previous": self.previous,
            "installer": self.installer,
            "packages": [{"name": n, "version": v} for n, v in self.packages],
            "downloaded_bytes": self.downloaded_bytes,
            "cached": self.cached,
            "verify": self.verify.to_json() if self.verify else None,
            "adopted": str(self.adopted) if self.adopted else None,
            "seconds": dict(self.seconds),
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------- target check (pure)

UNCHECKED = (
    "the lock (created by {creator}) has no [tool.torchenv] target, so these could not be "
    "checked against this host: the GPU backend and driver it was made for, the libc and "
    "the host fingerprint; its wheels were chosen by this interpreter's tags and markers, "
    "and verify checks the build that runs"
)


def target_differences(lock_target: Mapping[str, Any], host_facts: Mapping[str, Any]) -> list[str]:
    """Each fact where the lock's target and this host differ, as `key: lock != host`."""
    return [
        f"{key}: lock {locked!r} != host {host!r}"
        for key, locked, host in target_changes(lock_target, host_facts)
    ]


def check_target(
    lock: PyLock, host_facts: Mapping[str, Any], *, force: bool, reporter: Reporter
) -> list[str]:
    """Refuse a lock made for another target (unless forced); returns the notes it warned."""
    target = lock.tool_torchenv.get("target")
    if not isinstance(target, Mapping):
        note = UNCHECKED.format(creator=lock.created_by)
        reporter.warning(note)
        return [note]
    differences = target_differences(target, host_facts)
    if differences and not force:
        raise LockFileError(
            "the lock was made for another target: " + "; ".join(differences),
            hint="run `torchenv lock` (or `torchenv auto`) for this host, or pass --force",
            details={"differences": differences},
        )
    notes = [f"--force: installing a lock made for another target ({line})" for line in differences]
    for note in notes:
        reporter.warning(note)
    return notes


def lock_python(lock: PyLock) -> str | None:
    """The interpreter X.Y the lock's [tool.torchenv] names (None: any); LockFileError if bad."""
    value = lock.tool_torchenv.get("python")
    if value is None or (isinstance(value, str) and re.fullmatch(r"\d+\.\d+", value)):
        return value
    raise LockFileError(
        f"the lock's [tool.torchenv] python is {value!r}; it must be a version string such as "
        '"3.12"',
        hint='write it as python = "3.12" (quoted), or regenerate the lock with `torchenv lock`',
        details={"python": repr(value)},
    )


# ---------------------------------------------------------------- fetching


def cached_wheel(wheels_dir: Path, sha256: str, filename: str) -> Path:
    """Content-addressed: a file there was checked against its hash when it was written.

    `filename` comes from a lock or an index page: it must be a plain wheel file name, and
    the path must stay inside `wheels_dir` (Escapes or InvalidWheelFilename otherwise).
    """
    from packaging.utils import parse_wheel_filename

    parse_wheel_filename(file_name(filename))
    return inside(wheels_dir, sha256[:2], sha256, filename)


def cache_path(cache_dir: Path, package: LockedPackage) -> Path:
    from packaging.utils import InvalidWheelFilename

    try:
        return cached_wheel(cache_dir / "wheels", package.wheel.sha256, package.wheel.name)
    except (Escapes, InvalidWheelFilename) as exc:
        raise LockFileError(
            f"the lock names the wheel of {package.name} {package.wheel.name!r}, which is not "
            f"a wheel file name ({exc})",
            hint="a wheel's name in a lock is one file name such as "
            "`torch-2.9.0-cp312-cp312-manylinux_2_28_x86_64.whl`; regenerate the lock with "
            "`torchenv lock`",
            details={"package": package.name, "name": package.wheel.name},
        ) from exc


def _bad_url(package: LockedPackage, why: str) -> LockFileError:
    return LockFileError(
        f"the lock's URL for {package.name} ({package.wheel.url!r}) is invalid: {why}",
        hint="a lock names each wheel by an absolute http(s):// or file:// URL; regenerate it "
        "with `torchenv lock`",
        details={"package": package.name, "url": package.wheel.url},
    )


def local_source(package: LockedPackage) -> Path | None:
    """The file a file:// URL names (None for http and https); LockFileError when invalid."""
    url = package.wheel.url
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return None
    if not url:
        raise _bad_url(package, "it is empty")
    if parsed.scheme != "file":
        raise _bad_url(package, "it is not an absolute http://, https:// or file:// URL")
    if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
        raise _bad_url(package, "a file:// URL needs an absolute path on this host")
    path = Path(unquote(parsed.path))
    if path.is_dir():
        raise _bad_url(package, "it names a directory, not a wheel file")
    return path


class Fetcher:
    """Downloads locked wheels into the cache, checking size and sha256 while streaming.

    HTTP goes through the index client (its retries with backoff, resumed with ranges);
    no source is read past the locked size.
    """

    def __init__(self, cache_dir: Path, reporter: Reporter, total: int) -> None:
        self.cache_dir = cache_dir
        self.reporter = reporter
        self.total = total
        self.done = 0
        self.fetched = 0
        self._lock = threading.Lock()
        self._client: Any = None

    def _advance(self, amount: int) -> None:
        with self._lock:
            self.done += amount
            self.fetched += max(amount, 0)
            self.reporter.progress("download", self.done, self.total)
        fault_point("download")

    def _http(self) -> Any:
        with self._lock:
            if self._client is None:
                from torchenv.agent.index.client import IndexClient

                self._client = IndexClient(reporter=self.reporter, timeout=60.0)
            return self._client

    def _copy_local(self, package: LockedPackage, source: Path, part: Path) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0
        try:
            handle = source.open("rb")
        except OSError as exc:
            raise _bad_url(package, f"cannot read {source}: {exc.strerror or exc}") from exc
        limit = MAX_WHEEL if package.wheel.size is None else package.wheel.size
        with handle, part.open("wb") as out:
            while size <= limit and (chunk := handle.read(CHUNK)):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                self._advance(len(chunk))
        return digest.hexdigest(), size

    def fetch(self, package: LockedPackage) -> Path:
        dest = cache_path(self.cache_dir, package)
        source = local_source(package)
        if _complete(dest, package):
            self._skip(dest)
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        # One download per wheel for every process sharing the cache (the pods of a node):
        # the others wait for it, then find the file. The kernel drops the lock of a writer
        # that dies, so waiting has no bound of its own; the download's timeouts bound it.
        with prefixlock.hold(dest.parent / ENTRY_LOCK, reporter=self.reporter, timeout=math.inf):
            if _complete(dest, package):
                self._skip(dest)
                return dest
            self._download(package, source, dest)
        return dest

    def _skip(self, cached: Path) -> None:
        with self._lock:
            self.done += cached.stat().st_size

    def _download(self, package: LockedPackage, source: Path | None, dest: Path) -> None:
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            if source is not None:
                sha256, size = self._copy_local(package, source, tmp)
            else:
                digests, size = self._http().fetch_file(
                    package.wheel.url, tmp, size=package.wheel.size, progress=self._advance
                )
                sha256 = digests["sha256"]
            locked = package.wheel.size  # optional in PEP 751: the sha256 decides alone then
            if sha256 != package.wheel.sha256 or locked not in (None, size):
                raise IntegrityError(
                    f"{package.wheel.name} from {package.wheel.url} does not match the lock "
                    f"(sha256 {sha256[:16]}…, {size} bytes; the lock has "
                    f"{package.wheel.sha256[:16]}…, {package.wheel.size or '?'} bytes)",
                    hint="the index changed the file or the download was tampered with; "
                    "re-lock with `torchenv lock` if the change is expected",
                    details={"package": package.name, "url": package.wheel.url},
                )
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def drop_damaged(
    packages: Sequence[LockedPackage], files: Mapping[str, Path], reporter: Reporter
) -> list[str]:
    """Remove the cached wheels whose sha256 is no longer the locked one; their names."""
    from torchenv.agent.index.client import sha256_of

    damaged = []
    for package in packages:
        path = files[package.name]
        try:
            good = sha256_of(path) == package.wheel.sha256
        except OSError:
            good = False
        if not good:
            with prefixlock.try_hold(path.parent / ENTRY_LOCK) as free:
                if free:  # nobody is writing it: drop it (a writer replaces it anyway)
                    path.unlink(missing_ok=True)
            damaged.append(package.name)
    if damaged:
        reporter.warning(
            f"the cached wheel(s) of {', '.join(damaged)} no longer match the lock; "
            "downloading them again"
        )
    return damaged


def _complete(dest: Path, package: LockedPackage) -> bool:
    locked = package.wheel.size  # optional in PEP 751: the sha256 decides alone then
    return dest.is_file() and (locked is None or dest.stat().st_size == locked)


def clean_parts(cache_dir: Path) -> None:
    """Remove partial downloads that nobody is writing.

    A writer holds its wheel's entry lock while a part exists, so a part whose lock is free
    was left by a process that died. (Pids say nothing here: the pods sharing a node's cache
    each have their own pid namespace.)
    """
    for directory in {part.parent for part in (cache_dir / "wheels").glob("*/*/.*.part")}:
        with prefixlock.try_hold(directory / ENTRY_LOCK) as free:
            if free:
                for part in directory.glob(".*.part"):
                    part.unlink(missing_ok=True)


def fetch_all(
    packages: Sequence[LockedPackage], cache_dir: Path, reporter: Reporter
) -> tuple[dict[str, Path], int, int]:
    """Every locked wheel as a checked local file; returns (files, bytes fetched, cache hits)."""
    hits = sum(1 for p in packages if cache_path(cache_dir, p).is_file())
    total = sum(p.wheel.size or 0 for p in packages)
    clean_parts(cache_dir)
    fetcher = Fetcher(cache_dir, reporter, total)
    try:
        with ThreadPoolExecutor(max_workers=DOWNLOAD_WORKERS) as pool:
            files = dict(
                zip((p.name for p in packages), pool.map(fetcher.fetch, packages), strict=True)
            )
    except OSError as exc:
        raise venv.os_error("download into", cache_dir, exc) from exc
    finally:
        fetcher.close()
    return files, fetcher.fetched, hits


# ---------------------------------------------------------------- installing


def requirements_text(packages: Sequence[LockedPackage], files: Mapping[str, Path]) -> str:
    """A hash-pinned requirements file naming each checked local wheel (pure)."""
    return "".join(
        f"{p.name} @ {files[p.name].resolve().as_uri()} --hash=sha256:{p.wheel.sha256}\n"
        for p in packages
    )


LINK_MODES = ("auto", "copy", "clone", "hardlink")
FICLONE = 0x40049409  # Linux ioctl: make dst share src's blocks copy-on-write (a reflink)


def link_mode(setting: str, envs: Path) -> str:
    """The installer's link mode for a setting (see the `link-mode` setting).

    `auto` keeps environments from sharing files with each other and with the installer's
    cache, so the previous environment stays a way back whatever happens to the active one:
    `clone` (copy-on-write) where the file system of the environments makes reflinks (btrfs,
    XFS, APFS), else `copy`. `hardlink` shares the files: fastest, and damage to one is
    damage to all.
    """
    if setting != "auto":
        return setting
    if sys.platform == "darwin":
        return "clone"
    return "clone" if reflinks(envs) else "copy"


def reflinks(directory: Path) -> bool:
    """Can the file system of `directory` share blocks between files (FICLONE)?"""
    import fcntl
    import tempfile

    try:
        with (
            tempfile.NamedTemporaryFile(dir=directory, prefix=".reflink-") as src,
            tempfile.NamedTemporaryFile(dir=directory, prefix=".reflink-") as dst,
        ):
            src.write(b"torchenv")
            src.flush()
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
    except OSError:
        return False
    return True


def install_command(
    python: Path, requirements: Path, uv: str | None, link: str = "copy"
) -> list[str]:
    if uv:
        return [
            uv,
            "pip",
            "install",
            "--quiet",
            "--no-config",
            "--python",
            str(python),
            "--no-deps",
            "--no-index",
            "--require-hashes",
            f"--link-mode={link}",
            "-r",
            str(requirements),
        ]
    return [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-index",
        "--require-hashes",
        "-r",
        str(requirements),
    ]


def _start(argv: Sequence[str]) -> subprocess.Popen[str]:
    try:
        return subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    except OSError as exc:
        raise EnvironmentBuildError(
            f"cannot run {argv[0]}: {exc.strerror or exc}", hint="install uv or pip, or check PATH"
        ) from exc


def _finish(process: subprocess.Popen[str], action: str) -> None:
    """Wait for a started command; EnvironmentBuildError (full disk named) when it failed."""
    out, err = process.communicate()
    if process.returncode != 0:
        from torchenv.agent.lock.resolvers.base import disk_full, tool_output

        text = tool_output(err or out)
        full = disk_full(text)
        cause = "no space left on the device of the environment or the cache: " if full else ""
        raise EnvironmentBuildError(
            f"{action} failed (exit {process.returncode}): {cause}\n{text}".rstrip(),
            hint="free disk space and run again; the active environment is untouched"
            if full
            else "the output above says why; the active environment is untouched",
            details={"argv": [str(a) for a in process.args], "stderr": text},  # type: ignore[union-attr]
        )


def _run(argv: Sequence[str], action: str) -> None:
    _finish(_start(argv), action)


def _install(
    packages: Sequence[LockedPackage],
    files: Mapping[str, Path],
    env_dir: Path,
    uv: str | None,
    link: str,
) -> None:
    requirements = env_dir / "torchenv-requirements.txt"
    requirements.write_text(requirements_text(packages, files), encoding="utf-8")
    _run(install_command(venv.python_in(env_dir), requirements, uv, link), "installing the wheels")


# ---------------------------------------------------------------- the whole step


Verifier = Callable[[Path], VerifyReport]


def _stop(process: subprocess.Popen[str] | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


def lock_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sync(
    lock: PyLock,
    raw: bytes,
    prefix: Path,
    *,
    host_facts: Mapping[str, Any],
    cache_dir: Path,
    reporter: Reporter,
    verifier: Verifier | None,
    force: bool = False,
    stamp: Mapping[str, Any] | None = None,
    lock_timeout: float | None = None,
    link_mode: str = "auto",
) -> SyncResult:
    """Build the locked environment beside the active one; switch only once it verifies.

    `raw` is the lock file's bytes (`pylock.read_lock_file`): the environment keeps a copy
    and the verified state records their digest. `link_mode` is the `link-mode` setting.
    """
    layout = venv.Layout.for_prefix(prefix)
    venv.check_prefix(layout, force=force)
    venv.ensure_home(layout)
    with prefixlock.hold(layout.lock_file, reporter=reporter, timeout=lock_timeout):
        return sync_held(
            lock, raw, layout, host_facts=host_facts, cache_dir=cache_dir, reporter=reporter,
            verifier=verifier, force=force, stamp=stamp, link_mode=link_mode,
        )  # fmt: skip


def check_lock(
    lock: PyLock,
    cache_dir: Path,
    host_facts: Mapping[str, Any],
    *,
    force: bool,
    reporter: Reporter,
) -> list[str]:
    """What sync refuses before any work: another target, a bad interpreter, bad names/URLs.

    Returns the notes it warned (the lock's own, a target that could not be checked).
    """
    for note in lock.notes:
        reporter.warning(note)
    notes = [*lock.notes, *check_target(lock, host_facts, force=force, reporter=reporter)]
    lock_python(lock)
    for package in lock.packages:
        cache_path(cache_dir, package)
        local_source(package)
        size = package.wheel.size
        if size is not None and not 0 < size <= MAX_WHEEL:
            raise LockFileError(
                f"the lock gives the wheel of {package.name} a size of {package.wheel.size} "
                f"bytes; torchenv downloads wheels of 1 byte to {size_text(MAX_WHEEL)}",
                hint="regenerate the lock with `torchenv lock`",
                details={"package": package.name, "size": package.wheel.size},
            )
    return notes


def sync_held(
    lock: PyLock,
    raw: bytes,
    layout: venv.Layout,
    *,
    host_facts: Mapping[str, Any],
    cache_dir: Path,
    reporter: Reporter,
    verifier: Verifier | None,
    force: bool = False,
    stamp: Mapping[str, Any] | None = None,
    link_mode: str = "auto",
    refresh: Sequence[str] = (),
) -> SyncResult:
    """sync for a caller that holds the prefix lock (auto, which checked the prefix).

    `refresh` names distributions whose installed files were found damaged: their entries
    in the installer's cache are dropped first, so the rebuild unpacks the checked wheels.
    """
    notes = check_lock(lock, cache_dir, host_facts, force=force, reporter=reporter)
    venv.check_prefix(layout, force=force)
    removed = venv.clean_stale(layout)
    if removed:
        reporter.info(f"removed {len(removed)} stale build(s) under {layout.envs}")
    result = _build_and_switch(
        lock, raw, layout, cache_dir=cache_dir, reporter=reporter, verifier=verifier,
        stamp=stamp or {}, link_setting=link_mode, refresh=refresh,
    )  # fmt: skip
    return dataclasses.replace(result, notes=tuple(notes))


def _build_and_switch(
    lock: PyLock,
    raw: bytes,
    layout: venv.Layout,
    *,
    cache_dir: Path,
    reporter: Reporter,
    verifier: Verifier | None,
    stamp: Mapping[str, Any],
    link_setting: str = "auto",
    refresh: Sequence[str] = (),
) -> SyncResult:
    seconds: dict[str, float] = {}
    env_id = venv.new_env_id()
    env_dir = layout.env_dir(env_id)
    old = venv.active_env(layout)
    uv = venv.find_uv()
    creating: subprocess.Popen[str] | None = None
    try:
        python = venv.find_interpreter(lock_python(lock))
        creating = _start(venv.create_venv(env_dir, python, uv))  # runs while we download
        start = time.perf_counter()
        files, fetched, hits = fetch_all(lock.packages, cache_dir, reporter)
        seconds["download"] = time.perf_counter() - start

        start = time.perf_counter()
        _finish(creating, "creating the virtual environment")
        creating = None
        fault_point("install")
        if uv and refresh:  # damaged files may have come from the installer's own cache
            _run(
                [uv, "cache", "clean", "--quiet", "--no-config", *refresh],
                "dropping damaged cache entries",
            )
        link = link_mode(link_setting, layout.envs) if uv else "copy"
        try:
            _install(lock.packages, files, env_dir, uv, link)
        except EnvironmentBuildError:
            # A cached wheel that no longer matches the lock (damaged on disk) fails the
            # installer's hash check: drop it, download it once more, install again.
            if not drop_damaged(lock.packages, files, reporter):
                raise
            files, again, _ = fetch_all(lock.packages, cache_dir, reporter)
            fetched += again
            _install(lock.packages, files, env_dir, uv, link)
        (env_dir / LOCK_COPY).write_bytes(raw)
        integrity.write_manifest(env_dir)  # what the no-op path compares the files with
        seconds["install"] = time.perf_counter() - start

        report = None
        if verifier is not None:
            start = time.perf_counter()
            report = verifier(venv.python_in(env_dir))
            seconds["verify"] = time.perf_counter() - start
            if not report.ok:
                raise VerifyError(
                    "the new environment failed verification: "
                    + "; ".join(f"{c.name}: {c.detail}" for c in report.failed()),
                    hint="nothing was switched; the active environment is unchanged",
                    details={"checks": [c.to_json() for c in report.checks]},
                )
        verified = {
            **stamp,
            "lock_sha256": lock_digest(raw),
            "site": integrity.site_stamp(env_dir),
            "verified": report is not None and report.ok,
        }
        old, adopted = venv.commit_switch(layout, env_id, verified)
    except BaseException as exc:
        _stop(creating)
        if venv.active_env(layout) != env_id:  # never the environment now active
            venv.discard(env_dir)
        if isinstance(exc, OSError):
            raise venv.os_error("build", env_dir, exc) from exc
        raise
    venv.clean_stale(layout)  # keep the active environment and the previous one
    return SyncResult(
        prefix=layout.prefix,
        env_id=env_id,
        env_dir=env_dir,
        previous=old,
        installer="uv" if uv else "pip",
        packages=tuple((p.name, p.version) for p in lock.packages),
        downloaded_bytes=fetched,
        cached=hits,
        verify=report,
        adopted=adopted,
        seconds=seconds,
    )
