"""The on-disk HTTP cache: revalidation with 304, Cache-Control, corrupt entries, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from indexsim import IndexSim

from torchenv.agent.index.client import IndexClient
from torchenv.agent.index.httpcache import CacheEntry, HttpCache, cache_policy, entry_from_response


def fetch_twice(sim: IndexSim, cache: Path) -> tuple[list[str], list[str], IndexClient]:
    with IndexClient(cache_dir=cache) as first:
        one = [a.url for a in first.project_page(sim.pypi_url, "demo")]
    with IndexClient(cache_dir=cache) as second:  # a later run: only the disk is shared
        two = [a.url for a in second.project_page(sim.pypi_url, "demo")]
    return one, two, second


def test_second_fetch_is_a_conditional_request_answered_304(
    focus_sim: IndexSim, tmp_path: Path
) -> None:
    one, two, client = fetch_twice(focus_sim, tmp_path)
    assert one == two and one
    records = focus_sim.requests("/simple/demo/")
    assert [(r.status, r.conditional) for r in records] == [(200, False), (304, True)]
    assert client.stats.not_modified == 1 and client.stats.bytes_fetched == 0


def test_max_age_is_respected(focus_sim: IndexSim, tmp_path: Path) -> None:
    focus_sim.knobs.page_cache_control = "max-age=600"
    one, two, client = fetch_twice(focus_sim, tmp_path)
    assert one == two
    assert focus_sim.count("/simple/demo/") == 1
    assert client.stats.cache_hits == 1 and client.stats.requests == 0


def test_max_age_zero_and_no_cache_revalidate(focus_sim: IndexSim, tmp_path: Path) -> None:
    for n, policy in enumerate(["max-age=0", "no-cache, max-age=600"]):
        focus_sim.knobs.page_cache_control = policy
        focus_sim.reset_counters()
        fetch_twice(focus_sim, tmp_path / str(n))
        statuses = [r.status for r in focus_sim.requests("/simple/demo/")]
        assert statuses == [200, 304], policy


def test_no_store_is_not_stored(focus_sim: IndexSim, tmp_path: Path) -> None:
    focus_sim.knobs.page_cache_control = "no-store"
    fetch_twice(focus_sim, tmp_path)
    records = focus_sim.requests("/simple/demo/")
    assert [(r.status, r.conditional) for r in records] == [(200, False), (200, False)]
    assert not any(p.is_file() for p in (tmp_path / "http").rglob("*"))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_entry_is_ignored(focus_sim: IndexSim, tmp_path: Path, damage: str) -> None:
    focus_sim.knobs.page_cache_control = "max-age=600"
    with IndexClient(cache_dir=tmp_path) as client:
        expected = client.project_page(focus_sim.pypi_url, "demo")
    (entry,) = [p for p in (tmp_path / "http").rglob("*") if p.is_file()]
    raw = entry.read_bytes()
    entry.write_bytes({"garbage": b"\x00junk" * 10, "truncated": raw[:-5], "empty": b""}[damage])
    with IndexClient(cache_dir=tmp_path) as client:
        again = client.project_page(focus_sim.pypi_url, "demo")
    assert again == expected
    assert [r.conditional for r in focus_sim.requests("/simple/demo/")] == [False, False]
    with IndexClient(cache_dir=tmp_path) as client:  # the entry was rewritten whole
        assert client.project_page(focus_sim.pypi_url, "demo") == expected
    assert client.stats.cache_hits == 1 and focus_sim.count("/simple/demo/") == 2


def test_json_and_html_answers_are_cached_apart(focus_sim: IndexSim, tmp_path: Path) -> None:
    """The cache key carries the Accept header, and the body keeps its content type."""
    focus_sim.knobs.page_cache_control = "max-age=600"
    with IndexClient(cache_dir=tmp_path) as client:
        first = client.project_page(focus_sim.pypi_url, "demo")
        second = client.project_page(focus_sim.pypi_url, "demo")
    assert first == second and first[0].size  # sizes only come from the JSON form


def test_cache_policy_parsing() -> None:
    assert cache_policy({"cache-control": "max-age=600, public"}).max_age == 600
    assert cache_policy({"cache-control": "no-store"}).store is False
    assert cache_policy({"cache-control": 'no-cache="x", max-age=bad'}).no_cache is True
    assert cache_policy({}).max_age is None


def test_entry_freshness_and_refresh() -> None:
    headers = {"etag": '"a"', "cache-control": "max-age=10", "age": "4"}
    entry = entry_from_response("http://x/", headers, b"body", now=100.0)
    assert entry is not None and entry.fresh(105.0) and not entry.fresh(106.0)
    refreshed = entry.refreshed({"etag": '"b"', "cache-control": "max-age=60"}, now=200.0)
    assert refreshed.etag == '"b"' and refreshed.fresh(259.0) and refreshed.body == b"body"
    assert entry_from_response("http://x/", {}, b"body", now=0.0) is None  # unusable later


def test_cache_writes_are_atomic_and_round_trip(tmp_path: Path) -> None:
    cache = HttpCache(tmp_path)
    entry = CacheEntry("http://x/", b"\x00body\n", "text/html", '"e"', None, 1.0, None, True)
    cache.put("k", entry)
    assert cache.get("k") == entry
    assert [p.name for p in tmp_path.rglob("*.tmp")] == []
    assert HttpCache(None).get("k") is None


def test_a_cache_entry_that_cannot_be_removed_is_only_a_miss(tmp_path: Path) -> None:
    """delete() fails as quietly as put(): a cache the process cannot change costs a refetch."""
    cache = HttpCache(tmp_path)
    entry = CacheEntry("http://x/", b"body", None, '"e"', None, 1.0, None, False)
    cache.put("k", entry)
    (path,) = [p for p in tmp_path.rglob("*") if p.is_file()]
    path.unlink()
    path.mkdir()  # neither readable nor removable as a file
    cache.delete("k")
    assert cache.get("k") is None
