"""A sync starts its new environment before it probes the host and checks the lock, and a sync
that then fails or refuses leaves nothing of it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import tomli_w
import tomllib
from helpers.locks import build_lock, cpu_host, plain_spec, torch_spec

from torchenv.agent.base.errors import HostError, LockFileError
from torchenv.agent.base.options import Place
from torchenv.agent.base.reporter import RecordingReporter
from torchenv.agent.env import early, venv
from torchenv.agent.pipeline import commands
from torchenv.probes.report import HostReport

pytestmark = pytest.mark.e2e

HOST = cpu_host()
RUNNING = f"{sys.version_info[0]}.{sys.version_info[1]}"


def envs_of(prefix: Path) -> set[str]:
    envs = venv.Layout.for_prefix(prefix).envs
    return {p.name for p in envs.iterdir()} if envs.is_dir() else set()


def made_beside(prefix: Path, known: set[str], wait: float = 10.0) -> set[str]:
    """The environments under the prefix once one besides `known` appears (the creation in
    another process takes a while to make its directory), or as they are after `wait`."""
    deadline = time.monotonic() + wait
    while not envs_of(prefix) - known and time.monotonic() < deadline:
        time.sleep(0.005)
    return envs_of(prefix)


def sync_lock(lock: Path, prefix: Path, load_host: object) -> object:
    return commands.sync_lock(
        lock, Place(prefix, prefix.parent / "cache"), load_host,  # type: ignore[arg-type]
        devices_here=False, force=False, reporter=RecordingReporter(),
    )  # fmt: skip


def with_python(lock: Path, python: object) -> Path:
    doc = tomllib.loads(lock.read_text(encoding="utf-8"))
    doc["tool"]["torchenv"]["python"] = python
    lock.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return lock


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (b'lock-version = "1.0"\n', ""),
        (b'[tool.torchenv]\npython = "3.12"\n', "3.12"),
        (b"[tool.torchenv]\npython = 3.12\n", None),
        (b"tool = 1\n", ""),
        (b"[tool\n", None),
        (b"\xff\xfe", None),
    ],
)
def test_the_interpreter_a_lock_s_bytes_name(text: bytes, named: str | None) -> None:
    assert early.named_python(text) == named


def test_the_environment_is_being_made_while_the_host_is_probed(tmp_path: Path) -> None:
    lock = build_lock(tmp_path / "l", [torch_spec(), plain_spec("filelock")], host=HOST)
    prefix = tmp_path / "p" / ".venv"
    seen: list[set[str]] = []

    def load_host() -> HostReport:
        seen.append(made_beside(prefix, set()))
        return HOST

    result = sync_lock(lock, prefix, load_host)
    assert seen == [{result.env_id}]  # type: ignore[attr-defined]
    assert venv.active_env(venv.Layout.for_prefix(prefix)) == result.env_id  # type: ignore[attr-defined]


def test_a_lock_for_another_interpreter_starts_nothing_before_the_checks(tmp_path: Path) -> None:
    lock = build_lock(tmp_path / "l", [torch_spec()], host=HOST)
    with_python(lock, "3.1")  # no such interpreter here: the usual error, after the checks
    prefix = tmp_path / "p" / ".venv"
    seen: list[set[str]] = []

    def load_host() -> HostReport:
        seen.append(made_beside(prefix, set(), wait=0.5))
        return HOST

    with pytest.raises(Exception, match=r"Python 3\.1\b"):
        sync_lock(lock, prefix, load_host)
    assert seen == [set()]
    assert envs_of(prefix) == set()


def test_a_probe_that_fails_leaves_no_environment(tmp_path: Path) -> None:
    prefix = tmp_path / "p" / ".venv"
    first = build_lock(tmp_path / "a", [torch_spec(), plain_spec("filelock")], host=HOST)
    active = sync_lock(first, prefix, lambda: HOST).env_id  # type: ignore[attr-defined]

    def load_host() -> HostReport:
        assert len(made_beside(prefix, {active})) == 2  # the active one and the one being made
        raise HostError("the host cannot be read")

    with pytest.raises(HostError, match="cannot be read"):
        sync_lock(first, prefix, load_host)
    assert envs_of(prefix) == {active}
    assert venv.active_env(venv.Layout.for_prefix(prefix)) == active


@pytest.mark.parametrize("damage", ["another target", "not a lock"])
def test_a_refused_lock_leaves_no_environment(tmp_path: Path, damage: str) -> None:
    lock = build_lock(tmp_path / "l", [torch_spec()], host=cpu_host(arch="aarch64"))
    if damage == "not a lock":
        lock.write_text(f'lock-version = "1.0"\n[tool.torchenv]\npython = "{RUNNING}"\n')
    prefix = tmp_path / "p" / ".venv"
    seen: list[set[str]] = []

    def load_host() -> HostReport:
        seen.append(made_beside(prefix, set()))
        return HOST

    with pytest.raises(LockFileError):
        sync_lock(lock, prefix, load_host)
    assert len(seen[0]) == 1  # it was being made
    assert envs_of(prefix) == set()
    assert not prefix.exists() and not prefix.is_symlink()
