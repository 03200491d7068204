"""A fleet end to end against the simulator: `lock --publish` once per class, then nodes that
take their class's lock over HTTP (or from a directory) and get byte-identical environments."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import HOSTS
from helpers.hosts import need_uv, sibling_host
from helpers.locks import PY
from indexsim import IndexSim, Knobs, Site

from torchenv.agent.env import venv
from torchenv.agent.env.sync import LOCK_COPY

pytestmark = pytest.mark.e2e

TORCHENV = [sys.executable, "-m", "torchenv.agent"]

REQUEST = "torch==2.9.*"


def torchenv(
    args: list[str], cwd: Path, sim: IndexSim, cache: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TORCHENV_")},
        "TORCHENV_TORCH_INDEX_URL": sim.torch_index_url,
        "TORCHENV_INDEX_URL": sim.pypi_url,
        "TORCHENV_CACHE_DIR": str(cache),
        "TORCHENV_USER_CONFIG": str(cwd / "no-config.toml"),
        "TORCHENV_SYSTEM_CONFIG": str(cwd / "no-config.toml"),
        **env,
    }
    return subprocess.run(
        [*TORCHENV, *args], cwd=cwd, env=full, capture_output=True, text=True, check=False,
        timeout=300,
    )  # fmt: skip


@dataclass
class Fleet:
    sim: IndexSim
    work: Path
    locks: Path  # the published directory
    url: str  # the same directory over HTTP (the simulator serves it)
    published: dict[str, Any]  # `lock --publish --json`
    publish_requests: dict[str, int]  # requests the simulator saw while publishing
    nodes: dict[str, Path]  # node name -> recorded host

    def index(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.locks / "index.json").read_text())
        return data

    def node(
        self, name: str, *args: str, home: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """`torchenv auto` on one node (its recording) in a home of its own: cache, prefix."""
        where = self.work / "nodes" / (home or name)
        where.mkdir(parents=True, exist_ok=True)
        argv = ["auto", REQUEST, "--replay", str(self.nodes[name]), "--python", PY,
                "--prefix", str(where / "env"), "--json", *args]  # fmt: skip
        return torchenv(argv, where, self.sim, where / "cache", **env)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, indexsim_site: Site) -> Iterator[Fleet]:
    need_uv()
    work = tmp_path_factory.mktemp("fleet")
    site = indexsim_site
    nodes = {
        "cpu-a": HOSTS / "cpu-cloud-vm",
        "cpu-b": HOSTS / "this-dev-box",  # another recording of a CPU-only VM: same class
        "h100-a": HOSTS / "h100-driver580",
        "h100-b": sibling_host("h100-driver580", work, 1),  # other memory, disk, GPU serials
        "gtx": HOSTS / "gtx1080ti-driver580",  # a third class, published for nobody
    }
    with IndexSim(site, Knobs()) as sim:
        argv = ["lock", REQUEST, "--python", PY, "--publish", str(work / "locks"), "--json"]
        for name in ("cpu-a", "h100-a", "cpu-b", "h100-b"):
            argv += ["--replay", str(nodes[name])]
        done = torchenv(argv, work, sim, work / "publisher-cache")
        assert done.returncode == 0, done.stdout + done.stderr
        counts = {p: sim.count(p) for p in ("/whl/cpu/torch/", "/whl/cu130/torch/")}
        url = sim.serve_directory("locks", work / "locks")
        yield Fleet(sim, work, work / "locks", url, json.loads(done.stdout), counts, nodes)


# Written by the installer about this node's install (the cache path the wheel came from,
# uv's cache keys), not taken from the wheel: they differ between nodes by design.
INSTALLER_NOTES = ("direct_url.json", "uv_cache.json")


def _records(prefix: Path) -> dict[str, list[str]]:
    """Every installed file with its size and hash (the RECORD lines), by distribution; the
    files the wheels brought, not the installer's notes about where it took them from."""
    site = next(prefix.resolve().glob("lib/python*/site-packages"))
    return {
        record.parent.name: sorted(
            line for line in record.read_text().splitlines()
            if not line.split(",")[0].endswith(INSTALLER_NOTES)
        )
        for record in sorted(site.glob("*.dist-info/RECORD"))
    }  # fmt: skip


def _resolving_requests(sim: IndexSim) -> int:
    """Index pages and metadata: what a resolution reads (a sync only downloads wheels)."""
    return sum(1 for r in sim.requests() if r.path.endswith(("/", ".metadata")))


def test_publishing_resolves_once_per_class(fleet: Fleet) -> None:
    published = fleet.published
    assert published["resolutions"] == 2 and published["hosts"] == 4
    hosts = {c["fingerprint"]: c["hosts"] for c in published["classes"]}
    index = fleet.index()["classes"]
    assert {fp: e["hosts"] for fp, e in index.items()} == hosts
    assert sorted(e["backend"] for e in index.values()) == ["cpu", "cu130"]
    assert sorted(len(h) for h in hosts.values()) == [2, 2]
    # the torch page of each backend was read once, for the class, not once per host
    assert fleet.publish_requests == {"/whl/cpu/torch/": 1, "/whl/cu130/torch/": 1}


