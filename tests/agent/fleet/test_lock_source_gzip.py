"""A lock source served gzip-encoded: the reader asks for gzip only and inflates it in bounded
steps, so an index that inflates past its bound is refused without holding much more than it,
and a damaged answer is a LockSourceError, not a crash."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.gzipserve import GzipServer, gzipped, serve_gzip

from torchenv.agent.base.locksetting import parse_source
from torchenv.agent.fleet import readers
from torchenv.agent.fleet.lockindex import INDEX_FORMAT, INDEX_VERSION, LockSourceError

INDEX = json.dumps({"format": INDEX_FORMAT, "version": INDEX_VERSION, "classes": {}}).encode()
BOMB = gzipped(b" " * (1 << 20), repeat=4 * (readers.MAX_INDEX >> 20))  # 64 MiB in ~64 KB


@pytest.fixture
def served() -> Iterator[GzipServer]:
    bodies = {"good": gzipped(INDEX), "bomb": BOMB, "damaged": gzipped(INDEX)[:-8] + b"x" * 8}
    with serve_gzip(bodies, "application/json") as server:
        yield server


def _reader(url: str, tmp_path: Path) -> readers.HttpReader:
    source = parse_source(url)
    assert source is not None
    return readers.HttpReader(source, cache_dir=tmp_path / "cache", max_age=0.0)


def test_a_gzip_index_is_inflated_and_only_gzip_is_asked_for(
    served: GzipServer, tmp_path: Path
) -> None:
    reader = _reader(f"{served.url}/good/index.json", tmp_path)
    try:
        read = reader.index()
    finally:
        reader.close()
    assert read.raw == INDEX
    assert served.asked == ["gzip"]


def test_an_index_that_inflates_past_its_bound_is_refused_in_bounded_memory(
    served: GzipServer, tmp_path: Path
) -> None:
    reader = _reader(f"{served.url}/bomb/index.json", tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(LockSourceError, match="larger than 16 MiB"):
            reader.index()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        reader.close()
    # the bound and a step of inflating past it; inflating each read whole held several times it
    assert peak < readers.MAX_INDEX + (8 << 20), f"peak {peak >> 20} MiB"


def test_a_damaged_gzip_answer_is_a_lock_source_error_after_retries(
    served: GzipServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers.time, "sleep", lambda _s: None)
    reader = _reader(f"{served.url}/damaged/index.json", tmp_path)
    try:
        with pytest.raises(LockSourceError, match="gzip") as caught:
            reader.index()
    finally:
        reader.close()
    assert f"{readers.HTTP_ATTEMPTS} attempts" in caught.value.message
    assert "HTTP 200, the gzip-encoded answer" in caught.value.message  # the status kept
    assert len(served.asked) == readers.HTTP_ATTEMPTS
