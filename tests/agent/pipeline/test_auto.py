"""auto: the pipeline around a locker seam; the no-op path, project mode, relocking."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.fakelocker import FakeLocker
from helpers.locks import cpu_host

from torchenv.agent.base.errors import ResolutionError
from torchenv.agent.base.options import AutoOptions
from torchenv.agent.base.reporter import RecordingReporter
from torchenv.agent.base.settings import load_settings
from torchenv.agent.env import venv
from torchenv.agent.pipeline import core as pipeline
from torchenv.agent.pipeline import decisions

pytestmark = pytest.mark.e2e


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    path = tmp_path / "host.json"
    path.write_text(json.dumps(cpu_host().to_json()))
    return path


def run(tmp_path: Path, cwd: Path, host_file: Path, locker: FakeLocker, *reqs: str, **cli: str):  # type: ignore[no-untyped-def]
    env = {"TORCHENV_CACHE_DIR": str(tmp_path / "cache")}
    settings = load_settings(cli, env=env, cwd=cwd, user_config=tmp_path / "none.toml")
    return pipeline.auto(
        reqs, options=AutoOptions.from_settings(settings),
        source=pipeline.HostSource(host_report=host_file),
        reporter=RecordingReporter(), cwd=cwd, locker=locker,
    )  # fmt: skip


def test_project_gets_venv_and_lock_then_nothing_to_do(tmp_path: Path, host_file: Path) -> None:
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\ndependencies = ["filelock"]\n'
    )
    locker = FakeLocker(tmp_path / "locks")
    first = run(tmp_path, project / "src", host_file, locker)
    assert first.action == "synced" and first.relocked
    assert first.prefix == project / ".venv" and first.lock_path == project / "pylock.toml"
    assert locker.calls == [("torch", "filelock")]
    assert first.verify is not None and first.verify.ok
    assert set(first.stages) >= {"probe", "download", "install", "verify"}

    second = run(tmp_path, project / "src", host_file, locker)
    assert second.action == "unchanged" and second.env_id == first.env_id
    assert len(locker.calls) == 1 and second.torch == "2.13.0+cpu"
    assert set(second.stages) == {"probe"}


def test_changes_that_undo_the_no_op(tmp_path: Path, host_file: Path) -> None:
    locker = FakeLocker(tmp_path / "locks")
    prefix = str(tmp_path / "env")
    first = run(tmp_path, tmp_path, host_file, locker, prefix=prefix)
    assert first.lock_path == venv.Layout.for_prefix(prefix).home / "pylock.toml"

    # files changed inside the environment: reinstall from the same lock, no relock
    site = next(Path(prefix).glob("lib/python*/site-packages"))
    (site / "stray.py").write_text("")
    again = run(tmp_path, tmp_path, host_file, locker, prefix=prefix)
    assert again.action == "synced" and not again.relocked and len(locker.calls) == 1

    # another request: relock
    other = run(tmp_path, tmp_path, host_file, locker, "torch==2.14.*", prefix=prefix)
    assert other.relocked and other.torch == "2.14.0+cpu" and len(locker.calls) == 2
    assert run(tmp_path, tmp_path, host_file, locker, "torch==2.14.*", prefix=prefix).action == (
        "unchanged"
    )

    # another host: relock, and the note says why
    moved = tmp_path / "host2.json"
    moved.write_text(json.dumps(cpu_host(python="3.11").to_json()).replace("2.36", "2.39"))
    third = run(tmp_path, tmp_path, moved, locker, "torch==2.14.*", prefix=prefix)
    assert third.relocked and any("fingerprint" in n for n in third.notes)


@pytest.mark.parametrize(
    ("table", "want"),
    [
        ({"fingerprint": "f", "requirements": ["torch"]}, []),
        ({"fingerprint": "g", "requirements": ["torch"]}, ["host fingerprint g != f"]),
        ({"fingerprint": "f", "requirements": ["torch", "numpy"]}, ["requirements"]),
        ({"fingerprint": "f", "requirements": ["torch"], "index-url": "https://m/simple/"}, []),
        ({"fingerprint": "f", "requirements": ["torch"], "index-url": "https://x"}, ["index-url"]),
    ],
)
def test_lock_mismatches(table: dict[str, object], want: list[str]) -> None:
    got = decisions.lock_mismatches(
        table, fingerprint="f", requirements=["torch"],
        settings={"backend": "auto", "index-url": "https://m/simple"},
    )  # fmt: skip
    assert len(got) == len(want) and all(g.startswith(w) for g, w in zip(got, want, strict=True))


def test_with_torch_and_request_key() -> None:
    assert decisions.with_torch(["numpy"]) == ["torch", "numpy"]
    assert decisions.with_torch(["torch[opt]>=2.6", "numpy"]) == ["torch[opt]>=2.6", "numpy"]
    base = {"backend": "auto"}
    assert decisions.request_key(["a", "b"], base) == decisions.request_key(["b", "a"], base)
    assert decisions.request_key(["a"], base) != decisions.request_key(["a"], {"backend": "cpu"})


def test_summary_names_host_choice_install_verify_and_time(tmp_path: Path, host_file: Path):  # type: ignore[no-untyped-def]
    from torchenv.agent.cli.env_run import auto_lines

    result = run(tmp_path, tmp_path, host_file, FakeLocker(tmp_path / "locks"), prefix="env")
    text = "\n".join(auto_lines(result))
    for fact in (
        "linux x86_64",
        "torch 2.13.0+cpu (cpu)",
        "because no accelerator",
        "installed ",
        "filelock 1.0",
        "skip GPU devices",
        "time ",
        "download",
    ):
        assert fact in text, (fact, text)
    again = "\n".join(
        auto_lines(run(tmp_path, tmp_path, host_file, FakeLocker(tmp_path), prefix="env"))
    )
    assert "nothing to do" in again


class WatchingLocker(FakeLocker):
    """A FakeLocker that notes the environments under the prefix while it locks (once one
    besides those there before has appeared, or after a while), then fails if told to."""

    def __init__(self, directory: Path, prefix: Path, *, fail: bool = False) -> None:
        super().__init__(directory)
        self.envs = venv.Layout.for_prefix(prefix).envs
        self.before = self.names()
        self.seen: list[set[str]] = []
        self.fail = fail

    def names(self) -> set[str]:
        return {p.name for p in self.envs.iterdir()} if self.envs.is_dir() else set()

    def __call__(self, *args: Any) -> Any:
        deadline = time.monotonic() + 10
        while not self.names() - self.before and time.monotonic() < deadline:
            time.sleep(0.005)
        self.seen.append(self.names())
        if self.fail:
            raise ResolutionError("no index answered")
        return super().__call__(*args)


def test_the_environment_is_being_made_while_auto_locks(tmp_path: Path, host_file: Path) -> None:
    prefix = tmp_path / "env"
    locker = WatchingLocker(tmp_path / "locks", prefix)
    result = run(tmp_path, tmp_path, host_file, locker, prefix=str(prefix))
    assert result.action == "synced" and locker.seen == [{result.env_id}]


def test_a_lock_that_fails_leaves_no_environment_of_auto(tmp_path: Path, host_file: Path) -> None:
    prefix = tmp_path / "env"
    first = run(tmp_path, tmp_path, host_file, FakeLocker(tmp_path / "a"), prefix=str(prefix))
    locker = WatchingLocker(tmp_path / "locks", prefix, fail=True)
    with pytest.raises(ResolutionError):
        run(tmp_path, tmp_path, host_file, locker, "torch==2.14.*", prefix=str(prefix))
    assert len(locker.seen[0]) == 2  # the active one and the one being made
    assert locker.names() == {first.env_id}
    assert venv.active_env(venv.Layout.for_prefix(prefix)) == first.env_id
