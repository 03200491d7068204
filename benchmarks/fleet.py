"""A fleet of N nodes in 4 hardware classes: one lock per class against a lock per node.

Both sides lock `torch==2.9.*` (torch's dependencies from PyPI) against the loopback index
simulator, each node with a cold cache of its own, as a freshly started node has:
- one lock per class: `torchenv lock --host-report DIR --publish DIR` over every node's report
  (the core of the command, in-process), then each node looks up its class's lock over HTTP
  (`lock-source`, the published directory served by the simulator) and checks it;
- a lock per node (the peer, what every node does without `lock-source`): each node selects
  and locks for itself (`lock_for`, as `torchenv lock` and `auto` do).
Syncing the locked wheels is left out of both: every node downloads the same wheels either way.
Then each node's second `auto` within `lock-source-max-age` and after it (the no-op path).

Nodes are derived from recorded hosts (H100 / A100 MIG / GTX 1080 Ti / CPU-only VM) by
changing only facts outside the target (memory, disk, CPU count): 40% / 30% / 10% / 20%.
Usage: python benchmarks/fleet.py [--nodes N] [--latency SECONDS] [--runs N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import ratio, use_test_helpers

use_test_helpers()

from indexsim import IndexSim, Knobs, build_site, default_catalog

from torchenv.agent.base.reporter import Reporter
from torchenv.agent.base.settings import Settings, load_settings
from torchenv.agent.cli.lock import run_lock
from torchenv.agent.fleet import classes as fleet_classes
from torchenv.agent.fleet import locksource
from torchenv.agent.fleet import publish as fleet
from torchenv.agent.host.source import HostFlags, load_host
from torchenv.agent.lock.inputs import parse_requirements
from torchenv.probes.report import HostReport

HOSTS = Path(__file__).resolve().parent.parent / "tests" / "hosts"
REQUIREMENTS = ("torch==2.9.*",)
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
CLASSES = (  # recording, share of the fleet
    ("h100-driver580", 0.4),
    ("a100-mig", 0.3),
    ("gtx1080ti-driver580", 0.1),
    ("cpu-cloud-vm", 0.2),
)


@dataclass(frozen=True)
class Figures:
    resolutions: int
    index_requests: int  # what the package indexes were asked (pages, metadata, ranges, HEADs)
    index_bytes: int
    source_requests: int  # what the lock source was asked (index.json, locks)
    source_bytes: int
    seconds: float


def fleet_reports(nodes: int) -> list[HostReport]:
    """`nodes` host reports in the classes' shares; each differs in memory, disk, CPU count."""
    out = []
    for name, share in CLASSES:
        base = load_host(replay=HOSTS / name, flags=HostFlags(python=PY))
        for i in range(max(1, round(nodes * share))):
            system = dataclasses.replace(
                base.system,
                memory_total_bytes=(64 + i) << 30,
                memory_available_bytes=(60 + i) << 30,
                disk_free_bytes=(500 + i) << 30,
            )
            out.append(dataclasses.replace(base, system=system))
    return out[:nodes]


def settings_for(sim: IndexSim, cache: Path, **extra: str) -> Settings:
    values = {"torch-index-url": sim.torch_index_url, "index-url": sim.pypi_url,
              "cache-dir": str(cache), **extra}  # fmt: skip
    return load_settings(values, env={}, cwd=cache.parent, user_config=cache / "none",
                         system_config=cache / "none")  # fmt: skip


def counted(sim: IndexSim, fn: Callable[[], int]) -> Figures:
    sim.reset_counters()
    start = time.perf_counter()
    resolutions = fn()
    seconds = time.perf_counter() - start
    records = sim.requests()
    source = [r for r in records if r.path.startswith("/locks/")]
    index = [r for r in records if not r.path.startswith("/locks/")]
    return Figures(
        resolutions, len(index), sum(r.bytes_sent for r in index), len(source),
        sum(r.bytes_sent for r in source), seconds,
    )  # fmt: skip


def per_class(sim: IndexSim, work: Path, reports: list[HostReport]) -> int:
    """Publish one lock per class, then every node takes its own (cold caches throughout)."""
    reqs = parse_requirements(REQUIREMENTS)
    publisher = settings_for(sim, work / "publisher" / "cache")
    hosts = [fleet_classes.NamedHost(f"node-{i:03d}", r) for i, r in enumerate(reports)]
    classes = fleet_classes.classes_of(hosts)
    results = fleet_classes.lock_each(
        classes, lambda host: run_lock(reqs, host, publisher, True), Reporter()
    )
    done = fleet.publish(work / "locks", results, requirements=list(REQUIREMENTS),
                         reporter=Reporter())  # fmt: skip
    assert not done.failed, [r.error for r in done.failed]
    url = sim.serve_directory("locks", work / "locks")
    for i, host in enumerate(reports):
        node = settings_for(sim, work / f"node-{i:03d}" / "cache", **{"lock-source": url})
        found = locksource.for_host(
            node, host, requirements=["torch"], local=None, reporter=Reporter()
        ).found
        assert found is not None
    return len(classes)


