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
    from torchenv.agent.pipeline import stages

    lock = stages.lock_selected(
        host, requirements, options, reporter, client=client, resolver=resolver
    )
    from torchenv.agent.lock.pylock import write_pylock

    write_pylock(output, lock)
    return lock


def index_client(options: LockOptions, reporter: Reporter) -> IndexClient:
    """The index client of one lock (`lock_file`'s), open: use it as a context manager."""
    from torchenv.agent.index.client import IndexClient

    index = options.index
    return IndexClient(
        cache_dir=index.cache_dir, reporter=reporter, page_max_age=index.page_max_age
    )


def young_until(client: IndexClient, options: LockOptions, lock: PyLock) -> float | None:
    """Until when every index page this lock rests on stays young, so that the same lock
    made again would read none of them (the console script then keeps its answer:
    agent/cli/fastpath_write.py): the selection's listings, the pages torchenv's client read
    (each young for the server's max-age or index-max-age, whichever is less) and the pages
    uv read for the rest (as old as the oldest entry of uv's page cache for the packages
    locked: uv writes one at each answer). None when that has passed or cannot be told:
    index-max-age 0 (`--refresh`), a listing unread, a page the server said no-cache or
    no-store for, another resolver than uv."""
    import time

    from torchenv.agent.lock.resolvers import resolver_cache
    from torchenv.agent.pipeline import select_with_index as selection

    max_age = options.index.page_max_age
    reads = [at for _, at in selection.reads]
    ours = [until for _, until in client.page_reads]
    if max_age <= 0 or lock.tool_torchenv.get("resolver") != "uv" or None in reads + ours:
        return None
    times = [at for at in reads if at is not None]
    times += [p.stat().st_mtime for p in _uv_pages(resolver_cache(options.index), lock)]
    now = time.time()
    until = min([min(times, default=now) + max_age, *(u for u in ours if u is not None)])
    return until if until > now else None


def _uv_pages(cache: Path, lock: PyLock) -> list[Path]:
    """The entries of uv's page cache for the packages this lock holds (uv keeps one per index
    and project: simple-v*/index/HASH/NAME.rkyv); every entry where none is named that way
    (another uv's layout), so that no old page goes unseen. Pages of projects other locks
    read do not age this one."""
    entries = [p for p in cache.glob("simple-v*/**/*") if p.is_file()]
    names = set(lock.names)
    mine = [p for p in entries if p.suffix == ".rkyv" and p.stem in names]
    return mine or entries


def kept_inputs(
    options: LockOptions, files: Sequence[Path], python: str | None = None
) -> list[tuple[str, str]]:
    """What a kept lock answer rests on beyond the command line, the environment, the host,
    the settings files and what the lock writes (`written_inputs`), observed before the lock
    starts: the -r files, the interpreter `--python` names (asked for its version and
    platform), uv, the catalog, torchenv's code."""
    from importlib.util import find_spec

    from torchenv.agent.base.uvbin import find_uv
    from torchenv.agent.host.python import parse_python_version
    from torchenv.agent.pipeline import select_with_index as selection

    # found, not imported: the lock imports them once its first requests are out
    code = [getattr(find_spec(name), "origin", None) or "" for name in LOCK_CODE]
    return [
        *(("text", str(f.absolute())) for f in files),
        *([("which", python)] if python and parse_python_version(python) is None else []),
        ("which", find_uv() or "uv"),
        *selection.catalog_inputs(options.index.cache_dir, listings=False),
        *(("stat", path) for path in [*code, __file__]),
    ]


# The modules whose code decides a lock's content, beside this one (kept_inputs stats them).
LOCK_CODE = tuple(
    "torchenv.agent." + name
    for name in ("lock.build", "lock.family", "lock.locker", "lock.resolvers.uv",
                 "pipeline.select_with_index", "pipeline.stages")
)  # fmt: skip


def written_inputs(options: LockOptions, output: Path) -> list[tuple[str, str]]:
    """What the lock itself writes, observed once it is done (then `wrote` tells whether the
    lock at `output` is still the one written): the lock and the selection's kept listings."""
    from torchenv.agent.pipeline import select_with_index as selection

    cache_dir = options.index.cache_dir
    listings = [("stat", str(Path(cache_dir) / selection.LISTINGS_FILE))] if cache_dir else []
    return [("stat", str(output.absolute())), *listings]


def wrote(output: Path, lock: PyLock) -> bool:
    """The file at `output` holds `lock` as `lock_file` wrote it."""
    from torchenv.agent.lock.pylock import dumps

    return output.read_bytes() == dumps(lock).encode("utf-8")


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
