"""One cache directory shared by many torchenv processes, as the pods of a Kubernetes node
share a hostPath cache: each wheel is downloaded once, and no process removes another's
download in progress, even when it cannot see the other's pid (another pid namespace)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from indexsim import IndexSim, Knobs, WheelSpec, build_site, small_catalog

from torchenv.agent.env import fetch
from torchenv.agent.lock.pylock import LockedPackage, LockedWheel

PROCESSES = 6  # "eight pods on one node", scaled to this machine
SPECS = [
    WheelSpec("bigtorch", "1.0", "py3-none-any", files={"bigtorch/__init__.py": "X = 1\n"}),
    WheelSpec("helper", "2.0", "py3-none-any", files={"helper/__init__.py": "Y = 2\n"}),
]

# Each child fetches the locked wheels into the shared cache and prints what it downloaded.
CHILD = """
import json, sys, time
from pathlib import Path
from torchenv.agent.env import fetch
from torchenv.agent.lock.pylock import LockedPackage, LockedWheel
from torchenv.agent.base.reporter import RecordingReporter

cache, start, raw = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
packages = [LockedPackage(p["name"], p["version"], p["index"], (LockedWheel(**p["wheel"]),))
            for p in raw]
while not start.exists():  # every child is up before any downloads
    time.sleep(0.01)
files, fetched, hits = fetch.fetch_all(packages, cache, RecordingReporter())
print(json.dumps({"fetched": fetched, "files": {k: str(v) for k, v in files.items()}}))
"""


@pytest.fixture
def served(tmp_path: Path) -> tuple[IndexSim, list[LockedPackage]]:
    site = build_site(small_catalog(SPECS), tmp_path / "site")
    sim = IndexSim(site, Knobs(latency=0.3))  # slow enough that every child asks at once
    packages = []
    for spec in SPECS:
        file = site.files[spec.filename]
        packages.append(
            LockedPackage(
                name=spec.project,
                version=spec.version,
                index="pypi",
                wheels=(LockedWheel(spec.filename, "", file.size, file.sha256),),
            )
        )
    return sim, packages


def _with_urls(sim: IndexSim, packages: list[LockedPackage]) -> list[dict[str, object]]:
    return [
        {
            "name": p.name,
            "version": p.version,
            "index": sim.pypi_url,
            "wheel": {
                "name": p.wheel.name,
                "url": sim.file_url(p.wheel.name),
                "size": p.wheel.size,
                "sha256": p.wheel.sha256,
            },
        }
        for p in packages
    ]


def test_processes_sharing_a_cache_download_each_wheel_once(
    tmp_path: Path, served: tuple[IndexSim, list[LockedPackage]]
) -> None:
    sim, packages = served
    cache, start = tmp_path / "node-cache", tmp_path / "go"
    with sim:
        raw = json.dumps(_with_urls(sim, packages))
        argv = [sys.executable, "-c", CHILD, str(cache), str(start), raw]
        children = [
            subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(PROCESSES)
        ]
        try:
            start.touch()
            results = [child.communicate(timeout=120) for child in children]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        for child, (_, err) in zip(children, results, strict=True):
            assert child.returncode == 0, err
        downloads = {p.wheel.name: sim.count(f"*/{p.wheel.name}") for p in packages}
    assert downloads == {p.wheel.name: 1 for p in packages}
    reports = [json.loads(out) for out, _ in results]
    total = sum(p.wheel.size for p in packages)
    assert sum(r["fetched"] for r in reports) == total  # the bytes crossed the network once
    assert len({json.dumps(r["files"], sort_keys=True) for r in reports}) == 1
    assert not list(cache.rglob("*.part"))


def _part_of(cache: Path, package: LockedPackage, pid: int) -> Path:
    dest = fetch.cache_path(cache, package)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.with_name(f".{dest.name}.{pid}.1.part")


def _unused_pid() -> int:
    pid = 4_000_000
    while Path(f"/proc/{pid}").exists():
        pid += 1
    return pid


def test_a_download_in_progress_survives_a_cleaner_that_cannot_see_its_pid(
    tmp_path: Path, served: tuple[IndexSim, list[LockedPackage]]
) -> None:
    """A pod's writer has pid 7 in its own namespace; to a torchenv in another pod that pid
    is someone else or nobody. The writer's entry lock, not its pid, says it is alive."""
    _, packages = served
    cache = tmp_path / "cache"
    package = packages[0]
    part = _part_of(cache, package, _unused_pid())
    part.write_bytes(b"half a wheel")
    lock = part.parent / fetch.ENTRY_LOCK
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the writer holds its entry's lock while it writes
        fetch.clean_parts(cache)
        assert part.read_bytes() == b"half a wheel"
    finally:
        os.close(fd)  # the writer died: its lock went with it
    fetch.clean_parts(cache)
    assert not part.exists()
