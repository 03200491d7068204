"""sync: real wheels into real environments; atomic switch, rollback, refusals and failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
import tomllib
from helpers.locks import build_lock, cpu_host, plain_spec, torch_spec

from torchenv.agent.base.errors import (
    EnvironmentBuildError,
    IntegrityError,
    LockFileError,
    VerifyError,
)
from torchenv.agent.base.reporter import RecordingReporter
from torchenv.agent.base.uvbin import find_uv
from torchenv.agent.env import prefixlock, switch, sync, targetcheck, venv
from torchenv.agent.lock.pylock import read_lock_file
from torchenv.agent.lock.resolvers.target import target_of
from torchenv.agent.pipeline.stages import verifier_for

pytestmark = pytest.mark.e2e

HOST = cpu_host()
TORCHENV = [sys.executable, "-m", "torchenv.agent"]


def torch_version(prefix: Path) -> str:
    out = subprocess.run(
        [str(venv.python_in(prefix)), "-c", "import torch; print(torch.__version__)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def run_sync(lock: Path, prefix: Path, cache: Path, *, force: bool = False) -> sync.SyncResult:
    parsed, raw = read_lock_file(lock)
    return sync.sync(
        parsed, raw, prefix, host_facts=HOST.target_facts(), cache_dir=cache,
        reporter=RecordingReporter(), force=force,
        verifier=verifier_for(HOST, parsed, devices_here=False),
    )  # fmt: skip


@pytest.fixture
def locks(tmp_path: Path) -> tuple[Path, Path]:
    a = build_lock(tmp_path / "a", [torch_spec("2.13.0+cpu"), plain_spec("filelock")], host=HOST)
    b = build_lock(tmp_path / "b", [torch_spec("2.14.0+cpu"), plain_spec("filelock")], host=HOST)
    return a, b


def test_sync_switches_keeps_previous_and_rolls_back(tmp_path: Path, locks: tuple[Path, Path]):
    prefix, cache = tmp_path / "proj" / ".venv", tmp_path / "cache"
    first = run_sync(locks[0], prefix, cache)
    assert prefix.is_symlink() and torch_version(prefix) == "2.13.0+cpu"
    assert first.verify is not None and first.verify.ok and first.cached == 0
    second = run_sync(locks[1], prefix, cache)
    assert torch_version(prefix) == "2.14.0+cpu"
    assert second.previous == first.env_id
    layout = venv.Layout.for_prefix(prefix)
    assert switch.rollback(layout) == (first.env_id, second.env_id)
    assert torch_version(prefix) == "2.13.0+cpu"
    third = run_sync(locks[1], prefix, cache)
    assert third.cached == 2 and third.downloaded_bytes == 0
    # only the active environment and the one before it remain
    assert sorted(p.name for p in layout.envs.iterdir()) == sorted([first.env_id, third.env_id])


def test_a_sync_builds_where_an_environment_was_removed_and_uv_keeps_its_interpreter(
    tmp_path: Path, locks: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names come back once their environment is removed (three take turns: the active, the
    previous and the new one), so uv's cache already knows the new interpreter's path."""
    if find_uv() is None:
        pytest.skip("uv is not installed here: the installer is pip, which keeps no such cache")
    uv_cache = tmp_path / "uv-cache"
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))
    prefix, cache = tmp_path / "proj" / ".venv", tmp_path / "cache"
    layout = venv.Layout.for_prefix(prefix)

    def interpreters_known() -> dict[Path, int]:  # uv writes an entry where it asked anew
        return {p: p.stat().st_mtime_ns for p in uv_cache.glob("interpreter-v*/**/*.msgpack")}

    results = [run_sync(locks[n % 2], prefix, cache) for n in range(3)]
    known = interpreters_known()
    assert len(known) >= 3  # one per environment's path, at least
    assert len({r.env_id for r in results}) == 3
    fourth = run_sync(locks[1], prefix, cache)
    assert fourth.env_id == results[0].env_id  # the first one's name, freed by the third sync
    assert fourth.previous == results[2].env_id
    assert interpreters_known() == known  # uv asked the new interpreter nothing
    assert torch_version(prefix) == "2.14.0+cpu"
    assert sorted(p.name for p in layout.envs.iterdir()) == sorted(
        [fourth.env_id, results[2].env_id]
    )
    assert switch.rollback(layout) == (results[2].env_id, fourth.env_id)
    assert torch_version(prefix) == "2.13.0+cpu"


