"""The stages `auto` composes: where the environment is, the default locker, the verifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchenv.agent.base.reporter import Reporter
from torchenv.agent.pipeline.decisions import with_torch

if TYPE_CHECKING:
    from packaging.requirements import Requirement

    from torchenv.agent.base.options import LockOptions, Place
    from torchenv.agent.index.client import IndexClient
    from torchenv.agent.lock.pylock import PyLock
    from torchenv.agent.lock.resolvers import Resolver
    from torchenv.agent.verify.check import Expectation, VerifyReport
    from torchenv.probes.report import HostReport


@dataclass(frozen=True)
class Where:
    """The prefix and lock file auto works on, and the requirements it starts from."""

    prefix: Path
    lock_path: Path
    requirements: tuple[str, ...]
    project: Path | None


def locate(
    requirements: Sequence[str],
    place: Place,
    *,
    cwd: Path,
    lock_path: Path | None = None,
) -> Where:
    """A project (pyproject.toml in cwd or above) gives the requirements, .venv and pylock.toml
    beside it; --prefix elsewhere keeps the lock in the prefix's torchenv directory."""
    from torchenv.agent.base.settings import find_pyproject, project_dependencies, read_toml
    from torchenv.agent.env import venv

    pyproject = find_pyproject(cwd)
    project = pyproject.parent if pyproject is not None else None
    base = project if project is not None and place.prefix_is_default else cwd
    prefix = place.prefix if place.prefix.is_absolute() else base / place.prefix
    reqs = list(requirements)
    if not reqs and pyproject is not None:
        reqs = project_dependencies(pyproject, read_toml(pyproject))
    if lock_path is None:
        in_project = project is not None and place.prefix_is_default
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
    host: HostReport, requirements: Sequence[str], options: LockOptions, reporter: Reporter
) -> PyLock:
    """`auto`'s locker: lock_selected with an index client of its own."""
    return lock_selected(host, requirements, options, reporter)


def lock_selected(
    host: HostReport,
    requirements: Sequence[Requirement | str],
    options: LockOptions,
    reporter: Reporter,
    *,
    client: IndexClient | None = None,
    resolver: Resolver | None = None,
) -> PyLock:
    """select with every requirement, then lock_for with the resolver given or the one the
    options name: the one path of `torchenv lock` and `torchenv auto`. A client given is
    shared (a fleet's classes read each page once); otherwise one is opened and closed here.
    The resolver is chosen first (one that cannot run fails before any request); then the
    selection's first pages are asked for before the lock's own code is loaded, which it
    then is while the index answers."""
    import contextlib

    from torchenv.agent.index.client import IndexClient
    from torchenv.agent.lock.resolvers import choose_resolver, resolver_cache
    from torchenv.agent.pipeline.select_with_index import begin_selection, report_selection

    resolver = resolver or choose_resolver(options.resolver, reporter)  # before any request
    resolver.prepare(resolver_cache(options.index))  # uv's interpreter check, while we select
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(
                IndexClient(
                    cache_dir=options.index.cache_dir,
                    reporter=reporter,
                    page_max_age=options.index.page_max_age,
                )
            )
        wanted = tuple(str(r) for r in requirements)
        with reporter.stage("select"):
            finish = begin_selection(host, wanted, options.selection, client=client)
            from torchenv.agent.lock.family import pages_ahead

            sel = options.selection
            ahead = pages_ahead(requirements, host, sel.channel, sel.backend, options.index)
            if ahead is not None:  # a forced backend: its family's pages beside torch's
                client.read_ahead(*ahead)
            from torchenv.agent.lock.build import lock_for  # loaded while the index answers

            selection = finish()
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
            requirements, host, chosen, options.index,
            resolver=resolver, client=client,
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

    from torchenv.agent.base import toml as tomllib

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
