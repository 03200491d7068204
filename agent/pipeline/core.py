"""`torchenv auto`: probe -> select -> lock -> sync -> verify, and nothing at all when unchanged."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchenv.agent.base.reporter import Reporter
from torchenv.agent.env import venv

if TYPE_CHECKING:
    from torchenv.agent.base.settings import Settings
    from torchenv.agent.env.sync import SyncResult
    from torchenv.agent.fleet.locksource import Lookup, SourceLock
    from torchenv.agent.host.source import HostFlags
    from torchenv.agent.lock.pylock import PyLock
    from torchenv.agent.verify.check import Expectation, VerifyReport
    from torchenv.probes.report import HostReport

REQUEST_KEYS = ("backend", "channel", "torch-index-url", "index-url", "resolver")

# (host, requirements, settings, reporter) -> the lock; the seam between auto and lock_for.
Locker = Callable[["HostReport", Sequence[str], "Settings", Reporter], "PyLock"]


@dataclass(frozen=True)
class HostSource:
    """Where the host comes from (the --replay / --host-report / flag options)."""

    replay: Path | None = None
    host_report: Path | None = None
    flags: HostFlags | None = None

    @property
    def devices_here(self) -> bool:
        """Only a live probe of this machine has its devices here to exercise."""
        return (
            self.replay is None
            and self.host_report is None
            and not (self.flags is not None and self.flags.any())
        )


@dataclass(frozen=True)
class AutoResult:
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


def request_key(requirements: Sequence[str], settings: Mapping[str, Any]) -> str:
    """What the user asked for, as a short hash: requirements plus the settings that decide."""
    payload = {"requirements": sorted(requirements), **{k: settings.get(k) for k in REQUEST_KEYS}}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _norm(requirements: Sequence[str]) -> list[str]:
    from packaging.requirements import InvalidRequirement, Requirement

    out = []
    for text in requirements:
        try:
            out.append(str(Requirement(str(text))))
        except InvalidRequirement:
            out.append(str(text))
    return sorted(out)


def lock_mismatches(
    table: Mapping[str, Any],
    *,
    fingerprint: str,
    requirements: Sequence[str],
    settings: Mapping[str, Any],
) -> list[str]:
    """Why an existing lock's [tool.torchenv] does not fit this host and request (empty: fits)."""
    out = []
    if table.get("fingerprint") != fingerprint:
        out.append(f"host fingerprint {table.get('fingerprint')} != {fingerprint}")
    if _norm(table.get("requirements") or []) != _norm(requirements):
        out.append(f"requirements {table.get('requirements')} != {list(requirements)}")
    backend = settings.get("backend")
    if backend not in (None, "auto") and table.get("backend") != backend:
        out.append(f"backend {table.get('backend')} != {backend}")
    for key in ("channel", "torch-index-url", "index-url"):
        wanted = settings.get(key)
        if (
            wanted is not None
            and key in table
            and str(table[key]).rstrip("/") != str(wanted).rstrip("/")
        ):
            out.append(f"{key} {table[key]} != {wanted}")
    return out


def unchanged(
    state: Mapping[str, Any],
    *,
    active: str | None,
    fingerprint: str,
    request: str,
    lock_sha256: str | None,
    site: int | None,
) -> bool:
    """The last verified state still holds: same env, host, request, lock, installed files."""
    verified = state.get("verified")
    if not isinstance(verified, Mapping) or not verified.get("verified") or active is None:
        return False
    return (
        verified.get("env") == active
        and verified.get("fingerprint") == fingerprint
        and verified.get("request") == request
        and verified.get("lock_sha256") == lock_sha256
        and verified.get("site") == site
    )


def with_torch(requirements: Sequence[str]) -> list[str]:
    """The request always holds torch: add it when no requirement names it."""
    import re

    names = {re.split(r"[\s\[<>=!~;@(]", r.strip(), maxsplit=1)[0].lower() for r in requirements}
    return list(requirements) if "torch" in names else ["torch", *requirements]


# ---------------------------------------------------------------- edges


@dataclass(frozen=True)
class Where:
    """The prefix and lock file auto works on, and the requirements it starts from."""

    prefix: Path
    lock_path: Path
    requirements: tuple[str, ...]
    project: Path | None


def locate(
    requirements: Sequence[str],
    settings: Settings,
    *,
    cwd: Path,
    lock_path: Path | None = None,
) -> Where:
    """A project (pyproject.toml in cwd or above) gives the requirements, .venv and pylock.toml
    beside it; --prefix elsewhere keeps the lock in the prefix's torchenv directory."""
    from torchenv.agent.base.settings import find_pyproject, project_dependencies, read_toml

    pyproject = find_pyproject(cwd)
    project = pyproject.parent if pyproject is not None else None
    prefix_value = settings["prefix"]
    base = project if project is not None and prefix_value.source == "default" else cwd
    prefix = Path(prefix_value.value)
    prefix = prefix if prefix.is_absolute() else base / prefix
    reqs = list(requirements)
    if not reqs and pyproject is not None:
        reqs = project_dependencies(pyproject, read_toml(pyproject))
    if lock_path is None:
        in_project = project is not None and prefix_value.source == "default"
        lock_path = (
            project / "pylock.toml"
            if in_project and project is not None
            else venv.Layout.for_prefix(prefix).home / "pylock.toml"
        )
    return Where(venv.Layout.for_prefix(prefix).prefix, lock_path, tuple(with_torch(reqs)), project)


@dataclass(frozen=True)
class _Chosen:
    """The selected build, as lock_for reads it."""

    backend: str
    channel: str
    torch: str | None
    reasons: tuple[str, ...]
    skipped: tuple[str, ...] = ()


