"""Materialize a pylock.toml: fetch the locked wheels (hash-checked), build beside, switch."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchenv.agent.base.errors import (
    EnvironmentBuildError,
    LockFileError,
    VerifyError,
    os_error,
)
from torchenv.agent.base.faults import fault_point
from torchenv.agent.base.limits import MAX_WHEEL, size_text
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.base.uvbin import find_uv
from torchenv.agent.env import create, early, integrity, switch, venv
from torchenv.agent.env.fetch import cache_path, drop_damaged, fetch_all, local_source, missing
from torchenv.agent.env.install import _install, _run, link_mode
from torchenv.agent.env.targetcheck import check_target, lock_python
from torchenv.agent.lock.pylock import PyLock
from torchenv.agent.verify.check import VerifyReport

LOCK_COPY = venv.LOCK_COPY  # the lock an environment was built from, inside it


@dataclass(frozen=True)
class SyncResult:
    """What a sync did: the environment it made or kept, its packages, downloads and times."""

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


# ---------------------------------------------------------------- fetching


# ---------------------------------------------------------------- installing


# ---------------------------------------------------------------- the whole step


Verifier = Callable[[Path], VerifyReport]


def _verify_new(
    verifier: Verifier | None, env_dir: Path, seconds: dict[str, float], reporter: Reporter
) -> VerifyReport | None:
    """Run the verifier in the new environment; VerifyError (nothing switched) if it fails."""
    if verifier is None:
        return None
    start = time.perf_counter()
    reporter.stage_started("verify", "import torch, compute on each device")
    report = verifier(venv.python_in(env_dir))
    seconds["verify"] = time.perf_counter() - start
    reporter.stage_finished("verify", seconds["verify"])
    if not report.ok:
        raise VerifyError(
            "the new environment failed verification: "
            + "; ".join(f"{c.name}: {c.detail}" for c in report.failed()),
            hint="nothing was switched; the active environment is unchanged",
            details={"checks": [c.to_json() for c in report.checks]},
        )
    return report


def _verify_with_manifest(
    verifier: Verifier | None, env_dir: Path, seconds: dict[str, float], reporter: Reporter
) -> VerifyReport | None:
    """Verify the new environment while a thread writes its stat manifest (what the no-op
    path compares the files with): the verifier waits on the environment's interpreter, the
    manifest on lstat, and neither changes a file the other reads. Both end before this
    returns, whichever fails."""
    failed: list[BaseException] = []

    def write() -> None:
        try:
            integrity.write_manifest(env_dir)
            _make_durable(env_dir / integrity.MANIFEST, env_dir / LOCK_COPY)
        except BaseException as exc:  # raised in the caller's thread below
            failed.append(exc)

    manifest = threading.Thread(target=write, name="torchenv-manifest", daemon=True)
    manifest.start()
    try:
        report = _verify_new(verifier, env_dir, seconds, reporter)
    finally:
        manifest.join()
    if failed:
        raise failed[0]
    return report


def _make_durable(*paths: Path) -> None:
    """fsync the environment's own records while the verifier runs. The switch's intent
    write fsyncs the state before the prefix moves, and where a file system commits the data
    written before along with it (ext4's ordered journal: the whole new environment, tens of
    megabytes to gigabytes), that wait is taken here, beside the verifier, instead of after
    it. Nothing is lost where a file system does not: the intent write waits as before."""
    for path in paths:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))  # Windows: write access
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
    held = early.held(prefix, raw, force=force, reporter=reporter, timeout=lock_timeout)
    with held as (layout, build):
        return sync_held(
            lock, raw, layout, host_facts=host_facts, cache_dir=cache_dir, reporter=reporter,
            verifier=verifier, force=force, stamp=stamp, link_mode=link_mode, build=build,
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
    build: early.Build | None = None,
) -> SyncResult:
    """sync for a caller that holds the prefix lock (auto, which checked the prefix).

    `refresh` names distributions whose installed files were found damaged: their entries
    in the installer's cache are dropped first, so the rebuild unpacks the checked wheels.
    `build` is the new environment the caller started after cleaning (early.building).
    """
    notes = check_lock(lock, cache_dir, host_facts, force=force, reporter=reporter)
    venv.check_prefix(layout, force=force)
    if build is None:
        early.clean(layout, reporter)
    result = _build_and_switch(
        lock, raw, layout, cache_dir=cache_dir, reporter=reporter, verifier=verifier,
        stamp=stamp or {}, link_setting=link_mode, refresh=refresh, build=build,
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
    build: early.Build | None = None,
) -> SyncResult:
    seconds: dict[str, float] = {}
    old = venv.active_env(layout)
    uv = find_uv()
    creating = build.creating if build is not None else None
    env_id = build.env_id if build is not None else venv.new_env_id(layout)
    env_dir = layout.env_dir(env_id)
    try:
        python = create.find_interpreter(lock_python(lock))
        if build is not None and build.python != python:  # not what the bytes seemed to say
            build.abandon(layout)
            creating, env_id = None, venv.new_env_id(layout)
            env_dir = layout.env_dir(env_id)
        if creating is None:
            downloads = missing(lock.packages, cache_dir) > 0
            creating = create.Creation(env_dir, python, uv, warm=downloads).start()
        start = time.perf_counter()
        files, fetched, hits = fetch_all(lock.packages, cache_dir, reporter)
        seconds["download"] = time.perf_counter() - start

        start = time.perf_counter()
        reporter.stage_started(
            "install", f"{len(lock.packages)} packages with {'uv' if uv else 'pip'}"
        )
        link = link_mode(link_setting, layout.envs) if uv else "copy"  # while it is made
        creating.join()
        creating = None
        fault_point("install")
        if uv and refresh:  # damaged files may have come from the installer's own cache
            _run(
                [uv, "cache", "clean", "--quiet", "--no-config", *refresh],
                "dropping damaged cache entries",
            )
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
        seconds["install"] = time.perf_counter() - start
        reporter.stage_finished("install", seconds["install"])

        report = _verify_with_manifest(verifier, env_dir, seconds, reporter)
        verified = {
            **stamp,
            "lock_sha256": lock_digest(raw),
            "site": integrity.site_stamp(env_dir),
            "verified": report is not None and report.ok,
        }
        old, adopted = switch.commit_switch(layout, env_id, verified)
    except BaseException as exc:
        if creating is not None:
            creating.stop()
        if venv.active_env(layout) != env_id:  # never the environment now active
            venv.discard(env_dir)
        if isinstance(exc, OSError):
            raise os_error("build", env_dir, exc) from exc
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
