"""`--dry-run` for `auto` and `sync`: what would be locked, installed and switched; nothing is.

A dry run reads the host, the lock, the prefix and the index (through the HTTP cache, which it
may fill) and resolves when the lock does not fit, but it writes no lock, creates no
environment, takes no prefix lock and switches nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchenv.agent.env import venv

if TYPE_CHECKING:
    from torchenv.agent.base.reporter import Reporter
    from torchenv.agent.base.settings import Settings
    from torchenv.agent.host.source import HostSource
    from torchenv.agent.lock.pylock import PyLock
    from torchenv.agent.pipeline.commands import Place
    from torchenv.agent.pipeline.core import Locker
    from torchenv.probes.report import HostReport


@dataclass(frozen=True)
class Plan:
    """What a sync or an auto would do."""

    action: str  # "unchanged" or "sync"
    prefix: Path
    active: str | None  # the environment the prefix points at now
    lock_path: Path | None
    lock: str  # "reused", "new" (auto would write it), "published" or "given" (sync)
    backend: str | None
    torch: str | None
    packages: tuple[tuple[str, str], ...]  # what the new environment would hold
    changes: tuple[str, ...]  # against the active environment: "+ numpy 2.3", "torch a -> b"
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "action": self.action,
            "prefix": str(self.prefix),
            "active": self.active,
            "lock_path": str(self.lock_path) if self.lock_path else None,
            "lock": self.lock,
            "backend": self.backend,
            "torch": self.torch,
            "packages": [{"name": n, "version": v} for n, v in self.packages],
            "changes": list(self.changes),
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        head = f"dry run: {self.prefix}"
        if self.action == "unchanged":
            return [f"{head}: nothing to do (host, request and lock unchanged; verified before)"]
        where = self.lock_path or "?"
        text = {"new": "would be written", "reused": "fits; reused"}.get(self.lock, self.lock)
        lines = [
            f"{head}: would build a new environment and switch to it"
            + (f" (from {self.active})" if self.active else ""),
            f"  lock     {where} ({text})",
            f"  choice   torch {self.torch or '?'} ({self.backend or '?'})",
        ]
        lines += [f"  install  {n} {v}" for n, v in self.packages]
        lines += [f"  change   {c}" for c in self.changes]
        lines += [f"  note     {n}" for n in self.notes]
        return [*lines, "nothing was changed (--dry-run)"]


def changes(old: Sequence[tuple[str, str]], new: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """The packages added, removed and changed between two package lists."""
    before, after = dict(old), dict(new)
    out = [f"+ {n} {v}" for n, v in after.items() if n not in before]
    out += [f"- {n} {v}" for n, v in before.items() if n not in after]
    out += [f"{n} {before[n]} -> {v}" for n, v in after.items() if before.get(n, v) != v]
    return tuple(sorted(out, key=lambda line: line.lstrip("+- ")))


def active_packages(layout: venv.Layout) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """The active environment and the packages of the lock it was built from."""
    from torchenv.agent.base.errors import LockFileError
    from torchenv.agent.lock.pylock import read_pylock

    active = venv.active_env(layout)
    if active is None:
        return None, ()
    copy = venv.lock_copy(layout.env_dir(active))
    try:
        lock = read_pylock(copy)
    except LockFileError:
        return active, ()
    return active, tuple((p.name, p.version) for p in lock.packages)


def _plan(
    lock: PyLock, layout: venv.Layout, lock_path: Path | None, how: str, notes: Sequence[str]
) -> Plan:
    active, before = active_packages(layout)
    packages = tuple(sorted((p.name, p.version) for p in lock.packages))
    torch = lock.package("torch")
    return Plan(
        action="sync", prefix=layout.prefix, active=active, lock_path=lock_path, lock=how,
        backend=lock.tool_torchenv.get("backend"), torch=torch.version if torch else None,
        packages=packages, changes=changes(before, packages), notes=tuple(notes),
    )  # fmt: skip


def plan_sync(
    lock_path: Path, place: Place, host: HostReport, *, force: bool, reporter: Reporter
) -> Plan:
    """What `sync` (commands.sync_lock) would install from the lock at `lock_path`; the same
    refusals as sync (another target, an unusable prefix), nothing written."""
    from torchenv.agent.env import sync
    from torchenv.agent.lock.pylock import read_lock_file
    from torchenv.agent.lock.resolvers.target import target_of

    parsed, _ = read_lock_file(lock_path)
    lock = parsed.for_target(target_of(host))
    layout = venv.Layout.for_prefix(place.prefix)
    venv.check_prefix(layout, force=force)
    notes = sync.check_lock(
        lock, place.cache_dir, host.target_facts(), force=force, reporter=reporter
    )
    return _plan(lock, layout, lock_path, "given", notes)


def plan_auto(
    requirements: Sequence[str],
    *,
    settings: Settings,
    source: HostSource,
    reporter: Reporter,
    lock_path: Path | None = None,
    force: bool = False,
    locker: Locker | None = None,
) -> Plan:
    """What `auto` would do: nothing, or lock (in memory) and build and switch."""
    from torchenv.agent.base.errors import LockFileError
    from torchenv.agent.fleet import locksource
    from torchenv.agent.lock.pylock import parse_pylock
    from torchenv.agent.lock.resolvers.target import target_of
    from torchenv.agent.pipeline import core as pipeline
    from torchenv.agent.pipeline import decisions, stages

    where = stages.locate(requirements, settings, cwd=Path.cwd(), lock_path=lock_path)
    host = source.load(settings)
    values = {k: settings.get_value(k) for k in decisions.REQUEST_KEYS}
    request = decisions.request_key(where.requirements, values)
    layout = venv.Layout.for_prefix(where.prefix)
    venv.check_prefix(layout, force=force)
    local = stages._read_bytes(where.lock_path)
    published = locksource.for_host(
        settings, host, requirements=where.requirements, local=local, reporter=reporter
    )
    done = pipeline._done_before(
        where, layout, host=host, request=request, timed=pipeline._Timed(reporter),
        started=time.perf_counter(), published=published,
    )  # fmt: skip
    if done is not None:
        return Plan("unchanged", layout.prefix, venv.active_env(layout), where.lock_path,
                    "reused", None, None, (), ())  # fmt: skip
    notes = list(published.notes)
    lock, how = None, "reused"
    if published.found is not None:
        lock, how = published.found.lock, "published"
    elif local is not None:
        try:
            lock = parse_pylock(local, source=str(where.lock_path))
        except LockFileError as exc:
            notes.append(f"the existing lock is unusable ({exc}); would lock again")
    if lock is not None and how == "reused":
        misfit = decisions.lock_mismatches(
            lock.tool_torchenv, fingerprint=host.fingerprint(),
            requirements=where.requirements, settings=values,
        )  # fmt: skip
        if misfit:
            notes.append("would lock again: " + "; ".join(misfit))
            lock = None
    if lock is None:
        lock, how = (locker or stages.default_locker)(host, where.requirements, settings,
                                                      reporter), "new"  # fmt: skip
    return _plan(lock.for_target(target_of(host)), layout, where.lock_path, how, notes)
