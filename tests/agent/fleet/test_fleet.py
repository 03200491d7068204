"""One lock per hardware class: classes, the published directory and its index, lookups, checks."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import HOSTS
from helpers.hosts import sibling_host
from helpers.locks import PY, build_lock, plain_spec, torch_spec
from indexsim import IndexSim

from torchenv.agent.base import locksetting
from torchenv.agent.base.errors import IntegrityError, LockFileError, SelectionError
from torchenv.agent.base.reporter import RecordingReporter
from torchenv.agent.base.settings import load_settings
from torchenv.agent.fleet import classes as fleet_classes
from torchenv.agent.fleet import lockindex, locksource, readers
from torchenv.agent.fleet import publish as fleet
from torchenv.agent.fleet.classes import ClassLock, HostClass, NamedHost
from torchenv.agent.fleet.lockindex import LockSourceError
from torchenv.agent.host.source import HostFlags, load_host
from torchenv.agent.lock.pylock import PyLock, read_pylock
from torchenv.probes.report import HostReport


def replayed(path: Path) -> HostReport:
    return load_host(replay=path, flags=HostFlags(python=PY))


def named(path: Path) -> NamedHost:
    return NamedHost(str(path), replayed(path))


class FakeLocker:
    """Makes a real lock (local wheels) for each host it is asked about; counts the asks."""

    def __init__(
        self, directory: Path, fail: set[str] | None = None, torch: str = "2.13.0+cpu"
    ) -> None:
        self.directory = directory
        self.fail = fail or set()
        self.torch = torch
        self.calls: list[str] = []

    def __call__(self, host: HostReport) -> PyLock:
        fp = host.fingerprint()
        self.calls.append(fp)
        if fp in self.fail:
            raise SelectionError(f"nothing fits {fp}", hint="try another backend")
        path = self.directory / fp / "pylock.toml"
        if not path.exists():  # the same host, the same lock (as from an unchanged index)
            build_lock(path.parent, [torch_spec(self.torch), plain_spec("filelock")], host=host)
        return read_pylock(path)


# ---------------------------------------------------------------- classes


def test_hosts_differing_only_outside_the_target_are_one_class(tmp_path: Path) -> None:
    siblings = [sibling_host("h100-driver580", tmp_path, n) for n in (1, 2)]
    reports = [replayed(p) for p in (HOSTS / "h100-driver580", *siblings)]
    assert reports[1].system != reports[0].system or reports[1].nvidia != reports[0].nvidia
    assert reports[1].to_json() != reports[2].to_json()  # the nodes are not copies ...
    assert {r.fingerprint() for r in reports} == {reports[0].fingerprint()}  # ... one class

    hosts = [NamedHost(f"h{i}", r) for i, r in enumerate(reports)]
    hosts.insert(1, named(HOSTS / "cpu-cloud-vm"))
    hosts.append(named(HOSTS / "this-dev-box"))  # another recording of a CPU-only VM
    classes = fleet_classes.classes_of(hosts)
    assert [c.hosts for c in classes] == [
        ("h0", "h1", "h2"),
        (str(HOSTS / "cpu-cloud-vm"), str(HOSTS / "this-dev-box")),
    ]
    assert classes[0].fingerprint == reports[0].fingerprint()


def test_each_class_is_locked_once_and_a_failure_loses_no_other(tmp_path: Path) -> None:
    hosts = [named(HOSTS / h) for h in ("cpu-cloud-vm", "h100-driver580", "this-dev-box")]
    hosts.append(named(sibling_host("h100-driver580", tmp_path, 1)))
    hosts.append(named(HOSTS / "gtx1080ti-driver580"))
    classes = fleet_classes.classes_of(hosts)
    gtx = classes[2].fingerprint
    locker = FakeLocker(tmp_path / "wheels", fail={gtx})
    results = fleet_classes.lock_each(classes, locker, RecordingReporter())
    assert locker.calls == [c.fingerprint for c in classes]  # 3 resolutions for 5 hosts
    assert [r.error is None for r in results] == [True, True, False]
    assert results[2].error is not None and gtx in results[2].error.message


# ---------------------------------------------------------------- publishing


def _publish(directory: Path, results: list[ClassLock]) -> fleet.Publication:
    return fleet.publish(directory, results, requirements=["torch"], reporter=RecordingReporter())


@pytest.fixture
def two_classes(tmp_path: Path) -> tuple[list[HostClass], FakeLocker]:
    hosts = [named(HOSTS / h) for h in ("cpu-cloud-vm", "h100-driver580", "this-dev-box")]
    return list(fleet_classes.classes_of(hosts)), FakeLocker(tmp_path / "wheels")


def test_publish_writes_a_lock_per_class_and_the_index_last(
    tmp_path: Path, two_classes: tuple[list[HostClass], FakeLocker]
) -> None:
    classes, locker = two_classes
    out = tmp_path / "locks"
    done = _publish(out, fleet_classes.lock_each(classes, locker, RecordingReporter()))
    index = json.loads((out / "index.json").read_text())
    assert index["format"] == "torchenv-lock-index" and index["requirements"] == ["torch"]
    assert set(index["classes"]) == {c.fingerprint for c in classes}
    for host_class in classes:
        entry = index["classes"][host_class.fingerprint]
        raw = (out / entry["lock"]).read_bytes()
        assert entry["lock"].startswith(host_class.fingerprint + "/pylock.")
        assert entry["sha256"] == hashlib.sha256(raw).hexdigest() and entry["size"] == len(raw)
        assert entry["hosts"] == list(host_class.hosts) and entry["backend"] == "cpu"
        assert entry["torch"] == "2.13.0+cpu"
        assert entry["target"]["python"] == ["cpython", PY, False]
        assert read_pylock(out / entry["lock"]).tool_torchenv["fingerprint"] == (
            host_class.fingerprint
        )
    assert len(done.written) == 2 and not done.removed
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        ["index.json", *(c.fingerprint for c in classes)]
    )

    # the same again: nothing is rewritten, every byte (and so every ETag) stays
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = _publish(out, fleet_classes.lock_each(classes, locker, RecordingReporter()))
    assert again.written == () and again.removed == ()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_republishing_leaves_no_stale_entry_and_keeps_a_failed_class(
    tmp_path: Path, two_classes: tuple[list[HostClass], FakeLocker]
) -> None:
    classes, locker = two_classes
    cpu, gpu = classes
    out = tmp_path / "locks"
    first = _publish(out, fleet_classes.lock_each(classes, locker, RecordingReporter()))
    (out / "README").write_text("not torchenv's\n")
    (out / gpu.fingerprint / ".pylock.x.toml.123.tmp").write_text("killed mid-write")
    (out / ".index.json.abc.tmp").write_text("killed mid-write")

    # the GPU class fails this time: its earlier lock stays published, marked as kept
    failing = FakeLocker(tmp_path / "wheels2", fail={gpu.fingerprint})
    second = _publish(out, fleet_classes.lock_each(classes, failing, RecordingReporter()))
    kept = second.index.classes[gpu.fingerprint]
    assert kept.sha256 == first.index.classes[gpu.fingerprint].sha256
    assert kept.kept is not None and "nothing fits" in kept.kept
    assert (out / kept.lock).is_file()
    old_cpu = first.index.classes[cpu.fingerprint]
    assert second.index.classes[cpu.fingerprint].sha256 != old_cpu.sha256
    assert old_cpu.lock in second.removed and not (out / old_cpu.lock).exists()
    assert not list(out.rglob("*.tmp")) and (out / "README").is_file()
    error = fleet.publish_error(second)
    assert gpu.fingerprint in error.message and "keep the lock published before" in (
        error.hint or ""
    )

    # only the CPU hosts now: the GPU class leaves the index, and its directory goes
    third = _publish(out, fleet_classes.lock_each([cpu], locker, RecordingReporter()))
    assert set(third.index.classes) == {cpu.fingerprint}
    assert not (out / gpu.fingerprint).exists() and f"{gpu.fingerprint}/" in third.removed


def test_a_publisher_that_dies_before_the_index_leaves_the_old_one_whole(
    tmp_path: Path,
    two_classes: tuple[list[HostClass], FakeLocker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    classes, locker = two_classes
    out = tmp_path / "locks"
    first = _publish(out, fleet_classes.lock_each(classes, locker, RecordingReporter()))
    index = (out / "index.json").read_bytes()
    newer = FakeLocker(tmp_path / "newer", torch="2.14.0+cpu")
    monkeypatch.setenv("TORCHENV_FAULT", "publish-index:enospc")
    with pytest.raises(OSError):
        _publish(out, fleet_classes.lock_each(classes, newer, RecordingReporter()))
    monkeypatch.delenv("TORCHENV_FAULT")
    # readers still see the old publication, whole: its index and every lock it names
    assert (out / "index.json").read_bytes() == index
    for entry in first.index.classes.values():
        assert hashlib.sha256((out / entry.lock).read_bytes()).hexdigest() == entry.sha256
    assert len(list(out.glob("*/pylock.*.toml"))) == 4  # the dead run's locks, unnamed
    again = _publish(out, fleet_classes.lock_each(classes, newer, RecordingReporter()))
    assert len(list(out.glob("*/pylock.*.toml"))) == 2 and len(again.removed) == 2


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d.update(version=2), "version 2"),
        (lambda d: d["classes"]["0123456789abcdef"].update(sha256="ab"), "sha256"),
        (lambda d: d["classes"]["0123456789abcdef"].update(lock="../../etc/passwd"), "inside"),
        (lambda d: d["classes"]["0123456789abcdef"].update(lock="/etc/passwd"), "inside"),
        (lambda d: d["classes"]["0123456789abcdef"].update(lock="http://x/y"), "inside"),
        (lambda d: d["classes"].update(notafingerprint={}), "fingerprint"),
        (lambda d: d["classes"]["0123456789abcdef"].update(size=True), "size"),
    ],
)
def test_a_malformed_index_is_refused_saying_why(change: Any, problem: str) -> None:
    entry = {
        "lock": "0123456789abcdef/pylock.0123456789abcdef.toml",
        "sha256": "a" * 64,
        "size": 10,
        "target": {},
        "backend": "cpu",
        "torch": "2.9.0",
        "hosts": ["n1"],
    }
    doc = {"format": "torchenv-lock-index", "version": 1, "classes": {"0123456789abcdef": entry}}
    assert (
        lockindex.parse_index(json.dumps(doc).encode(), "i").classes["0123456789abcdef"].size == 10
    )
    change(doc)
    with pytest.raises(LockSourceError, match=problem):
        lockindex.parse_index(json.dumps(doc).encode(), "the index")


# ---------------------------------------------------------------- a node's lookup


def _settings(tmp_path: Path, **values: str) -> Any:
    env = {"TORCHENV_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    return load_settings(
        values, env=env, cwd=tmp_path, user_config=tmp_path / "u.toml",
        system_config=tmp_path / "s.toml",
    )  # fmt: skip


def _published(tmp_path: Path) -> tuple[Path, fleet.Publication, list[HostClass]]:
    hosts = [named(HOSTS / h) for h in ("cpu-cloud-vm", "h100-driver580")]
    classes = list(fleet_classes.classes_of(hosts))
    results = fleet_classes.lock_each(classes, FakeLocker(tmp_path / "wheels"), RecordingReporter())
    out = tmp_path / "locks"
    return out, _publish(out, results), classes


def _lookup(tmp_path: Path, source: Path | str, host: HostReport, **values: str) -> Any:
    settings = _settings(tmp_path, **{"lock-source": str(source), **values})
    return locksource.for_host(
        settings, host, requirements=["torch"], local=None, reporter=RecordingReporter()
    )


def test_a_node_takes_its_class_lock_from_a_directory(tmp_path: Path) -> None:
    out, done, _ = _published(tmp_path)
    node = replayed(sibling_host("h100-driver580", tmp_path, 3))
    found = _lookup(tmp_path, out, node).found
    entry = done.index.classes[node.fingerprint()]
    assert found is not None and found.fetched and found.entry == entry
    assert found.raw == (out / entry.lock).read_bytes()
    # the index file itself, or a file:// URL, name the same source
    for source in (out / "index.json", out.as_uri()):
        again = _lookup(tmp_path, source, node).found
        assert again is not None and again.raw == found.raw


def test_a_class_without_a_lock_resolves_or_fails_as_configured(tmp_path: Path) -> None:
    out, _, _ = _published(tmp_path)
    other = replayed(HOSTS / "gtx1080ti-driver580")
    looked = _lookup(tmp_path, out, other)
    assert looked.found is None and other.fingerprint() in looked.notes[0]
    with pytest.raises(LockSourceError) as failed:
        _lookup(tmp_path, out, other, **{"lock-source-missing": "fail"})
    assert other.fingerprint() in failed.value.message and str(out) in failed.value.message
    assert "lock-source-missing" in (failed.value.hint or "")


def test_a_tampered_lock_is_refused(tmp_path: Path) -> None:
    out, done, classes = _published(tmp_path)
    entry = done.index.classes[classes[0].fingerprint]
    path = out / entry.lock
    path.write_bytes(path.read_bytes().replace(b'version = "1.0"', b'version = "6.6"'))
    with pytest.raises(IntegrityError, match="does not match the index"):
        _lookup(tmp_path, out, classes[0].report)


def test_a_lock_filed_under_another_class_is_refused_by_the_target_check(tmp_path: Path) -> None:
    out, done, classes = _published(tmp_path)
    cpu, gpu = (done.index.classes[c.fingerprint] for c in classes)
    doc = json.loads((out / "index.json").read_text())
    doc["classes"][gpu.fingerprint].update(lock=cpu.lock, sha256=cpu.sha256, size=cpu.size)
    (out / "index.json").write_text(json.dumps(doc))
    with pytest.raises(LockFileError, match="made for another target") as refused:
        _lookup(tmp_path, out, classes[1].report)
    assert "nvidia" in refused.value.message  # the differing facts are named


def test_a_missing_index_or_lock_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(LockSourceError, match="no lock index"):
        _lookup(tmp_path, tmp_path / "nowhere", replayed(HOSTS / "cpu-cloud-vm"))
    out, done, classes = _published(tmp_path)
    (out / done.index.classes[classes[0].fingerprint].lock).unlink()
    with pytest.raises(LockSourceError, match="no such file"):
        _lookup(tmp_path, out, classes[0].report)


@pytest.mark.parametrize(
    ("requirements", "values", "problems"),
    [
        (["torch"], {}, []),
        (["torch>=2.13", "filelock==1.0"], {}, []),
        (["numpy"], {}, ["numpy is not in it"]),
        (["torch<2.10"], {}, ["it has torch 2.13.0+cpu, not <2.10"]),
        (["numpy; sys_platform == 'win32'"], {}, []),  # not for this target
        (["torch"], {"backend": "cu130"}, ["it is for the backend cpu, not cu130"]),
        (["torch"], {"backend": "auto", "channel": "nightly"}, ["nightly"]),
    ],
)
def test_a_published_lock_must_give_what_the_node_asks_for(
    tmp_path: Path, requirements: list[str], values: dict[str, str], problems: list[str]
) -> None:
    host = replayed(HOSTS / "cpu-cloud-vm")
    lock = FakeLocker(tmp_path)(host)
    lock = PyLock(lock.packages, tool_torchenv={**lock.tool_torchenv, "channel": "stable"})
    from torchenv.agent.lock.resolvers import target_of

    got = locksource.request_problems(
        lock, requirements, backend=values.get("backend"), channel=values.get("channel"),
        markers=target_of(host).markers(),
    )  # fmt: skip
    assert len(got) == len(problems) and all(p in g for g, p in zip(got, problems, strict=True))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("", None),
        ("  ", None),
        ("https://locks.example/fleet", ("https://locks.example/fleet/index.json", None)),
        ("https://locks.example/fleet/", ("https://locks.example/fleet/index.json", None)),
        ("http://h:8080/x/idx.json", ("http://h:8080/x/idx.json", None)),
        ("/srv/locks", (None, Path("/srv/locks/index.json"))),
        ("file:///srv/locks/", (None, Path("/srv/locks/index.json"))),
        ("/srv/locks/index.json", (None, Path("/srv/locks/index.json"))),
        ("locks", (None, Path("/work/locks/index.json"))),
    ],
)
def test_lock_source_values(text: str, where: tuple[str | None, Path | None] | None) -> None:
    source = locksetting.parse_source(text, cwd=Path("/work"))
    assert ((source.index_url, source.index_path) if source else None) == where


@pytest.mark.parametrize("text", ["ftp://x/locks", "https:///nohost", "s3://bucket/locks"])
def test_lock_source_refuses_what_it_cannot_read(tmp_path: Path, text: str) -> None:
    from torchenv.agent.base.errors import ConfigError

    with pytest.raises(ConfigError, match="lock-source"):
        _settings(tmp_path, **{"lock-source": text})


# ---------------------------------------------------------------- auto with a lock source


def _never(*_: object) -> PyLock:
    raise AssertionError("auto resolved although its class has a published lock")


def test_auto_syncs_the_published_lock_and_follows_a_new_publication(tmp_path: Path) -> None:
    from torchenv.agent.pipeline import core as pipeline

    node = sibling_host("cpu-cloud-vm", tmp_path, 1)
    source = pipeline.HostSource(replay=node, flags=HostFlags(python=PY))
    host = replayed(node)
    out = tmp_path / "locks"
    classes = list(fleet_classes.classes_of([NamedHost("n1", host)]))
    _publish(
        out, fleet_classes.lock_each(classes, FakeLocker(tmp_path / "v1"), RecordingReporter())
    )
    settings = _settings(tmp_path, **{"lock-source": str(out), "prefix": str(tmp_path / "env")})

    def auto(*requirements: str) -> pipeline.AutoResult:
        return pipeline.auto(
            requirements, settings=settings, source=source, reporter=RecordingReporter(),
            cwd=tmp_path, locker=_never,
        )  # fmt: skip

    first = auto()
    assert first.action == "synced" and not first.relocked and first.torch == "2.13.0+cpu"
    assert first.published is not None and first.published.fetched
    assert first.lock_path.read_bytes() == first.published.raw
    assert auto().action == "unchanged"

    v2 = FakeLocker(tmp_path / "v2", torch="2.14.0+cpu")
    _publish(out, fleet_classes.lock_each(classes, v2, RecordingReporter()))
    second = auto()
    assert second.action == "synced" and second.torch == "2.14.0+cpu"
    assert second.env_id != first.env_id and second.published is not None
    assert second.lock_path.read_bytes() == (out / second.published.entry.lock).read_bytes()

    with pytest.raises(LockSourceError, match="numpy is not in it"):
        auto("numpy")


# ---------------------------------------------------------------- over HTTP: cache and faults


@pytest.fixture
def served(tmp_path: Path, indexsim: IndexSim) -> tuple[IndexSim, Path, str]:
    out, _, _ = _published(tmp_path)
    return indexsim, out, indexsim.serve_directory("locks", out)


def test_the_index_is_kept_and_asked_again_only_when_it_must_be(
    tmp_path: Path, served: tuple[IndexSim, Path, str]
) -> None:
    sim, out, url = served
    cpu = replayed(HOSTS / "cpu-cloud-vm")
    hour = {"lock-source-max-age": "3600"}
    assert _lookup(tmp_path, url, cpu, **hour).found is not None
    assert sim.count("/locks/index.json") == 1 and sim.count("/locks/*.toml") == 1
    sim.reset_counters()
    assert _lookup(tmp_path, url, cpu, **hour).found is not None
    assert sim.count() == 0  # fresh index, lock kept by its sha256: nothing asked

    # a class the kept index lacks: asked again before saying there is none
    gtx = NamedHost("gtx", replayed(HOSTS / "gtx1080ti-driver580"))
    classes = list(fleet_classes.classes_of([NamedHost("cpu", cpu), gtx]))
    _publish(
        out, fleet_classes.lock_each(classes, FakeLocker(tmp_path / "wheels"), RecordingReporter())
    )
    found = _lookup(tmp_path, url, gtx.report, **hour).found
    assert found is not None and found.entry.fingerprint == gtx.report.fingerprint()
    assert [r.status for r in sim.requests("/locks/index.json")] == [200]


def test_a_lock_gone_since_the_kept_index_is_found_through_a_fresh_one(
    tmp_path: Path, served: tuple[IndexSim, Path, str]
) -> None:
    sim, out, url = served
    cpu = replayed(HOSTS / "cpu-cloud-vm")
    first = _lookup(tmp_path, url, cpu, **{"lock-source-max-age": "3600"}).found
    assert first is not None
    shutil.rmtree(tmp_path / "cache" / "lock-source" / "locks")  # another pod's cache, say
    classes = list(fleet_classes.classes_of([NamedHost("cpu", cpu)]))
    _publish(
        out, fleet_classes.lock_each(classes, FakeLocker(tmp_path / "v2"), RecordingReporter())
    )
    sim.reset_counters()
    second = _lookup(tmp_path, url, cpu, **{"lock-source-max-age": "3600"}).found
    assert second is not None and second.entry.sha256 != first.entry.sha256
    assert [(r.path.endswith(".toml"), r.status) for r in sim.requests()] == [
        (True, 404), (False, 200), (True, 200)
    ]  # fmt: skip


def test_an_unreachable_server_falls_back_to_the_kept_index_only(
    tmp_path: Path, served: tuple[IndexSim, Path, str]
) -> None:
    from indexsim import Fault

    sim, _, url = served
    cpu = replayed(HOSTS / "cpu-cloud-vm")
    assert _lookup(tmp_path, url, cpu).found is not None
    sim.inject(Fault("status", path="/locks/index.json", times=-1, status=503))
    kept = _lookup(tmp_path, url, cpu, **{"lock-source-max-age": "0"})
    assert kept.found is not None and "HTTP 503" in kept.notes[0]
    assert "using the lock index read" in kept.notes[0]
    with pytest.raises(LockSourceError, match="HTTP 503"):
        _lookup(tmp_path / "fresh-node", url, cpu)


def test_an_oversized_index_is_not_read_past_its_bound(
    tmp_path: Path, served: tuple[IndexSim, Path, str]
) -> None:
    _, out, url = served
    (out / "index.json").write_bytes(b" " * (readers.MAX_INDEX + 1))
    cpu = replayed(HOSTS / "cpu-cloud-vm")
    for source in (url, str(out)):
        with pytest.raises(LockSourceError, match="larger than 16 MiB"):
            _lookup(tmp_path / "node", source, cpu)
