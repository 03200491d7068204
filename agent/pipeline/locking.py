"""The core of `lock` (one target, `--check`, `--publish`) and `catalog refresh`: one function each.

Each takes typed inputs (the requirements, a HostReport, `LockOptions` or `IndexConfig`) and
ports (an index client, a resolver, a reporter: each made from the options when not given);
the CLI parses, calls one of them, and renders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from packaging.requirements import Requirement

    from torchenv.agent.base.options import IndexConfig, LockOptions
    from torchenv.agent.base.reporter import Reporter
    from torchenv.agent.fleet.classes import NamedHost
    from torchenv.agent.fleet.publish import Publication
    from torchenv.agent.index.client import IndexClient
    from torchenv.agent.lock.check import Difference
    from torchenv.agent.lock.pylock import PyLock
    from torchenv.agent.lock.resolvers import Resolver
    from torchenv.backends.catalog import Catalog
    from torchenv.probes.report import HostReport


def lock_file(
    requirements: Sequence[Requirement | str],
    host: HostReport,
    options: LockOptions,
    output: Path,
    *,
    reporter: Reporter,
    client: IndexClient | None = None,
    resolver: Resolver | None = None,
) -> PyLock:
    """`torchenv lock`: select and lock for exactly this host (the path `auto` takes), then
    write the lock to `output`."""
    from torchenv.agent.lock.pylock import write_pylock
    from torchenv.agent.pipeline import stages

    lock = stages.lock_selected(
        host, requirements, options, reporter, client=client, resolver=resolver
    )
    write_pylock(output, lock)
    return lock


@dataclass(frozen=True)
class LockCheck:
    """`lock --check`: the lock read, and where it differs from the host (none: it fits)."""

    path: Path
    lock: PyLock
    differences: tuple[Difference, ...]

    @property
    def matches(self) -> bool:
        return not self.differences


def check_lock_file(path: Path, host: HostReport) -> LockCheck:
    """`torchenv lock --check`: does the lock at `path` still fit this host?"""
    from torchenv.agent.lock.check import check_lock
    from torchenv.agent.lock.pylock import read_pylock

    lock = read_pylock(path)
    return LockCheck(path, lock, tuple(check_lock(lock, host)))


def publish_locks(
    directory: Path,
    requirements: Sequence[Requirement],
    hosts: Sequence[NamedHost],
    options: LockOptions,
    *,
    reporter: Reporter,
    resolver: Resolver | None = None,
) -> Publication:
    """`torchenv lock --publish DIR`: lock each hardware class of the hosts once (one index
    client for all, so each page is read once), then publish the locks and the index. A class
    that failed is in `Publication.failed`; `fleet.publish.publish_error` says what to do."""
    from torchenv.agent.fleet import classes as fleet_classes
    from torchenv.agent.fleet import publish as fleet
    from torchenv.agent.index.client import IndexClient
    from torchenv.agent.pipeline import stages

    classes = fleet_classes.classes_of(list(hosts))
    with IndexClient(cache_dir=options.index.cache_dir, reporter=reporter) as client:
        results = fleet_classes.lock_each(
            classes,
            lambda report: stages.lock_selected(
                report, requirements, options, reporter, client=client, resolver=resolver
            ),
            reporter,
        )
    return fleet.publish(
        directory, results, requirements=[str(r) for r in requirements], reporter=reporter
    )


@dataclass(frozen=True)
class Refreshed:
    """`catalog refresh`: what the live index holds, where it was kept, the merged catalog."""

    path: Path
    backends_asked: tuple[str, ...]
    live: dict[str, Any]
    catalog: Catalog


def refresh_catalog(
    index: IndexConfig,
    backends: Sequence[str] = (),
    *,
    reporter: Reporter | None = None,
) -> Refreshed:
    """`torchenv catalog refresh`: read the torch page of each backend (default: every known
    one and the next CUDA and ROCm names) and keep what exists beside the shipped data."""
    from torchenv.agent.index import catalog_refresh
    from torchenv.agent.index.client import IndexClient
    from torchenv.backends.catalog import load_catalog

    names = tuple(backends or catalog_refresh.backends_to_ask(load_catalog()))
    with IndexClient(cache_dir=index.cache_dir, reporter=reporter) as client:
        live = catalog_refresh.refresh(client, index.torch_index_url, names)
    path = catalog_refresh.save(live, index.cache_dir)
    return Refreshed(path, names, live, catalog_refresh.load(index.cache_dir))
