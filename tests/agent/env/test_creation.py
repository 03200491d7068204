"""The new environment is made while the wheels download: its failure reads as it always
did, an interrupted sync leaves nothing behind, and uv's interpreter warm-up is optional."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
import venv as stdlib_venv
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.faults import HOST, real_lock

from torchenv.agent.base.errors import EnvironmentBuildError
from torchenv.agent.base.reporter import RecordingReporter
from torchenv.agent.base.uvbin import find_uv
from torchenv.agent.env import create, install, integrity, sync, venv
from torchenv.agent.lock.pylock import read_lock_file
from torchenv.agent.verify.check import VerifyReport

pytestmark = pytest.mark.e2e

FAILING = [sys.executable, "-c", "import sys; sys.stderr.write('no room for a venv'); sys.exit(3)"]


def run_sync(lock: Path, prefix: Path, cache: Path) -> sync.SyncResult:
    parsed, raw = read_lock_file(lock)
    return sync.sync(
        parsed, raw, prefix, host_facts=HOST.target_facts(), cache_dir=cache,
        reporter=RecordingReporter(), verifier=None,
    )  # fmt: skip


def _message_before(argv: list[str]) -> str:
    """What a failed creation said when sync waited on the process itself."""
    with pytest.raises(EnvironmentBuildError) as failed:
        install._finish(install._start(argv), "creating the virtual environment")
    return str(failed.value)


def _no_room(self: stdlib_venv.EnvBuilder, context: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("downloads", [True, False], ids=["cold", "warm"])
@pytest.mark.parametrize("here", [False, True], ids=["by-a-command", "made-here"])
def test_a_failed_creation_says_why_and_leaves_no_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, downloads: bool, here: bool
) -> None:
    lock, cache, prefix = real_lock(tmp_path / "lock"), tmp_path / "cache", tmp_path / ".venv"
    good = run_sync(lock, prefix, cache)
    if downloads:
        cache = tmp_path / "empty-cache"
    if here:  # the interpreter is in place, the find may have started: the scripts fail
        monkeypatch.setattr(stdlib_venv.EnvBuilder, "setup_scripts", _no_room)
    else:  # as for another interpreter: what it said when sync waited on the process itself
        monkeypatch.setattr(create, "made_here", lambda *_: False)
        monkeypatch.setattr(create, "create_venv", lambda *_: FAILING)
    with pytest.raises(EnvironmentBuildError) as failed:
        run_sync(lock, prefix, cache)
    if here:
        assert str(failed.value).startswith("cannot create the virtual environment at ")
        assert str(failed.value).endswith(": No space left on device")
        assert failed.value.hint is not None and "free disk space" in failed.value.hint
    else:
        assert str(failed.value) == _message_before(FAILING)
        assert "exit 3" in str(failed.value) and "no room for a venv" in str(failed.value)
    layout = venv.Layout.for_prefix(prefix)
    assert venv.active_env(layout) == good.env_id
    assert [p.name for p in layout.envs.iterdir()] == [good.env_id]
    assert not [t for t in threading.enumerate() if t.name == "torchenv-venv"]


def test_this_interpreters_environment_is_made_here_as_python_m_venv_makes_it(
    tmp_path: Path,
) -> None:
    """Its interpreter is this one's base (torchenv itself runs in an environment), its
    activation scripts are there, backup tools are told to skip it, and uv's warm-up is
    started as soon as the interpreter runs, before the scripts are written."""
    env = tmp_path / "env"
    seen: list[tuple[bool, bool]] = []
    activate = venv.python_in(env).parent / "activate"
    create.make_here(env, lambda: seen.append((venv.python_in(env).exists(), activate.exists())))
    assert seen == [(True, False)]
    out = subprocess.run(
        [str(venv.python_in(env)), "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert out == [str(env), sys.base_prefix]
    assert activate.is_file() and str(env) in activate.read_text()
    assert (env / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f0688")
    assert (env / ".gitignore").read_text() == "*\n"  # in a project, git leaves it out
    assert "include-system-site-packages = false" in (env / "pyvenv.cfg").read_text()


@pytest.mark.skipif(find_uv() is None, reason="uv makes what the standard library refuses")
def test_a_directory_with_the_path_separator_is_made_by_uv(tmp_path: Path) -> None:
    env = tmp_path / f"a{os.pathsep}b" / "env"
    assert not create.made_here(sys.executable, env)
    create.Creation(env, sys.executable, find_uv(), warm=False).start().join()
    done = subprocess.run([str(venv.python_in(env)), "-c", "import sys; print(sys.prefix)"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == str(env)


def test_an_interrupted_sync_kills_the_creation_and_discards_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock, prefix = real_lock(tmp_path / "lock"), tmp_path / ".venv"
    started: list[subprocess.Popen[str]] = []
    real_start = create._start

    def slow_start(argv: list[str]) -> subprocess.Popen[str]:
        # makes the directory, then takes long: as a creation caught half-way
        script = "import os, sys, time; os.makedirs(sys.argv[1]); time.sleep(60)"
        started.append(real_start([sys.executable, "-c", script, argv[-1]]))
        return started[-1]

    def interrupted(*_: object) -> None:
        envs, deadline = venv.Layout.for_prefix(prefix).envs, time.monotonic() + 30
        while not any(envs.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.01)  # until the creation has begun making its directory
        raise KeyboardInterrupt

    monkeypatch.setattr(create, "made_here", lambda *_: False)  # by a command
    monkeypatch.setattr(create, "_start", slow_start)
    monkeypatch.setattr(sync, "fetch_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sync(lock, prefix, tmp_path / "cache")
    assert started and started[0].poll() is not None  # killed, not left running
    assert not prefix.exists() and not prefix.is_symlink()
    assert not venv.Layout.for_prefix(prefix).home.exists()  # a first sync: its home goes too


def test_an_interrupted_sync_waits_for_the_environment_made_here_and_discards_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock, prefix = real_lock(tmp_path / "lock"), tmp_path / ".venv"
    made: list[Path] = []
    real_make_here = create.make_here

    def spied(env_dir: Path, ready: Callable[[], None]) -> None:
        made.append(env_dir)
        real_make_here(env_dir, ready)

    def interrupted(*_: object) -> None:
        envs, deadline = venv.Layout.for_prefix(prefix).envs, time.monotonic() + 30
        while not any(envs.glob("*/bin/python")):
            assert time.monotonic() < deadline, "the interpreter was never made"
            time.sleep(0.001)  # until the creation has made the interpreter
        raise KeyboardInterrupt

    monkeypatch.setattr(create, "make_here", spied)
    monkeypatch.setattr(sync, "fetch_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sync(lock, prefix, tmp_path / "cache")
    assert made and made[0].parent == venv.Layout.for_prefix(prefix).envs  # made here
    assert not [t for t in threading.enumerate() if t.name == "torchenv-venv"]
    assert not prefix.exists() and not prefix.is_symlink()
    assert not venv.Layout.for_prefix(prefix).home.exists()  # a first sync: its home goes too


@pytest.mark.skipif(find_uv() is None, reason="uv's warm-up step")
@pytest.mark.parametrize("here", [True, False], ids=["made-here", "uv-venv"])
def test_a_failed_interpreter_warm_up_is_no_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, here: bool
) -> None:
    uv = find_uv()
    fake, asked = tmp_path / "uv", tmp_path / "asked"  # uv for `venv`, a failed `python find`
    fake.write_text(f'#!/bin/sh\n[ "$1" = python ] && touch {asked} && exit 7\nexec {uv} "$@"\n')
    fake.chmod(0o755)
    if not here:
        monkeypatch.setattr(create, "made_here", lambda *_: False)
    env = tmp_path / "env"
    creation = create.Creation(env, sys.executable, str(fake), warm=True).start()
    creation.join()
    assert venv.python_in(env).exists()
    assert os.access(venv.python_in(env), os.X_OK)
    assert (venv.python_in(env).parent / "activate").is_file()
    assert asked.exists()  # the warm-up ran, and failed


def test_a_manifest_that_cannot_be_written_fails_the_sync_after_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest is written beside the verifier; its failure still fails the sync."""
    lock, cache, prefix = real_lock(tmp_path / "lock"), tmp_path / "cache", tmp_path / ".venv"
    good = run_sync(lock, prefix, cache)
    verified: list[Path] = []

    def no_room(env_dir: Path) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def verifier(python: Path) -> VerifyReport:
        verified.append(python)
        return VerifyReport(checks=())

    monkeypatch.setattr(integrity, "write_manifest", no_room)
    parsed, raw = read_lock_file(lock)
    with pytest.raises(EnvironmentBuildError, match="No space left on device"):
        sync.sync(
            parsed, raw, prefix, host_facts=HOST.target_facts(), cache_dir=cache,
            reporter=RecordingReporter(), verifier=verifier,
        )  # fmt: skip
    assert len(verified) == 1  # the verifier ran to its end
    layout = venv.Layout.for_prefix(prefix)
    assert [p.name for p in layout.envs.iterdir()] == [good.env_id]


