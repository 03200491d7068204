"""index-max-age: a page read less than that long ago is not asked for again; --refresh asks."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.isolation import use_sim
from indexsim import IndexSim
from typer.testing import CliRunner

from torchenv.agent.cli.main import app
from torchenv.agent.index.client import IndexClient

H100 = str(HOSTS / "h100-driver580")


def pages(sim: IndexSim, cache: Path, max_age: float) -> None:
    with IndexClient(cache_dir=cache, page_max_age=max_age) as client:
        assert client.project_page(sim.pypi_url, "demo")


def test_a_young_page_is_not_revalidated(focus_sim: IndexSim, tmp_path: Path) -> None:
    pages(focus_sim, tmp_path, 600)
    pages(focus_sim, tmp_path, 600)  # a later run, within the age
    assert focus_sim.count("/simple/demo/") == 1


def test_max_age_zero_revalidates_every_read(focus_sim: IndexSim, tmp_path: Path) -> None:
    pages(focus_sim, tmp_path, 0)
    pages(focus_sim, tmp_path, 0)
    statuses = [r.status for r in focus_sim.requests("/simple/demo/")]
    assert statuses == [200, 304]


def test_the_index_own_cache_control_wins(focus_sim: IndexSim, tmp_path: Path) -> None:
    focus_sim.knobs.page_cache_control = "no-cache"
    pages(focus_sim, tmp_path, 600)
    pages(focus_sim, tmp_path, 600)
    assert focus_sim.count("/simple/demo/") == 2


@pytest.fixture
def isolated(indexsim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> IndexSim:
    use_sim(monkeypatch, tmp_path, indexsim)
    monkeypatch.chdir(tmp_path)
    return indexsim


def select(*args: str) -> str:
    result = CliRunner().invoke(app, ["select", "--replay", H100, *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_select_within_the_default_age_asks_nothing_and_warns_nothing(isolated: IndexSim) -> None:
    first = select()
    asked = len(isolated.requests())
    assert asked > 0
    second = select()
    assert len(isolated.requests()) == asked  # the listings are young: not one request
    assert second == first and "was not read now" not in second


def test_refresh_and_a_zero_age_read_the_pages_again(
    isolated: IndexSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    select()
    asked = len(isolated.requests())
    select("--refresh")
    after_refresh = len(isolated.requests())
    assert after_refresh > asked
    monkeypatch.setenv("TORCHENV_INDEX_MAX_AGE", "0")
    select()
    assert len(isolated.requests()) > after_refresh


def test_lock_refresh_revalidates_the_pages(isolated: IndexSim, tmp_path: Path) -> None:
    from helpers.hosts import need_uv

    need_uv()
    runner = CliRunner()
    first = runner.invoke(app, ["lock", "torch", "--replay", H100])
    assert first.exit_code == 0, first.output
    asked = len(isolated.requests("/whl/*/torch/"))
    again = runner.invoke(app, ["lock", "torch", "--replay", H100])
    assert again.exit_code == 0, again.output
    assert len(isolated.requests("/whl/*/torch/")) == asked  # young: no request
    fresh = runner.invoke(app, ["lock", "torch", "--replay", H100, "--refresh"])
    assert fresh.exit_code == 0, fresh.output
    assert len(isolated.requests("/whl/*/torch/")) > asked
