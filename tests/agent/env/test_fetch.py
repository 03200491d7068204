"""Fetching a lock's wheels into the wheel store: real wheels served by the loopback index."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from indexsim import IndexSim, Knobs, WheelSpec, build_site, small_catalog

from torchenv.agent.base.reporter import RecordingReporter
from torchenv.agent.env import fetch
from torchenv.agent.lock.pylock import LockedPackage, LockedWheel

SPECS = [
    WheelSpec(name, "1.0", "py3-none-any", files={f"{name}/__init__.py": f"N = {name!r}\n"})
    for name in ("alpha", "beta", "gamma")
]


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
