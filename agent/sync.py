"""Materialize a pylock.toml: fetch the locked wheels (hash-checked), build beside, switch."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
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

from torchenv.agent import prefixlock, venv
from torchenv.agent.errors import (
    EnvironmentBuildError,
    IndexError_,
    IntegrityError,
    LockFileError,
    VerifyError,
)
from torchenv.agent.pylock import LockedPackage, PyLock, target_changes
from torchenv.agent.reporter import Reporter
from torchenv.agent.verify import VerifyReport

LOCK_COPY = "torchenv-pylock.toml"  # the lock an environment was built from, inside it
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


# ---------------------------------------------------------------- fetching


def cached_wheel(wheels_dir: Path, sha256: str, filename: str) -> Path:
    """Content-addressed: a file there was checked against its hash when it was written."""
    return wheels_dir / sha256[:2] / sha256 / filename


def cache_path(cache_dir: Path, package: LockedPackage) -> Path:
    return cached_wheel(cache_dir / "wheels", package.wheel.sha256, package.wheel.name)


class Fetcher:
    """Downloads locked wheels into the cache, checking size and sha256 while streaming."""

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
            self.reporter.progress("download", self.done, self.total)

    def _chunks(self, url: str) -> Any:
        parsed = urlparse(url)
        if parsed.scheme in ("", "file"):
            path = Path(unquote(parsed.path)) if parsed.scheme else Path(url)
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk
            return
        import httpx

        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=httpx.Timeout(60.0, connect=15.0), follow_redirects=True
                )
        with self._client.stream("GET", url) as response:
            response.raise_for_status()
            yield from response.iter_bytes(CHUNK)

    def fetch(self, package: LockedPackage) -> Path:
        dest = cache_path(self.cache_dir, package)
        if _complete(dest, package):
            self._advance(dest.stat().st_size)
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        # One download per wheel for every process sharing the cache (the pods of a node):
        # the others wait for it, then find the file. The kernel drops the lock of a writer
        # that dies, so waiting has no bound of its own; the download's timeouts bound it.
        lock = dest.parent / ENTRY_LOCK
        with prefixlock.hold(lock, reporter=self.reporter, timeout=math.inf):
            if _complete(dest, package):
                self._advance(dest.stat().st_size)
                return dest
            self._download(package, dest)
        return dest

    def _download(self, package: LockedPackage, dest: Path) -> None:
        locked = package.wheel.size  # optional in PEP 751: the sha256 decides alone then
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")
        digest, size = hashlib.sha256(), 0
        try:
            with tmp.open("wb") as out:
                for chunk in self._chunks(package.wheel.url):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    self.fetched += len(chunk)
                    self._advance(len(chunk))
                    venv.fault_point("download")
            if digest.hexdigest() != package.wheel.sha256 or locked not in (None, size):
                raise IntegrityError(
                    f"{package.wheel.name} from {package.wheel.url} does not match the lock "
                    f"(sha256 {digest.hexdigest()[:16]}…, {size} bytes; the lock has "
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
    except IntegrityError:
        raise
    except Exception as exc:
        import httpx

        if not isinstance(exc, (httpx.HTTPError, ValueError)):
            raise
        raise IndexError_(
            f"downloading the locked wheels failed: {exc}",
            hint="check the network and the index URLs in the lock, then run again; nothing "
            "was switched",
            details={"error": str(exc)},
        ) from exc
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


def install_command(python: Path, requirements: Path, uv: str | None) -> list[str]:
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
        text = (err or out).strip()
        full = "no space left" in text.lower()
        raise EnvironmentBuildError(
            f"{action} failed (exit {process.returncode}): "
            + (text.splitlines()[-1] if text else ""),
            hint="free disk space and run again"
            if full
            else "see the details; the active environment is untouched",
            details={"argv": [str(a) for a in process.args], "stderr": text[-4000:]},  # type: ignore[union-attr]
        )


def _run(argv: Sequence[str], action: str) -> None:
    _finish(_start(argv), action)


def site_stamp(env_dir: Path) -> int:
    """Changes when anything installs into or removes from the environment's site-packages."""
    found = sorted(env_dir.glob("lib/python*/site-packages")) or sorted(
        env_dir.glob("Lib/site-packages")
    )
    return found[0].stat().st_mtime_ns if found else 0


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
) -> SyncResult:
    """Build the locked environment beside the active one; switch only once it verifies.

    `raw` is the lock file's bytes (`pylock.read_lock_file`): the environment keeps a copy
    and the verified state records their digest.
    """
    for note in lock.notes:
        reporter.warning(note)
    notes = [*lock.notes, *check_target(lock, host_facts, force=force, reporter=reporter)]
    layout = venv.Layout.for_prefix(prefix)
    venv.check_prefix(layout, force=force)
    venv.ensure_home(layout)
    with prefixlock.hold(layout.lock_file, reporter=reporter, timeout=lock_timeout):
        removed = venv.clean_stale(layout)
        if removed:
            reporter.info(f"removed {len(removed)} stale build(s) under {layout.envs}")
        result = _build_and_switch(
            lock,
            raw,
            layout,
            cache_dir=cache_dir,
            reporter=reporter,
            verifier=verifier,
            stamp=stamp or {},
        )
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
) -> SyncResult:
    seconds: dict[str, float] = {}
    env_id = venv.new_env_id()
    env_dir = layout.env_dir(env_id)
    old = venv.active_env(layout)
    uv = venv.find_uv()
    creating: subprocess.Popen[str] | None = None
    try:
        python = venv.find_interpreter(lock.tool_torchenv.get("python"))
        creating = _start(venv.create_venv(env_dir, python, uv))  # runs while we download
        start = time.perf_counter()
        files, fetched, hits = fetch_all(lock.packages, cache_dir, reporter)
        seconds["download"] = time.perf_counter() - start

        start = time.perf_counter()
        _finish(creating, "creating the virtual environment")
        creating = None
        requirements = env_dir / "torchenv-requirements.txt"
        requirements.write_text(requirements_text(lock.packages, files), encoding="utf-8")
        venv.fault_point("install")
        _run(install_command(venv.python_in(env_dir), requirements, uv), "installing the wheels")
        (env_dir / LOCK_COPY).write_bytes(raw)
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
        adopted = venv.switch(layout, env_id)
    except OSError as exc:
        _stop(creating)
        venv.discard(env_dir)
        raise venv.os_error("build", env_dir, exc) from exc
    except BaseException:
        _stop(creating)
        venv.discard(env_dir)
        raise
    verified = {
        **stamp,
        "lock_sha256": lock_digest(raw),
        "site": site_stamp(env_dir),
        "verified": report is not None and report.ok,
    }
    venv.record_switch(layout, old, env_id, verified)
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
