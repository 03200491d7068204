"""Fetching a lock's wheels into the wheel store: real wheels served by the loopback index."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from indexsim import IndexSim, Knobs, WheelSpec, build_site, small_catalog

from torchenv.agent.base.reporter import RecordingReporter
from torchenv.agent.env import checked, fetch
from torchenv.agent.lock.pylock import LockedPackage, LockedWheel

SPECS = [  # beta the largest, then gamma, then alpha
    WheelSpec(name, "1.0", "py3-none-any", files={f"{name}/__init__.py": f"N = {name!r}\n"},
              padding=padding)
    for name, padding in (("alpha", 0), ("beta", 64 << 10), ("gamma", 32 << 10))
]  # fmt: skip


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[IndexSim, list[LockedPackage]]]:
    site = build_site(small_catalog(SPECS), tmp_path / "site")
    with IndexSim(site, Knobs()) as sim:
        packages = [
            LockedPackage(
                name=spec.project,
                version=spec.version,
                index=sim.pypi_url,
                wheels=(
                    LockedWheel(
                        spec.filename,
                        sim.file_url(spec.filename),
                        site.files[spec.filename].size,
                        site.files[spec.filename].sha256,
                    ),
                ),
            )
            for spec in SPECS
        ]
        yield sim, packages


def _fetching_threads(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The threads Fetcher.fetch runs in, recorded as fetch_all calls it."""
    threads: set[int] = set()
    real = fetch.Fetcher.fetch

    def recording(self: fetch.Fetcher, package: LockedPackage) -> Path:
        threads.add(threading.get_ident())
        return real(self, package)

    monkeypatch.setattr(fetch.Fetcher, "fetch", recording)
    return threads


