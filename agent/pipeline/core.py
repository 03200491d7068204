"""`torchenv auto`: probe -> select -> lock -> sync -> verify, and nothing at all when unchanged."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchenv.agent.base.reporter import Reporter
from torchenv.agent.env import venv
from torchenv.agent.host.source import HostSource

if TYPE_CHECKING:
    from torchenv.agent.base.options import AutoOptions, LockOptions
    from torchenv.agent.env import early
    from torchenv.agent.env.sync import SyncResult
    from torchenv.agent.fleet.locksource import Lookup, SourceLock
    from torchenv.agent.lock.pylock import PyLock
    from torchenv.agent.verify.check import VerifyReport
    from torchenv.probes.report import HostReport
from torchenv.agent.pipeline.decisions import lock_mismatches, request_key, unchanged
from torchenv.agent.pipeline.stages import (
    Where,
    _read_bytes,
    _toml,
    default_locker,
    locate,
    verifier_for,
)

# (host, requirements, lock options, reporter) -> the lock; the seam between auto and lock_for.
Locker = Callable[["HostReport", Sequence[str], "LockOptions", Reporter], "PyLock"]


THIS_MACHINE = HostSource()  # no recording, no report file, no facts given


@dataclass(frozen=True)
class AutoResult:
    """What `auto` did (or found unchanged): the host, the build, the lock, the sync, times."""

    action: str  # "unchanged" (nothing to do) or "synced"
    prefix: Path
    lock_path: Path
    relocked: bool
    fingerprint: str
    host: Mapping[str, Any]  # HostReport.target_facts()
    backend: str | None
    torch: str | None
    reasons: tuple[str, ...]
    env_id: str | None
    installed: tuple[tuple[str, str], ...]
    verify: VerifyReport | None
    stages: Mapping[str, float]
    seconds: float
    sync: SyncResult | None = None
    notes: tuple[str, ...] = field(default=())
    skipped: tuple[str, ...] = field(default=())  # better builds the index does not hold
    published: SourceLock | None = None  # the lock taken from lock-source (docs/fleet.md)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "prefix": str(self.prefix),
            "lock": str(self.lock_path),
            "relocked": self.relocked,
            "fingerprint": self.fingerprint,
            "host": dict(self.host),
            "backend": self.backend,
            "torch": self.torch,
            "reasons": list(self.reasons),
            "skipped": list(self.skipped),
            "env": self.env_id,
            "installed": [{"name": n, "version": v} for n, v in self.installed],
            "verify": self.verify.to_json() if self.verify else None,
            "stages": {k: round(v, 4) for k, v in self.stages.items()},
            "seconds": round(self.seconds, 4),
            "notes": list(self.notes),
            "published": self.published.to_json() if self.published else None,
        }


class _Timed(Reporter):
    """Passes events on and keeps each stage's time for the summary."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.timings: dict[str, float] = {}

    def stage_started(self, stage: str, detail: str = "") -> None:
        self.inner.stage_started(stage, detail)

    def stage_finished(self, stage: str, seconds: float, detail: str = "") -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds
        self.inner.stage_finished(stage, seconds, detail)

    def progress(self, task: str, done: int, total: int | None) -> None:
        self.inner.progress(task, done, total)

    def info(self, message: str) -> None:
        self.inner.info(message)

    def warning(self, message: str) -> None:
        self.inner.warning(message)


# ---------------------------------------------------------------- pure decisions


# ---------------------------------------------------------------- edges