def test_nodes_of_a_class_get_byte_identical_environments_over_http(fleet: Fleet) -> None:
    sim = fleet.sim
    sim.reset_counters()
    results = {}
    for name in ("cpu-a", "cpu-b"):
        done = fleet.node(name, "--lock-source", fleet.url)
        assert done.returncode == 0, done.stdout + done.stderr
        results[name] = json.loads(done.stdout)
    assert _resolving_requests(sim) == 0  # no page, no metadata: nobody resolved
    assert sim.count("/locks/index.json") == 2

    a, b = results["cpu-a"], results["cpu-b"]
    assert a["fingerprint"] == b["fingerprint"] and a["relocked"] is False
    entry = fleet.index()["classes"][a["fingerprint"]]
    published = (fleet.locks / entry["lock"]).read_bytes()
    for result in (a, b):
        assert result["published"]["sha256"] == entry["sha256"] and result["verify"]["ok"]
        assert Path(result["lock"]).read_bytes() == published
        assert (Path(result["prefix"]).resolve() / LOCK_COPY).read_bytes() == published
    assert _records(Path(a["prefix"])) == _records(Path(b["prefix"])) != {}

    # again, within lock-source-max-age: nothing to do and not one request
    sim.reset_counters()
    again = fleet.node("cpu-a", "--lock-source", fleet.url)
    assert again.returncode == 0 and json.loads(again.stdout)["action"] == "unchanged"
    assert sim.count() == 0
    # with max-age 0 every run asks: one conditional request for the index (304), no more
    sim.reset_counters()
    asked = fleet.node("cpu-a", "--lock-source", fleet.url, TORCHENV_LOCK_SOURCE_MAX_AGE="0")
    assert json.loads(asked.stdout)["action"] == "unchanged"
    assert [(r.path, r.status) for r in sim.requests()] == [("/locks/index.json", 304)]


def test_a_class_from_a_directory_and_through_the_entrypoint(fleet: Fleet) -> None:
    sim = fleet.sim
    sim.reset_counters()
    first = fleet.node("h100-a", "--lock-source", str(fleet.locks))
    assert first.returncode == 0, first.stdout + first.stderr
    result = json.loads(first.stdout)
    assert result["backend"] == "cu130" and result["published"]["fetched"] is True

    home = fleet.work / "nodes" / "h100-b"
    home.mkdir(parents=True, exist_ok=True)
    prefix = home / "env"
    code = "import sys, torch; print(sys.prefix, torch.__version__)"
    ran = torchenv(
        ["entrypoint", "--lock-source", str(fleet.locks), "--prefix", str(prefix),
         "--auto-args", f"--replay {fleet.nodes['h100-b']} --python {PY}",
         "--", "python", "-c", code],
        home, sim, home / "cache",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.split() == [str(prefix), "2.9.0+cu130"]
    assert _resolving_requests(sim) == 0
    assert _records(Path(result["prefix"])) == _records(prefix) != {}
    assert (prefix.resolve() / LOCK_COPY).read_bytes() == Path(result["lock"]).read_bytes()


def test_a_class_without_a_lock_resolves_for_itself_or_fails(fleet: Fleet) -> None:
    sim = fleet.sim
    prefix = fleet.work / "nodes" / "gtx-fail" / "env"
    failed = fleet.node("gtx", "--lock-source", fleet.url, "--lock-source-missing", "fail",
                        home="gtx-fail")  # fmt: skip
    assert failed.returncode == 1
    error = json.loads(failed.stdout)
    assert error["error"] == "lock-source"
    assert error["details"]["fingerprint"] in error["message"] and fleet.url in error["message"]
    assert not prefix.exists() and not venv.Layout.for_prefix(prefix).home.exists()

    sim.reset_counters()
    done = fleet.node("gtx", "--lock-source", fleet.url)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["relocked"] is True and result["published"] is None
    assert result["backend"] == "cu126" and result["verify"]["ok"]
    assert any(result["fingerprint"] in n and "locking for this host" in n for n in result["notes"])
    assert _resolving_requests(sim) > 0


def _copy_served(fleet: Fleet, name: str) -> tuple[Path, str]:
    copy = fleet.work / name
    shutil.copytree(fleet.locks, copy)
    return copy, fleet.sim.serve_directory(name, copy)


def test_a_tampered_published_lock_is_refused(fleet: Fleet) -> None:
    copy, url = _copy_served(fleet, "tampered")
    fingerprint = fleet.published["classes"][0]["fingerprint"]  # cpu-a's class
    lock = copy / fleet.index()["classes"][fingerprint]["lock"]
    text = lock.read_text()
    assert 'version = "2.9.0+cpu"' in text
    lock.write_text(text.replace('version = "2.9.0+cpu"', 'version = "2.9.9+cpu"'))  # same size
    prefix = fleet.work / "nodes" / "tampered" / "env"
    done = fleet.node("cpu-a", "--lock-source", url, home="tampered")  # a cache without it
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["error"] == "integrity" and "does not match the index" in error["message"]
    assert not venv.Layout.for_prefix(prefix).home.exists()  # nothing written, nothing built


def test_a_published_lock_for_another_target_is_refused(fleet: Fleet) -> None:
    copy, url = _copy_served(fleet, "misfiled")
    doc = json.loads((copy / "index.json").read_text())
    cpu, gpu = (c["fingerprint"] for c in fleet.published["classes"])
    doc["classes"][cpu].update({k: doc["classes"][gpu][k] for k in ("lock", "sha256", "size")})
    (copy / "index.json").write_text(json.dumps(doc))
    prefix = fleet.work / "nodes" / "misfiled" / "env"
    done = fleet.node("cpu-a", "--lock-source", url, home="misfiled")
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["error"] == "lock" and "made for another target" in error["message"]
    assert "nvidia" in error["message"] and not prefix.exists()