def default_locker(
    host: HostReport, requirements: Sequence[str], settings: Settings, reporter: Reporter
) -> PyLock:
    """select, then lock_for with the index client and the resolver the settings name."""
    from torchenv.agent.index.client import IndexClient
    from torchenv.agent.lock.locker import lock_for
    from torchenv.agent.lock.resolvers import choose_resolver
    from torchenv.agent.pipeline.select_with_index import report_selection, run_selection

    cache = Path(settings.get_value("cache-dir"))
    from torchenv.agent.pipeline.select_with_index import page_max_age

    with IndexClient(
        cache_dir=cache, reporter=reporter, page_max_age=page_max_age(settings)
    ) as client:
        with reporter.stage("select"):
            selection = run_selection(host, tuple(requirements), settings, client=client)
        assert selection.backend is not None  # run_selection raises when nothing fits
        report_selection(selection, reporter)
        chosen = _Chosen(
            selection.backend,
            selection.channel,
            selection.torch,
            selection.reasons,
            selection.skipped,
        )
        return lock_for(
            requirements, host, chosen, settings,
            resolver=choose_resolver(settings.get_value("resolver"), reporter), client=client,
            reporter=reporter,
        )  # fmt: skip


def expectation(lock: PyLock) -> Expectation:
    from torchenv.agent.verify.check import Expectation
    from torchenv.backends.vocabulary import backend_kind

    torch = lock.package("torch")
    backend = lock.tool_torchenv.get("backend")
    if not isinstance(backend, str) and torch is not None:  # another tool's lock: the label
        backend = torch.version.partition("+")[2] or None
        if backend is not None and backend_kind(backend) is None:
            backend = None
    return Expectation(
        torch.version if torch else None, backend if isinstance(backend, str) else None
    )


def verifier_for(
    host: HostReport, lock: PyLock, *, devices_here: bool
) -> Callable[[Path], VerifyReport]:
    from torchenv.agent.verify import check as verify

    plan = verify.plan_devices(host, expectation(lock).backend, devices_here=devices_here)
    return lambda python: verify.verify_env(python, expectation(lock), plan)


def _toml(raw: bytes) -> dict[str, Any]:
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    doc: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    return doc


def _read_bytes(path: Path) -> bytes | None:
    """The lock's bytes (at most MAX_LOCK_FILE), or None: a missing or unreadable lock."""
    from torchenv.agent.base.fsutil import read_bounded
    from torchenv.agent.base.limits import MAX_LOCK_FILE, TooLarge

    try:
        return read_bounded(path, MAX_LOCK_FILE, "lock file")
    except (OSError, TooLarge):
        return None


def auto(
    requirements: Sequence[str] = (),
    *,
    settings: Settings,
    source: HostSource = HostSource(),
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
    from torchenv.agent.host.source import load_host, probe_settings

    started = time.perf_counter()
    timed = _Timed(reporter or Reporter())
    where = locate(requirements, settings, cwd=cwd or Path.cwd(), lock_path=lock_path)
    with timed.stage("probe"):
        host = load_host(
            replay=source.replay,
            host_report=source.host_report,
            flags=source.flags,
            **probe_settings(settings),
        )
    values = {k: settings.get_value(k) for k in REQUEST_KEYS}
    request = request_key(where.requirements, values)
    layout = venv.Layout.for_prefix(where.prefix)
    from torchenv.agent.fleet import locksource

    published = locksource.for_host(
        settings,
        host,
        requirements=where.requirements,
        local=_read_bytes(where.lock_path),
        reporter=timed,
    )  # the lock published for this host's class, when lock-source names a source
    done = _done_before(where, layout, host=host, request=request, timed=timed,
                        started=started, published=published)  # fmt: skip
    if done is not None:
        return done
    return _run(
        where=where, host=host, settings=settings, values=values, request=request,
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
    settings: Settings,
    values: Mapping[str, Any],
    request: str,
    timed: _Timed,
    started: float,
    force: bool,
    locker: Locker,
    devices_here: bool,
    published: Lookup,
) -> AutoResult:
    from torchenv.agent.env import prefixlock

    layout = venv.Layout.for_prefix(where.prefix)
    venv.check_prefix(layout, force=force)  # before any network work
    venv.ensure_home(layout)
    with prefixlock.hold(layout.lock_file, reporter=timed):
        # Another process may have done the same work while this one waited for the lock.
        done = _done_before(where, layout, host=host, request=request, timed=timed,
                            started=started, published=published)  # fmt: skip
        if done is not None:
            return done
        from torchenv.agent.base.fsutil import remove_stale_tmp

        remove_stale_tmp(where.lock_path.parent, where.lock_path.name)
        return _relock_and_sync(
            where=where, layout=layout, host=host, settings=settings, values=values,
            request=request, timed=timed, started=started, force=force, locker=locker,
            devices_here=devices_here, published=published,
        )  # fmt: skip


def _relock_and_sync(
    *,
    where: Where,
    layout: venv.Layout,
    host: HostReport,
    settings: Settings,
    values: Mapping[str, Any],
    request: str,
    timed: _Timed,
    started: float,
    force: bool,
    locker: Locker,
    devices_here: bool,
    published: Lookup,
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
        lock = locker(host, where.requirements, settings, timed)
        raw = write_pylock(where.lock_path, lock)
    assert raw is not None  # read with the lock, or written with it
    from torchenv.agent.lock.resolvers.target import target_of

    result = sync.sync_held(
        lock.for_target(target_of(host)), raw, layout, host_facts=host.target_facts(),
        cache_dir=Path(settings.get_value("cache-dir")), reporter=timed,
        verifier=verifier_for(host, lock, devices_here=devices_here), force=force,
        stamp={"fingerprint": host.fingerprint(), "request": request},
        link_mode=settings.get_value("link-mode"), refresh=refresh,
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
