"""select's kept answer: given again only while every input holds and its pages are young."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.isolation import use_sim
from helpers.kept import after_index_max_age
from helpers.kept import kept as kept_answer
from helpers.kept import run_command as select
from indexsim import IndexSim

from torchenv.agent.cli import fastpath
from torchenv.agent.index import catalog_refresh
from torchenv.agent.pipeline import select_with_index as selection

FLAGS = ["select", "--json", "--os", "linux", "--arch", "x86_64", "--python", "3.11",
         "--driver", "580.95.05", "--gpu", "9.0"]  # fmt: skip

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(indexsim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_sim(monkeypatch, tmp_path, indexsim, user_config="user.toml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def kept(capsys: pytest.CaptureFixture[str], argv: list[str] = FLAGS) -> str | None:
    return kept_answer(capsys, argv)


def test_the_kept_answer_is_the_computed_one(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = select(*FLAGS)
    assert kept(capsys) == first
    assert select(*FLAGS) == first


def test_a_page_older_than_index_max_age_ends_it(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    select(*FLAGS)
    assert kept(capsys) is not None
    after_index_max_age(monkeypatch)
    assert kept(capsys) is None


def test_a_refreshed_catalog_or_rewritten_listings_end_it(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    select(*FLAGS)
    live = catalog_refresh.live_path(str(env / "cache"))
    live.write_text("{}")
    assert kept(capsys) is None
    live.unlink()
    select(*FLAGS)
    assert kept(capsys) is not None
    listings = env / "cache" / selection.LISTINGS_FILE
    listings.write_bytes(listings.read_bytes())
    assert kept(capsys) is None


def test_a_changed_settings_file_or_variable_ends_it(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    select(*FLAGS)
    (env / "user.toml").write_text('channel = "stable"\n')
    assert kept(capsys) is None
    select(*FLAGS)
    assert kept(capsys) is not None
    monkeypatch.setenv("TORCHENV_BACKEND", "cpu")
    assert kept(capsys) is None


def test_offline_a_recorded_host_and_an_unread_page_are_never_kept(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    offline = [*FLAGS, "--offline"]
    select(*offline)
    assert kept(capsys, offline) is None
    replay = ["select", "--json", "--replay", str(HOSTS / "h100-driver580")]
    select(*replay)
    assert kept(capsys, replay) is None
    monkeypatch.setenv("TORCHENV_TORCH_INDEX_URL", "http://127.0.0.1:9/whl")  # nothing listens
    select(*FLAGS)
    assert kept(capsys) is None


@pytest.mark.parametrize(
    "name", ["entry", "select_plain", "select_run", "select", "hostflags", "outcome", "plainargs"]
)
def test_a_changed_module_of_either_way_in_ends_it(
    env: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """The plain way's modules and the typer command's (a reinstall changes their stat)."""
    select(*FLAGS)
    assert kept(capsys) is not None
    module = Path(fastpath.__file__).with_name(f"{name}.py")
    before = module.stat()
    try:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        assert kept(capsys) is None
    finally:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