def test_the_new_environments_records_are_made_durable_beside_the_verifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest and the lock copy are fsynced while the verifier runs, before the state's
    intent (whose fsync on ext4 would otherwise wait for the whole environment's data)."""
    lock, cache, prefix = real_lock(tmp_path / "lock"), tmp_path / "cache", tmp_path / ".venv"
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        events.append("fsync " + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def verifier(python: Path) -> VerifyReport:
        events.append("verify started")
        deadline = time.monotonic() + 10
        wanted = {f"fsync {integrity.MANIFEST}", f"fsync {sync.LOCK_COPY}"}
        while not wanted <= set(events):  # the thread's fsyncs
            assert time.monotonic() < deadline, events
            time.sleep(0.01)
        events.append("verify ended")
        return VerifyReport(checks=())

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no /proc/self/fd to name an fsynced descriptor's file")
    monkeypatch.setattr(os, "fsync", fsync)
    parsed, raw = read_lock_file(lock)
    result = sync.sync(
        parsed, raw, prefix, host_facts=HOST.target_facts(), cache_dir=cache,
        reporter=RecordingReporter(), verifier=verifier,
    )  # fmt: skip
    ended = events.index("verify ended")  # the verifier waited for the thread's fsync
    assert events.index(f"fsync {integrity.MANIFEST}") < ended
    assert events.index(f"fsync {sync.LOCK_COPY}") < ended
    states = [i for i, e in enumerate(events) if e.startswith("fsync .state.json")]
    assert len(states) == 2 and states[0] > ended  # the intent, then the state after it
    assert venv.active_env(venv.Layout.for_prefix(prefix)) == result.env_id