def test_without_its_state_file_the_way_back_is_the_last_built_whatever_its_name(
    tmp_path: Path,
) -> None:
    """Names tell no age: the previous environment is the one whose lock copy is newest."""
    layout = venv.Layout.for_prefix(tmp_path / ".venv")
    for name, age in (("1", 10), ("2", 30), ("3", 20), ("4", 0)):
        env = layout.env_dir(name)
        venv.python_in(env).parent.mkdir(parents=True)
        venv.python_in(env).write_text("")
        copy = env / venv.LOCK_COPY
        copy.write_text("")
        os.utime(copy, (1_700_000_000 - age, 1_700_000_000 - age))
    (layout.env_dir("5") / "bin").mkdir(parents=True)  # an unfinished build: no lock copy
    os.symlink(layout.env_dir("4"), layout.prefix)
    assert venv.read_state(layout) == {"previous": "1"}
    (layout.env_dir("1") / venv.LOCK_COPY).unlink()
    assert venv.read_state(layout) == {"previous": "3"}
    assert venv.new_env_id(layout) == "6"  # each name there is taken, finished or not
    venv.discard(layout.env_dir("2"))
    assert venv.new_env_id(layout) == "2"


def test_lock_for_another_target_is_refused_unless_forced(tmp_path: Path) -> None:
    other = cpu_host(arch="aarch64")
    lock = build_lock(tmp_path, [torch_spec()], host=other)
    prefix = tmp_path / ".venv"
    with pytest.raises(LockFileError, match="arch: lock 'aarch64' != host 'x86_64'"):
        run_sync(lock, prefix, tmp_path / "cache")
    assert not prefix.exists() and not prefix.is_symlink()
    assert run_sync(lock, prefix, tmp_path / "cache", force=True).verify is not None


def test_a_lock_without_torchenv_facts_syncs_with_a_note(tmp_path: Path) -> None:
    """Another tool's lock (no [tool.torchenv], no size, no index): installed for this host's
    tags and markers; what could not be checked is said; verify takes the build from the label."""
    made = build_lock(tmp_path, [torch_spec("2.13.0+cpu"), plain_spec("filelock")], host=HOST)
    doc = tomllib.loads(made.read_text(encoding="utf-8"))
    del doc["tool"]
    for package in doc["packages"]:
        del package["index"]
        for wheel in package["wheels"]:
            del wheel["size"], wheel["name"]
    doc["created-by"] = "uv"
    made.write_text(tomli_w.dumps(doc), encoding="utf-8")
    parsed, raw = read_lock_file(made)
    reporter = RecordingReporter()
    result = sync.sync(
        parsed.for_target(target_of(HOST)), raw, tmp_path / ".venv",
        host_facts=HOST.target_facts(), cache_dir=tmp_path / "cache", reporter=reporter,
        verifier=verifier_for(HOST, parsed, devices_here=False),
    )  # fmt: skip
    assert result.verify is not None and result.verify.ok
    assert torch_version(tmp_path / ".venv") == "2.13.0+cpu"
    checks = {c.name: c.status.value for c in result.verify.checks}
    assert checks["cpu build"] == "passed"  # the backend came from the +cpu label
    notes = [e[1] for e in reporter.events if e[0] == "warning"]
    assert any("created by uv" in n and "could not be checked" in n for n in notes), notes