def per_node(sim: IndexSim, work: Path, reports: list[HostReport]) -> int:
    reqs = parse_requirements(REQUIREMENTS)
    for i, host in enumerate(reports):
        run_lock(reqs, host, settings_for(sim, work / f"naive-{i:03d}" / "cache"), True)
    return len(reports)


def no_ops(sim: IndexSim, work: Path, reports: list[HostReport], max_age: str) -> Figures:
    """Each node's next lookup, holding the lock it took: within max-age, or asking again."""
    url = sim.serve_directory("locks", work / "locks")

    def again() -> int:
        for i, host in enumerate(reports):
            node = settings_for(sim, work / f"node-{i:03d}" / "cache",
                                **{"lock-source": url, "lock-source-max-age": max_age})  # fmt: skip
            locksource.for_host(node, host, requirements=["torch"], local=None,
                                reporter=Reporter())  # fmt: skip
        return 0

    return counted(sim, again)


def _median(figures: list[Figures]) -> Figures:
    def mid(field: str) -> Any:
        values = [getattr(f, field) for f in figures]
        median = statistics.median(values)
        return median if field == "seconds" else int(median)

    return Figures(*(mid(f.name) for f in dataclasses.fields(Figures)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.005, help="seconds per request")
    parser.add_argument("--runs", type=int, default=1, help="runs of each side (medians)")
    args = parser.parse_args()
    reports = fleet_reports(args.nodes)
    work = Path(tempfile.mkdtemp(prefix="torchenv-bench-fleet-"))
    try:
        site = build_site(default_catalog(pythons=(f"cp{PY.replace('.', '')}",)), work / "site")
        ours, theirs = [], []
        with IndexSim(site, Knobs(latency=args.latency)) as sim:
            for run in range(args.runs):
                ours.append(counted(sim, lambda r=run: per_class(sim, work / f"o{r}", reports)))
                theirs.append(counted(sim, lambda r=run: per_node(sim, work / f"p{r}", reports)))
            fresh = no_ops(sim, work / "o0", reports, "3600")
            stale = no_ops(sim, work / "o0", reports, "0")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, reports, ours=_median(ours), theirs=_median(theirs), fresh=fresh, stale=stale)


def report(
    args: argparse.Namespace,
    reports: list[HostReport],
    *,
    ours: Figures,
    theirs: Figures,
    fresh: Figures,
    stale: Figures,
) -> None:
    sizes: dict[str, int] = {}
    for host in reports:
        sizes[host.fingerprint()] = sizes.get(host.fingerprint(), 0) + 1
    print(
        f"{len(reports)} nodes in {len(sizes)} classes ({', '.join(map(str, sizes.values()))} "
        f"nodes), {' '.join(REQUIREMENTS)}, Python {PY}, latency {args.latency * 1000:.0f} ms"
        f"/request, cold caches; medians of {args.runs} run(s)"
    )
    print(f"{'':26} {'resolutions':>11} {'index req':>10} {'index bytes':>12} "
          f"{'source req':>10} {'source bytes':>12} {'seconds':>8}")  # fmt: skip
    for name, f in (("one lock per class", ours), ("a lock per node (peer)", theirs)):
        print(
            f"{name:26} {f.resolutions:11d} {f.index_requests:10d} "
            f"{f.index_bytes / 1e3:9.0f} kB {f.source_requests:10d} "
            f"{f.source_bytes / 1e3:9.1f} kB {f.seconds:8.1f}"
        )
    print(
        f"per class / per node: resolutions {ratio(ours.resolutions, theirs.resolutions)}, "
        f"index requests {ratio(ours.index_requests, theirs.index_requests)}, "
        f"index bytes {ratio(ours.index_bytes, theirs.index_bytes)}, "
        f"all bytes {ratio(ours.index_bytes + ours.source_bytes, theirs.index_bytes)}, "
        f"time {ratio(ours.seconds, theirs.seconds)}"
    )
    for what, f in (("within lock-source-max-age", fresh), ("after it (max-age 0)", stale)):
        print(
            f"every node's next lookup, {what}: {f.source_requests} requests, "
            f"{f.source_bytes} bytes, index {f.index_requests} requests"
        )
    print(json.dumps({"ours": dataclasses.asdict(ours), "peer": dataclasses.asdict(theirs),
                      "no_op_fresh": dataclasses.asdict(fresh),
                      "no_op_revalidated": dataclasses.asdict(stale)}))  # fmt: skip


if __name__ == "__main__":
    main()
