"""The core of `sync`, `verify` and `rollback`: one function each, over typed inputs and ports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from torchenv.agent.base.options import Place

if TYPE_CHECKING:
    from torchenv.agent.base.reporter import Reporter
    from torchenv.agent.env.sync import SyncResult
    from torchenv.agent.verify.check import VerifyReport
    from torchenv.probes.report import HostReport


__all__ = ["Place", "check_files", "rollback_prefix", "sync_lock", "verify_failed", "verify_prefix"]


def sync_lock(
    lock: Path,
    place: Place,
    load_host: Callable[[], HostReport],
    *,
    devices_here: bool,
    force: bool,
    reporter: Reporter,
) -> SyncResult:
    """Build the environment from a lock (hash-checked, no resolution), verify it, switch.

    The new environment is started first (agent/env/early.py); the host is probed and the
    lock validated while it is made."""
    from torchenv.agent.env import early
    from torchenv.agent.lock.pylock import read_lock_bytes

    raw = read_lock_bytes(lock)
    with early.held(place.prefix, raw, force=force, reporter=reporter) as (layout, build):
        from torchenv.agent.env import sync as syncmod  # imported while the build starts
        from torchenv.agent.lock.pylock import parse_pylock
        from torchenv.agent.lock.resolvers.target import target_of
        from torchenv.agent.pipeline import stages

        host = load_host()
        parsed = parse_pylock(raw, source=str(lock), base=lock.parent)
        return syncmod.sync_held(
            parsed.for_target(target_of(host)), raw, layout, host_facts=host.target_facts(),
            cache_dir=place.cache_dir, reporter=reporter,
            verifier=stages.verifier_for(host, parsed, devices_here=devices_here),
            force=force, stamp={"fingerprint": host.fingerprint()},
            link_mode=place.link_mode, build=build,
        )  # fmt: skip


def verify_prefix(prefix: Path, host: HostReport) -> VerifyReport:
    """Run the environment's interpreter: import torch, check the build, exercise each device
    (EnvironmentBuildError when there is no environment)."""
    from torchenv.agent.base.errors import EnvironmentBuildError
    from torchenv.agent.env import venv
    from torchenv.agent.lock.pylock import read_pylock
    from torchenv.agent.pipeline import stages
    from torchenv.agent.verify import check as verifymod

    python = venv.python_in(prefix)
    if not python.exists():
        raise EnvironmentBuildError(
            f"there is no environment at {prefix}",
            hint="build one with `torchenv auto` or `torchenv sync LOCK`",
        )
    copy = venv.lock_copy(prefix)  # pylock.toml, or the name environments had before
    expect = (
        stages.expectation(read_pylock(copy))
        if copy.is_file()
        else verifymod.Expectation(None, None)
    )
    plan = verifymod.plan_devices(host, expect.backend, devices_here=True)
    return verifymod.verify_env(python, expect, plan)


def check_files(prefix: Path) -> None:
    """Every installed file against its wheel's RECORD hash; damage is remembered for auto
    and raised as a VerifyError."""
    from torchenv.agent.base.errors import VerifyError
    from torchenv.agent.base.reporter import Reporter
    from torchenv.agent.env import integrity, prefixlock, switch, venv

    damage = integrity.full_check(prefix)
    if not damage:
        return
    layout = venv.Layout.for_prefix(prefix)
    if venv.active_env(layout) is not None:
        with prefixlock.hold(layout.lock_file, reporter=Reporter()):
            switch.mark_damaged(layout, {d.dist for d in damage})
    raise VerifyError(
        f"{prefix}: installed files differ from their wheels' RECORD hashes: "
        + integrity.describe(damage),
        hint="run `torchenv auto` to rebuild it from the locked wheels (the damaged "
        "distributions are dropped from the installer's cache first), or `torchenv rollback`",
        details={"prefix": str(prefix), "damaged": {d.dist: list(d.paths) for d in damage}},
    )


def verify_failed(prefix: Path, report: VerifyReport) -> Exception:
    from torchenv.agent.base.errors import VerifyError

    return VerifyError(
        f"{prefix} failed verification: " + ", ".join(c.name for c in report.failed()),
        hint="run `torchenv auto` to rebuild it, or `torchenv rollback`",
        details={"prefix": str(prefix), **report.to_json()},
    )


def rollback_prefix(prefix: Path, reporter: Reporter) -> tuple[Path, str, str]:
    """Switch back to the environment that was active before the last sync: (the prefix,
    now active, was active)."""
    from torchenv.agent.env import early, switch, venv

    layout = venv.Layout.for_prefix(str(prefix))
    with early.holding(layout, reporter):
        active, previous = switch.rollback(layout)
    return layout.prefix, active, previous