def test_hash_mismatch_installs_nothing(tmp_path: Path, locks: tuple[Path, Path]) -> None:
    prefix, cache = tmp_path / ".venv", tmp_path / "cache"
    good = run_sync(locks[0], prefix, cache)
    wheel = next((locks[1].parent / "wheels").glob("torch-*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:-10] + b"0123456789")  # same size, other content
    with pytest.raises(IntegrityError, match="does not match the lock"):
        run_sync(locks[1], prefix, cache)
    assert venv.active_env(venv.Layout.for_prefix(prefix)) == good.env_id
    assert torch_version(prefix) == "2.13.0+cpu"


def test_failed_verification_is_not_switched(tmp_path: Path, locks: tuple[Path, Path]) -> None:
    prefix, cache = tmp_path / ".venv", tmp_path / "cache"
    run_sync(locks[0], prefix, cache)
    lying = build_lock(tmp_path / "c", [torch_spec("2.14.0+cpu")], host=HOST, backend="cu128")
    with pytest.raises(VerifyError, match="cu128 build"):
        run_sync(lying, prefix, cache)
    assert torch_version(prefix) == "2.13.0+cpu"
    assert len(list(venv.Layout.for_prefix(prefix).envs.iterdir())) == 1


def test_a_name_a_record_holds_is_not_built_at_though_its_directory_is_gone(
    tmp_path: Path, locks: tuple[Path, Path]
) -> None:
    """The prefix still points at its environment's name, and the state names the previous
    one, after someone removed their directories: a new build goes elsewhere, so a failed
    one is removed and never becomes the active or the previous environment."""
    prefix, cache = tmp_path / ".venv", tmp_path / "cache"
    first = run_sync(locks[0], prefix, cache)
    second = run_sync(locks[1], prefix, cache)
    layout = venv.Layout.for_prefix(prefix)
    for gone in (first, second):
        venv.discard(layout.env_dir(gone.env_id))
    lying = build_lock(tmp_path / "c", [torch_spec("2.14.0+cpu")], host=HOST, backend="cu128")
    with pytest.raises(VerifyError, match="cu128 build"):
        run_sync(lying, prefix, cache)
    assert venv.active_env(layout) == second.env_id
    assert venv.read_state(layout)["previous"] == first.env_id
    assert list(layout.envs.iterdir()) == []  # the failed build was removed
    third = run_sync(locks[0], prefix, cache)
    assert third.env_id not in (first.env_id, second.env_id)
    assert torch_version(prefix) == "2.13.0+cpu"


def test_new_names_pass_over_what_a_switch_intent_names(tmp_path: Path) -> None:
    layout = venv.Layout.for_prefix(tmp_path / ".venv")
    layout.envs.mkdir(parents=True)
    venv.write_state(layout, {"previous": "2", "switching": {"from": "1", "to": "3"}})
    assert venv.new_env_id(layout) == "4"


def test_rollback_refuses_a_previous_environment_whose_build_never_finished(
    tmp_path: Path, locks: tuple[Path, Path]
) -> None:
    prefix, cache = tmp_path / ".venv", tmp_path / "cache"
    first = run_sync(locks[0], prefix, cache)
    run_sync(locks[1], prefix, cache)
    layout = venv.Layout.for_prefix(prefix)
    venv.lock_copy(layout.env_dir(first.env_id)).unlink()  # as a build cut short leaves it
    with pytest.raises(EnvironmentBuildError, match="incomplete: its build never finished"):
        switch.rollback(layout)
    assert torch_version(prefix) == "2.14.0+cpu"


def test_a_users_own_venv_is_kept(tmp_path: Path, locks: tuple[Path, Path]) -> None:
    prefix = tmp_path / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    (prefix / "mine.txt").write_text("keep me")
    with pytest.raises(EnvironmentBuildError, match="did not make"):
        run_sync(locks[0], prefix, tmp_path / "cache")
    assert (prefix / "mine.txt").read_text() == "keep me"
    result = run_sync(locks[0], prefix, tmp_path / "cache", force=True)
    assert result.adopted is not None and (result.adopted / "mine.txt").read_text() == "keep me"
    assert torch_version(prefix) == "2.13.0+cpu"


def test_target_differences_reads_the_toml_form() -> None:
    facts = HOST.target_facts()
    from torchenv.agent.lock.pylock import toml_safe

    assert targetcheck.target_differences(toml_safe(facts), facts) == []
    changed = {**toml_safe(facts), "os": "windows"}
    assert targetcheck.target_differences(changed, facts) == ["os: lock 'windows' != host 'linux'"]


# ---------------------------------------------------------------- the CLI, killed and failing


def cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ, "TORCHENV_CACHE_DIR": str(cwd / "cache"),
        "TORCHENV_USER_CONFIG": str(cwd / "no-config.toml"), **env,
    }  # fmt: skip
    if "TORCHENV_FAULT" not in env:
        full.pop("TORCHENV_FAULT", None)
    return subprocess.run(
        [*TORCHENV, *args], cwd=cwd, env=full, capture_output=True, text=True, check=False
    )


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    path = tmp_path / "host.json"
    path.write_text(json.dumps(HOST.to_json()))
    return path


def cli_sync(lock: Path, cwd: Path, host_file: Path, *extra: str, **env: str):  # type: ignore[no-untyped-def]
    return cli(["sync", str(lock), "--host-report", str(host_file), *extra], cwd, **env)


@pytest.mark.parametrize(
    "fault",
    ["download:kill", "install:kill", "switch:kill", "install:interrupt", "install:enospc"],
)
def test_interrupted_sync_keeps_the_active_env(
    tmp_path: Path, locks: tuple[Path, Path], host_file: Path, fault: str
) -> None:
    first = cli_sync(locks[0], tmp_path, host_file)
    assert first.returncode == 0, first.stderr
    layout = venv.Layout.for_prefix(tmp_path / ".venv")
    active = venv.active_env(layout)
    broken = cli_sync(locks[1], tmp_path, host_file, TORCHENV_FAULT=fault)
    expected = {"kill": -9, "interrupt": 130, "enospc": 1}[fault.split(":")[1]]
    assert broken.returncode == expected, broken.stderr
    if fault.endswith("enospc"):
        assert "No space left on device" in broken.stderr and "free disk space" in broken.stderr
    assert venv.active_env(layout) == active
    assert torch_version(layout.prefix) == "2.13.0+cpu"
    checked = cli(["verify", "--json"], tmp_path)
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"], checked.stdout
    again = cli_sync(locks[1], tmp_path, host_file)
    assert again.returncode == 0, again.stderr
    assert torch_version(layout.prefix) == "2.14.0+cpu"
    assert len(list(layout.envs.iterdir())) == 2  # the new one and the previous: no debris
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_bad_input_exits_1_and_changes_nothing(
    tmp_path: Path, locks: tuple[Path, Path], host_file: Path
) -> None:
    assert cli_sync(locks[0], tmp_path, host_file).returncode == 0
    corrupt = tmp_path / "corrupt.toml"
    corrupt.write_text("lock-version = '1.0'\n[[packages]\nname=")
    other = build_lock(tmp_path / "arm", [torch_spec()], host=cpu_host(arch="aarch64"))
    a_file = tmp_path / "plainfile"
    a_file.write_text("data")
    cases = [
        (cli_sync(corrupt, tmp_path, host_file), "not a TOML file"),
        (cli_sync(other, tmp_path, host_file), "made for another target"),
        (cli_sync(locks[1], tmp_path, host_file, "--prefix", str(a_file)), "is a file"),
        (cli_sync(locks[1], tmp_path, host_file, TORCHENV_FAULT="home:eacces"), "Permission"),
    ]
    for done, message in cases:
        assert done.returncode == 1, (message, done.stderr)
        assert message in done.stderr and done.stderr.startswith("torchenv: ")
    assert a_file.read_text() == "data"
    assert torch_version(tmp_path / ".venv") == "2.13.0+cpu"


def test_a_refused_first_command_leaves_no_home_beside_the_prefix(
    tmp_path: Path, locks: tuple[Path, Path], host_file: Path
) -> None:
    corrupt = tmp_path / "corrupt.toml"
    corrupt.write_text("lock-version = '1.0'\n[[packages]\nname=")
    other = build_lock(tmp_path / "arm", [torch_spec()], host=cpu_host(arch="aarch64"))
    refused = [
        (cli_sync(corrupt, tmp_path, host_file, "--prefix", "first"), "not a TOML file"),
        (cli_sync(other, tmp_path, host_file, "--prefix", "first"), "made for another target"),
        (cli(["rollback", "--prefix", "first"], tmp_path), "no previous environment"),
        (cli_sync(locks[0], tmp_path, host_file, "--prefix", "first",
                  TORCHENV_FAULT="home:eacces"), "Permission"),  # envs/ never made
    ]  # fmt: skip
    for done, message in refused:
        assert done.returncode == 1 and message in done.stderr, (message, done.stderr)
        assert not (tmp_path / "first.torchenv").exists(), message
    # a home with an environment in it is kept whatever is refused there
    assert cli_sync(locks[0], tmp_path, host_file, "--prefix", "first").returncode == 0
    assert cli_sync(corrupt, tmp_path, host_file, "--prefix", "first").returncode == 1
    assert torch_version(tmp_path / "first") == "2.13.0+cpu"


def test_a_waiter_takes_the_lock_file_anew_when_its_holder_removed_it(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "home" / "lock"
    path.parent.mkdir()
    seen: list[tuple[bool, bool]] = []
    waiting = threading.Event()

    class Waiting(RecordingReporter):
        def info(self, message: str) -> None:
            waiting.set()

    def waiter() -> None:
        with (
            prefixlock.hold(path, reporter=Waiting(), timeout=10),
            prefixlock.try_hold(path) as free,  # another would-be holder of the file at `path`
        ):
            seen.append((path.exists(), free))

    with prefixlock.hold(path, reporter=RecordingReporter(), timeout=1):
        thread = threading.Thread(target=waiter)
        thread.start()
        assert waiting.wait(10)
        path.unlink()  # as venv.remove_unused_home does, holding the lock
        path.parent.rmdir()
    thread.join(10)
    assert seen == [(True, False)]  # the waiter holds the lock of the file now at `path`


def test_a_lock_whose_directory_went_before_the_open_makes_it_again(tmp_path: Path) -> None:
    # the order of a first command whose home another removed between its making and opening
    path = tmp_path / "home" / "lock"
    with prefixlock.hold(path, reporter=RecordingReporter(), timeout=1):
        assert path.is_file()
        with prefixlock.try_hold(path) as free:
            assert not free


def test_a_failed_command_removes_an_empty_home_another_made(
    tmp_path: Path, host_file: Path
) -> None:
    layout = venv.Layout.for_prefix(tmp_path / "first")
    venv.ensure_home(layout)  # left by a process that died before its command failed
    corrupt = tmp_path / "corrupt.toml"
    corrupt.write_text("lock-version = '1.0'\n[[packages]\nname=")
    done = cli_sync(corrupt, tmp_path, host_file, "--prefix", "first")
    assert done.returncode == 1 and "not a TOML file" in done.stderr, done.stderr
    assert not layout.home.exists()


def test_second_process_waits_then_says_who_holds_the_prefix(
    tmp_path: Path, locks: tuple[Path, Path], host_file: Path
) -> None:
    layout = venv.Layout.for_prefix(tmp_path / ".venv")
    venv.ensure_home(layout)
    with prefixlock.hold(layout.lock_file, reporter=RecordingReporter(), timeout=1):
        done = cli_sync(locks[0], tmp_path, host_file, "--json", TORCHENV_LOCK_TIMEOUT="0.3")
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["error"] == "busy" and error["details"]["pid"] == str(os.getpid())
    assert cli_sync(locks[0], tmp_path, host_file).returncode == 0


def test_pip_fallback_installs_the_same(
    tmp_path: Path, locks: tuple[Path, Path], host_file: Path
) -> None:
    done = cli_sync(locks[0], tmp_path, host_file, "--json", TORCHENV_UV="")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["installer"] == "pip"
    assert torch_version(tmp_path / ".venv") == "2.13.0+cpu"