def auto(
    requirements: Sequence[str] = (),
    *,
    options: AutoOptions,
    source: HostSource = THIS_MACHINE,
    reporter: Reporter | None = None,
    cwd: Path | None = None,
    lock_path: Path | None = None,
    force: bool = False,
    locker: Locker | None = None,
) -> AutoResult:
    """Make the prefix hold a verified environment for this host and request.

    Does no network and no install when the host, the request and the lock are what the last
    verified sync recorded and the environment's files have not changed since.
    """
    started = time.perf_counter()
    timed = _Timed(reporter or Reporter())
    where = locate(requirements, options.place, cwd=cwd or Path.cwd(), lock_path=lock_path)
    with timed.stage("probe"):
        host = source.load(options.probe)
    values = options.lock.request_values()
    request = request_key(where.requirements, values)
    layout = venv.Layout.for_prefix(where.prefix)
    from torchenv.agent.fleet import locksource

    published = locksource.for_host(
        options.lock_source,
        host,
        requirements=where.requirements,
        wanted=options.lock.selection,
        local=_read_bytes(where.lock_path),
        reporter=timed,
    )  # the lock published for this host's class, when lock-source names a source
    done = _done_before(where, layout, host=host, request=request, timed=timed,
                        started=started, published=published)  # fmt: skip
    if done is not None:
        return done
    return _run(
        where=where, host=host, options=options, values=values, request=request,
        timed=timed, started=started, force=force, locker=locker or default_locker,
        devices_here=source.devices_here, published=published,
    )  # fmt: skip


def _done_before(
    where: Where,
    layout: venv.Layout,
    *,
    host: HostReport,
    request: str,
    timed: _Timed,
    started: float,
    published: Lookup,
) -> AutoResult | None:
    """The no-op result when the last verified state still holds (no network, no install)."""
    raw = _read_bytes(where.lock_path)
    if raw is None:
        return None
    active = venv.active_env(layout)
    if not unchanged(
        venv.read_state(layout),
        active=active,
        fingerprint=host.fingerprint(),
        request=request,
        lock_sha256=published.sha256(raw),
        site=_site(layout, active),
    ):
        return None
    from torchenv.agent.env import integrity

    assert active is not None  # unchanged() holds only for an active environment
    if integrity.quick_check(layout.env_dir(active)) != []:  # damaged, or no manifest
        return None
    return _noop(
        where=where, host=host, raw=raw, active=active, timings=timed.timings, started=started
    )


def _site(layout: venv.Layout, active: str | None) -> int | None:
    if active is None:
        return None
    from torchenv.agent.env.integrity import site_stamp

    return site_stamp(layout.env_dir(active))


def _noop(
    *,
    where: Where,
    host: HostReport,
    raw: bytes,
    active: str | None,
    timings: Mapping[str, float],
    started: float,
) -> AutoResult:
    doc = _toml(raw)
    table = doc.get("tool", {}).get("torchenv", {})
    packages = doc.get("packages", [])
    installed = tuple((str(p.get("name")), str(p.get("version"))) for p in packages)
    torch = next((v for n, v in installed if n == "torch"), None)
    return AutoResult(
        action="unchanged", prefix=where.prefix, lock_path=where.lock_path, relocked=False,
        fingerprint=host.fingerprint(), host=host.target_facts(), backend=table.get("backend"),
        torch=torch, reasons=tuple(table.get("reasons", ())), env_id=active,
        skipped=tuple(table.get("skipped", ())),
        installed=installed, verify=None, stages=dict(timings),
        seconds=time.perf_counter() - started,
        notes=("host, request and lock unchanged; the environment verified before",),
    )  # fmt: skip


def _run(
    *,
    where: Where,
    host: HostReport,
    options: AutoOptions,
    values: Mapping[str, Any],
    request: str,
    timed: _Timed,
    started: float,
    force: bool,
    locker: Locker,
    devices_here: bool,
    published: Lookup,
) -> AutoResult:
    from torchenv.agent.env import early

    layout = venv.Layout.for_prefix(where.prefix)
    venv.check_prefix(layout, force=force)  # before any network work
    with early.holding(layout, timed):
        # Another process may have done the same work while this one waited for the lock.
        done = _done_before(where, layout, host=host, request=request, timed=timed,
                            started=started, published=published)  # fmt: skip
        if done is not None:
            return done
        from torchenv.agent.base.fsutil import remove_stale_tmp

        remove_stale_tmp(where.lock_path.parent, where.lock_path.name)
        from torchenv.agent.lock.resolvers.target import target_of

        # the new environment is made while the lock is read or made (agent/env/early.py)
        with early.building(layout, target_of(host).python_minor, timed) as build:
            return _relock_and_sync(
                where=where, layout=layout, host=host, options=options, values=values,
                request=request, timed=timed, started=started, force=force, locker=locker,
                devices_here=devices_here, published=published, build=build,
            )  # fmt: skip


