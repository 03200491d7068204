"""PEP 751 names (issue 11): the environment's lock copy is pylock.toml and the lock's target
has named keys; environments and locks written before, with the older names, still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.fakelocker import FakeLocker
from helpers.locks import cpu_host
from typer.testing import CliRunner

from torchenv.agent.base.reporter import RecordingReporter
from torchenv.agent.base.settings import load_settings
from torchenv.agent.cli.main import app
from torchenv.agent.env import venv
from torchenv.agent.env.targetcheck import target_differences
from torchenv.agent.host.source import HostSource
from torchenv.agent.lock.locktarget import named
from torchenv.agent.lock.pylock import toml_safe
from torchenv.agent.pipeline import core as pipeline
from torchenv.agent.pipeline.core import AutoResult

HOST = cpu_host()


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    path = tmp_path / "host.json"
    path.write_text(json.dumps(HOST.to_json()))
    return path


def run(tmp_path: Path, host_file: Path) -> AutoResult:
    """auto for the host in host_file, its lock from the FakeLocker's local wheels."""
    settings = load_settings(
        {}, env={"TORCHENV_CACHE_DIR": str(tmp_path / "cache")}, cwd=tmp_path,
        user_config=tmp_path / "none.toml",
    )  # fmt: skip
    return pipeline.auto(
        (), settings=settings, source=HostSource(host_report=host_file),
        reporter=RecordingReporter(), cwd=tmp_path, locker=FakeLocker(tmp_path / "locks"),
    )  # fmt: skip


def test_the_target_is_written_with_named_keys_and_both_forms_read() -> None:
    facts = HOST.target_facts()
    written = toml_safe(named(facts))
    assert written["python"] == {
        "implementation": "cpython",
        "version": HOST.python.minor,
        "free-threaded": False,
    }
    assert not any(isinstance(v, list) for k, v in written.items() if k != "intel")
    old = toml_safe(facts)  # the positional arrays of locks written before
    assert isinstance(old["python"], list)
    assert target_differences(written, facts) == []
    assert target_differences(old, facts) == []
    moved = {**old, "python": ["cpython", "3.9", False]}
    assert target_differences(moved, facts) == [
        f"python: lock {{'implementation': 'cpython', 'version': '3.9', 'free-threaded': False}}"
        f" != host {written['python']!r}"
    ]


def test_lock_copy_prefers_pylock_toml_and_reads_the_old_name(tmp_path: Path) -> None:
    assert venv.lock_copy(tmp_path) == tmp_path / "pylock.toml"  # new environments
    (tmp_path / "torchenv-pylock.toml").write_text("")
    assert venv.lock_copy(tmp_path) == tmp_path / "torchenv-pylock.toml"  # built before
    (tmp_path / "pylock.toml").write_text("")
    assert venv.lock_copy(tmp_path) == tmp_path / "pylock.toml"


@pytest.mark.e2e
def test_an_environment_built_before_the_rename_still_verifies_its_build(
    tmp_path: Path, host_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run(tmp_path, host_file)
    env = first.prefix.resolve()
    assert (env / "pylock.toml").is_file() and not (env / "torchenv-pylock.toml").exists()
    (env / "pylock.toml").rename(env / "torchenv-pylock.toml")  # as an older torchenv left it
    monkeypatch.setenv("TORCHENV_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["verify", "--prefix", str(first.prefix), "--json"])
    assert result.exit_code == 0, result.output
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    # Without the copy this check is skipped ("no version locked"): the old name was read.
    assert checks["torch version"]["status"] == "passed", checks["torch version"]
    assert "2.13.0" in checks["torch version"]["detail"]