def test_one_missing_wheel_is_fetched_in_the_calling_thread(
    tmp_path: Path, served: tuple[IndexSim, list[LockedPackage]], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, packages = served
    cache = tmp_path / "cache"
    fetch.fetch_all(packages[:2], cache, RecordingReporter())
    threads = _fetching_threads(monkeypatch)
    files, fetched, hits = fetch.fetch_all(packages, cache, RecordingReporter())
    assert threads == {threading.get_ident()}
    assert (hits, fetched) == (2, packages[2].wheel.size)
    assert {name: path.name for name, path in files.items()} == {
        p.name: p.wheel.name for p in packages
    }
    assert sim.count(f"*/{packages[2].wheel.name}") == 1


def test_several_missing_wheels_are_fetched_side_by_side(
    tmp_path: Path, served: tuple[IndexSim, list[LockedPackage]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, packages = served
    threads = _fetching_threads(monkeypatch)
    files, fetched, hits = fetch.fetch_all(packages, tmp_path / "cache", RecordingReporter())
    assert threading.get_ident() not in threads
    assert (hits, fetched) == (0, sum(p.wheel.size or 0 for p in packages))
    assert all(files[p.name].is_file() for p in packages)


def _hash_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The store's files fetch hashes again, by name, as it reads them."""
    reads: list[str] = []
    real = fetch.file_sha256

    def counting(path: Path) -> str:
        reads.append(path.name)
        return real(path)

    monkeypatch.setattr(fetch, "file_sha256", counting)
    return reads


def test_a_wheel_whose_stat_is_unchanged_is_not_hashed_again(
    tmp_path: Path, served: tuple[IndexSim, list[LockedPackage]], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, packages = served
    cache = tmp_path / "cache"
    fetch.fetch_all(packages, cache, RecordingReporter())  # checked while downloading
    reads = _hash_reads(monkeypatch)
    _, fetched, hits = fetch.fetch_all(packages, cache, RecordingReporter())
    assert (reads, fetched, hits) == ([], 0, 3)
    (cache / "wheels" / checked.NOTE).unlink()
    fetch.fetch_all(packages, cache, RecordingReporter())
    assert sorted(reads) == sorted(p.wheel.name for p in packages)  # no note: each hashed
    del reads[:]
    fetch.fetch_all(packages, cache, RecordingReporter())
    assert reads == []  # and noted again
    assert all(sim.count(f"*/{p.wheel.name}") == 1 for p in packages)


@pytest.mark.parametrize("mtime", ["changed", "set back"])
def test_a_wheel_changed_in_place_is_hashed_and_downloaded_again(
    tmp_path: Path,
    served: tuple[IndexSim, list[LockedPackage]],
    monkeypatch: pytest.MonkeyPatch,
    mtime: str,
) -> None:
    sim, packages = served
    cache = tmp_path / "cache"
    files, _, _ = fetch.fetch_all(packages, cache, RecordingReporter())
    tampered, target = files["beta"], packages[1]
    before = tampered.stat()
    data = tampered.read_bytes()
    time.sleep(0.01)  # a later mtime and ctime on any file system clock
    tampered.write_bytes(data[:-4] + bytes(b ^ 0xFF for b in data[-4:]))  # same size
    if mtime == "set back":  # ctime still tells: it cannot be set back
        os.utime(tampered, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert tampered.stat().st_size == before.st_size
    reads = _hash_reads(monkeypatch)
    reporter = RecordingReporter()
    files, fetched, hits = fetch.fetch_all(packages, cache, reporter)
    assert reads == ["beta-1.0-py3-none-any.whl"]
    assert fetched == target.wheel.size and hits == 3
    assert checked.file_sha256(files["beta"]) == target.wheel.sha256
    assert sim.count(f"*/{target.wheel.name}") == 2
    warnings = [e[1] for e in reporter.events if e[0] == "warning"]
    assert any("beta" in w and "no longer match the lock" in w for w in warnings), warnings
    del reads[:]
    fetch.fetch_all(packages, cache, RecordingReporter())
    assert reads == []  # the new download was noted


@pytest.mark.parametrize(
    "note",
    [
        b"\x00\xff not json",
        b'{"schema": 1, "wheels": {"a/b/c.whl": ["',  # truncated
        b'{"schema": 2, "wheels": {}}',  # another version's
        b"[1, 2, 3]",
        b'{"schema": 1, "wheels": {"x": [true, -1, "?"]}, "extra": 1}',
        b"[" * 100_000,
        b'{"schema": 1, "wheels": {}, "pad": "' + b"x" * checked.MAX_BYTES + b'"}',
    ],
    ids=["binary", "truncated", "schema", "list", "types", "deep", "oversized"],
)
def test_a_bad_note_trusts_nothing_and_is_replaced(
    tmp_path: Path,
    served: tuple[IndexSim, list[LockedPackage]],
    monkeypatch: pytest.MonkeyPatch,
    note: bytes,
) -> None:
    _, packages = served
    cache = tmp_path / "cache"
    fetch.fetch_all(packages, cache, RecordingReporter())
    (cache / "wheels" / checked.NOTE).write_bytes(note)
    reads = _hash_reads(monkeypatch)
    _, fetched, _ = fetch.fetch_all(packages, cache, RecordingReporter())
    assert fetched == 0 and len(reads) == len(packages)
    assert len(checked.read_note(cache / "wheels")) == len(packages)


def test_a_note_with_the_stat_of_another_hash_trusts_nothing(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    (wheels / "ab").mkdir(parents=True)
    wheel = wheels / "ab" / "w.whl"
    wheel.write_bytes(b"wheel")
    note = checked.Checked(wheels)
    note.record(wheel, "a" * 64)
    note.save()
    again = checked.Checked(wheels)
    assert again.trusted(wheel, "a" * 64) and not again.trusted(wheel, "b" * 64)


def test_the_note_keeps_at_most_its_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checked, "MAX_ENTRIES", 3)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    note = checked.Checked(wheels)
    for n in range(5):
        (wheels / f"{n}.whl").write_bytes(b"w")
        note.record(wheels / f"{n}.whl", "a" * 64)
    note.save()
    assert sorted(checked.read_note(wheels)) == ["2.whl", "3.whl", "4.whl"]  # the latest


def test_the_largest_missing_wheel_is_started_first(
    tmp_path: Path, served: tuple[IndexSim, list[LockedPackage]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, packages = served
    sized = [
        dataclasses.replace(p, wheels=(dataclasses.replace(p.wheel, size=None),))
        if p.name == "alpha"
        else p
        for p in packages
    ]
    order: list[str] = []
    real = fetch.Fetcher.fetch

    def recording(self: fetch.Fetcher, package: LockedPackage) -> Path:
        order.append(package.name)
        return real(self, package)

    monkeypatch.setattr(fetch, "DOWNLOAD_WORKERS", 1)
    monkeypatch.setattr(fetch.Fetcher, "fetch", recording)
    big = sorted((p for p in sized if p.wheel.size), key=lambda p: -(p.wheel.size or 0))
    files, _, _ = fetch.fetch_all(sized, tmp_path / "cache", RecordingReporter())
    assert [p.name for p in big] == ["beta", "gamma"]
    assert order == ["beta", "gamma", "alpha"]  # no size known: last
    assert list(files) == [p.name for p in packages]  # the lock's order, whatever the fetch's