def _relock_and_sync(
    *,
    where: Where,
    layout: venv.Layout,
    host: HostReport,
    options: AutoOptions,
    values: Mapping[str, Any],
    request: str,
    timed: _Timed,
    started: float,
    force: bool,
    locker: Locker,
    devices_here: bool,
    published: Lookup,
    build: early.Build | None,
) -> AutoResult:
    from torchenv.agent.base.errors import LockFileError
    from torchenv.agent.env import integrity, sync
    from torchenv.agent.fleet import locksource
    from torchenv.agent.lock.pylock import parse_pylock, write_pylock

    raw = _read_bytes(where.lock_path)
    notes: list[str] = list(published.notes)
    active = venv.active_env(layout)
    damage = integrity.quick_check(layout.env_dir(active)) if active else None
    if damage:
        notes.append(
            f"files changed since the environment was built: {integrity.describe(damage)}; "
            "rebuilding it from the locked wheels"
        )
    known = venv.read_state(layout).get("damaged")
    refresh = sorted({d.dist for d in damage or []} | set(known if isinstance(known, list) else []))
    lock: PyLock | None = None
    found = published.found
    if found is not None:  # the class's published lock, checked: installed as it is
        if found.raw != raw:
            locksource.keep_copy(where.lock_path, found.raw)
        lock, raw = found.lock, found.raw
    elif raw is not None:
        try:
            lock = parse_pylock(raw, source=str(where.lock_path))
        except LockFileError as exc:
            notes.append(f"the existing lock is unusable ({exc}); locking again")
            lock = None
    if lock is not None and found is None:
        misfit = lock_mismatches(
            lock.tool_torchenv,
            fingerprint=host.fingerprint(),
            requirements=where.requirements,
            settings=values,
        )
        if misfit:
            notes.append("locking again: " + "; ".join(misfit))
            lock = None
    relocked = lock is None
    if lock is None:
        lock = locker(host, where.requirements, options.lock, timed)
        raw = write_pylock(where.lock_path, lock)
    assert raw is not None  # read with the lock, or written with it
    from torchenv.agent.lock.resolvers.target import target_of

    result = sync.sync_held(
        lock.for_target(target_of(host)), raw, layout, host_facts=host.target_facts(),
        cache_dir=options.place.cache_dir, reporter=timed,
        verifier=verifier_for(host, lock, devices_here=devices_here), force=force,
        stamp={"fingerprint": host.fingerprint(), "request": request},
        link_mode=options.place.link_mode, refresh=refresh, build=build,
    )  # fmt: skip
    for stage in ("download", "install", "verify"):
        if stage in result.seconds:
            timed.timings[stage] = result.seconds[stage]
    table = lock.tool_torchenv
    torch = lock.package("torch")
    return AutoResult(
        action="synced", prefix=where.prefix, lock_path=where.lock_path, relocked=relocked,
        fingerprint=host.fingerprint(), host=host.target_facts(),
        backend=table.get("backend"), torch=torch.version if torch else None,
        reasons=tuple(table.get("reasons", ())), env_id=result.env_id,
        skipped=tuple(table.get("skipped", ())),
        installed=result.packages, verify=result.verify, stages=dict(timed.timings),
        seconds=time.perf_counter() - started, sync=result,
        notes=(*notes, *result.notes), published=found,
    )  # fmt: skip
