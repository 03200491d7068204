"""The core of `lock --check` and `catalog refresh`, called without the command line."""

from __future__ import annotations

from pathlib import Path

from helpers.locks import build_lock, cpu_host, plain_spec, torch_spec
from indexsim import IndexSim

from torchenv.agent.base.options import IndexConfig
from torchenv.agent.index import catalog_refresh
from torchenv.agent.pipeline import locking


def test_check_lock_file_says_whether_the_lock_fits_the_host(tmp_path: Path) -> None:
    made_for = cpu_host()
    path = build_lock(tmp_path, [torch_spec(), plain_spec("filelock")], host=made_for)
    same = locking.check_lock_file(path, made_for)
    assert same.matches and same.differences == () and same.path == path
    assert same.lock.package("torch") is not None
    other = locking.check_lock_file(path, cpu_host(arch="aarch64"))
    assert not other.matches
    assert [(d.fact, d.locked, d.host) for d in other.differences] == [
        ("arch", "x86_64", "aarch64")
    ]


def test_refresh_catalog_keeps_what_the_index_holds(indexsim: IndexSim, tmp_path: Path) -> None:
    index = IndexConfig(indexsim.torch_index_url, indexsim.pypi_url, tmp_path / "cache")
    done = locking.refresh_catalog(index, ("cu126", "cpu"))
    assert done.backends_asked == ("cu126", "cpu")
    assert done.path.is_file() and done.path.is_relative_to(tmp_path / "cache")
    assert set(done.live["backends"]) == {"cu126", "cpu"}
    newest = catalog_refresh.newest_on_index(done.live)
    assert newest is not None and newest.startswith("2.9.0+")
    assert done.catalog.live_fetched  # the merged catalog is the one `catalog show` reads
