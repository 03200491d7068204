"""The way back: environments share no files, damage is noticed and rebuilt from checked bytes.

Real wheels (built by the tests) in real environments made by the real installer (uv).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from helpers.fakelocker import FakeLocker
from helpers.faults import HOST, expect_clean_failure, real_lock, run
from helpers.locks import build_lock, plain_spec, torch_spec

from torchenv.agent.base.options import AutoOptions
from torchenv.agent.base.reporter import RecordingReporter
from torchenv.agent.base.settings import load_settings
from torchenv.agent.env import integrity, switch, sync, venv
from torchenv.agent.lock.pylock import read_lock_file
from torchenv.agent.pipeline import core as pipeline

pytestmark = pytest.mark.e2e


def run_sync(lock: Path, prefix: Path, cache: Path, **options: str) -> sync.SyncResult:
    parsed, raw = read_lock_file(lock)
    return sync.sync(
        parsed, raw, prefix, host_facts=HOST.target_facts(), cache_dir=cache,
        reporter=RecordingReporter(), verifier=None, **options,  # type: ignore[arg-type]
    )  # fmt: skip


def module_file(env: Path, name: str) -> Path:
    return next(env.glob(f"lib/python*/site-packages/{name}/__init__.py"))


def damage_in_place(path: Path, *, keep_stat: bool = False) -> None:
    """Write into the file itself (same inode), as an editor or a stray script would."""
    before = path.stat()
    data = path.read_bytes()
    with path.open("r+b") as fh:  # not a new file: every hard link to it sees the change
        fh.write(b"#" + data[1:])
    if keep_stat:  # size, inode and mtime as before: only the content says it changed
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.fixture
def two_locks(tmp_path: Path) -> tuple[Path, Path]:
    """Two locks sharing filelock 1.0 (the file both environments would hold)."""
    a = build_lock(tmp_path / "a", [torch_spec("2.13.0+cpu"), plain_spec("filelock")], host=HOST)
    b = build_lock(tmp_path / "b", [torch_spec("2.14.0+cpu"), plain_spec("filelock")], host=HOST)
    return a, b


def test_environments_share_no_files_so_the_previous_one_stays_a_way_back(
    tmp_path: Path, two_locks: tuple[Path, Path]
) -> None:
    prefix, cache = tmp_path / ".venv", tmp_path / "cache"
    first = run_sync(two_locks[0], prefix, cache)
    second = run_sync(two_locks[1], prefix, cache)
    active, previous = (
        module_file(second.env_dir, "filelock"),
        module_file(first.env_dir, "filelock"),
    )
    assert active.stat().st_nlink == 1 and previous.stat().st_nlink == 1  # no other name
    pristine = previous.read_bytes()
    damage_in_place(active)
    assert previous.read_bytes() == pristine
    switch.rollback(venv.Layout.for_prefix(prefix))
    assert module_file(prefix, "filelock").read_bytes() == pristine


def auto(tmp_path: Path, locker: FakeLocker, **cli: str) -> pipeline.AutoResult:
    host_file = tmp_path / "host.json"
    if not host_file.exists():
        host_file.write_text(json.dumps(HOST.to_json()))
    env = {"TORCHENV_CACHE_DIR": str(tmp_path / "cache")}
    settings = load_settings(
        {"prefix": str(tmp_path / "env"), **cli}, env=env, cwd=tmp_path,
        user_config=tmp_path / "none.toml", system_config=tmp_path / "none.toml",
    )  # fmt: skip
    return pipeline.auto(
        ("torch", "filelock"), options=AutoOptions.from_settings(settings),
        source=pipeline.HostSource(host_report=host_file),
        reporter=RecordingReporter(), cwd=tmp_path, locker=locker,
    )  # fmt: skip


@pytest.mark.parametrize("link_mode", ["auto", "hardlink"])
def test_no_op_auto_notices_changed_files_and_rebuilds_from_checked_bytes(
    tmp_path: Path, link_mode: str
) -> None:
    """With hard links the installer's cache is damaged too: its entry is dropped first."""
    locker = FakeLocker(tmp_path / "locks")
    first = auto(tmp_path, locker, **{"link-mode": link_mode})
    pristine = module_file(tmp_path / "env", "filelock").read_bytes()
    damage_in_place(module_file(tmp_path / "env", "filelock"))

    again = auto(tmp_path, locker, **{"link-mode": link_mode})
    assert again.action == "synced" and not again.relocked and len(locker.calls) == 1
    assert again.env_id != first.env_id
    assert any("filelock" in n and "files changed" in n for n in again.notes), again.notes
    assert module_file(tmp_path / "env", "filelock").read_bytes() == pristine
    assert auto(tmp_path, locker, **{"link-mode": link_mode}).action == "unchanged"


def test_verify_hashes_every_file_and_auto_then_rebuilds(tmp_path: Path) -> None:
    locker = FakeLocker(tmp_path / "locks")
    auto(tmp_path, locker)
    target = module_file(tmp_path / "env", "filelock")
    pristine = target.read_bytes()
    damage_in_place(target, keep_stat=True)  # the no-op's stat check cannot see this
    assert auto(tmp_path, locker).action == "unchanged"

    checked = run(["verify", "--prefix", str(tmp_path / "env")], tmp_path)
    expect_clean_failure(checked, "differ from their wheels' RECORD hashes", "filelock")
    again = auto(tmp_path, locker)
    assert again.action == "synced" and not again.relocked
    assert module_file(tmp_path / "env", "filelock").read_bytes() == pristine
    assert run(["verify", "--prefix", str(tmp_path / "env")], tmp_path).returncode == 0


def test_rollback_refuses_a_damaged_previous_environment(
    tmp_path: Path, two_locks: tuple[Path, Path]
) -> None:
    prefix, cache = tmp_path / ".venv", tmp_path / "cache"
    first = run_sync(two_locks[0], prefix, cache)
    second = run_sync(two_locks[1], prefix, cache)
    damage_in_place(module_file(first.env_dir, "torch"))
    done = run(["rollback", "--prefix", str(prefix)], tmp_path)
    expect_clean_failure(done, "previous environment", "damaged", "torch")
    assert venv.active_env(venv.Layout.for_prefix(prefix)) == second.env_id


def test_a_damaged_cached_wheel_is_dropped_and_downloaded_again(tmp_path: Path) -> None:
    lock, cache = real_lock(tmp_path / "lock"), tmp_path / "cache"
    run_sync(lock, tmp_path / "one", cache)
    cached = next((cache / "wheels").rglob("filelock-*.whl"))
    size = cached.stat().st_size
    cached.write_bytes(b"\0" * size)  # the right size, the wrong bytes
    parsed, raw = read_lock_file(lock)
    reporter = RecordingReporter()
    result = sync.sync(
        parsed, raw, tmp_path / "two", host_facts=HOST.target_facts(), cache_dir=cache,
        reporter=reporter, verifier=None,
    )  # fmt: skip
    assert result.downloaded_bytes == size
    locked = parsed.package("filelock")
    assert locked is not None
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == locked.wheel.sha256
    warnings = [e[1] for e in reporter.events if e[0] == "warning"]
    assert any("no longer match the lock" in w for w in warnings), reporter.events


def test_the_quick_check_names_what_changed_and_skips_headers(tmp_path: Path) -> None:
    env = tmp_path / "env"
    site = env / "lib" / "python3.11" / "site-packages"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg-1.0.dist-info").mkdir()
    files = {"pkg/__init__.py": b"X = 1\n", "pkg/api.h": b"int x;\n", "../../../bin/tool": b"#!"}
    (env / "bin").mkdir()
    for name, data in files.items():
        (site / name).write_bytes(data)
    record = "".join(f"{name},,\n" for name in files) + "../../../../../../etc/passwd,,\n"
    (site / "pkg-1.0.dist-info" / "RECORD").write_text(record)
    assert integrity.write_manifest(env) == 2  # the header is left to the full check
    assert integrity.quick_check(env) == []
    (site / "pkg" / "api.h").write_bytes(b"changed\n")
    (env / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (site / "pkg" / "__init__.py").unlink()
    damage = integrity.quick_check(env)
    changed = ("bin/tool", "lib/python3.11/site-packages/pkg/__init__.py")
    assert damage == [integrity.Damage("pkg", changed)]


def test_the_agent_hashes_the_files_it_keeps_and_rebuilds_a_damaged_environment(
    tmp_path: Path,
) -> None:
    import base64
    import sys

    from helpers import HOSTS
    from helpers.daemon import FAKE_AUTO, running_agent, write_config

    prefix = tmp_path / "envs" / "default"
    prefix.parent.mkdir()
    socket_path = tmp_path / "agent.sock"
    config = write_config(
        tmp_path / "config.toml", socket=socket_path, state_dir=tmp_path / "state",
        host_replay=HOSTS / "cpu-cloud-vm", provisioner=[sys.executable, str(FAKE_AUTO)],
        interval=600, integrity_interval=0.1,
        environments=[{"name": "default", "prefix": prefix, "requirements": ["torch"]}],
    )  # fmt: skip
    with running_agent(config, socket_path, tmp_path / "agent.log") as agent:
        agent.wait_state("active")
        site = prefix.resolve() / "lib" / "python3.11" / "site-packages"
        (site / "x-1.0.dist-info").mkdir(parents=True)
        digest = base64.urlsafe_b64encode(hashlib.sha256(b"X = 1\n").digest()).rstrip(b"=")
        (site / "x-1.0.dist-info" / "RECORD").write_text(f"x.py,sha256={digest.decode()},6\n")
        (site / "x.py").write_text("X = 2\n")  # not what the wheel installed
        assert agent.post("/v1/reconcile")[0] == 202
        env = agent.wait_state("active", provisions={"ok": 2, "failed": 0})
        assert env["state"] == "active"
        log = agent.text()
        assert "installed files differ from their wheels: x (1 file: lib/python3.11/" in log
        assert "provisioning into" in log and "files changed since they were installed" in log
        assert agent.terminate() == 0


@pytest.mark.parametrize(
    ("path", "stat_itself"),
    [
        ("lib/python3.11/site-packages/torch/__init__.py", True),
        ("lib/python3.11/site-packages/torch/lib/libtorch_cpu.so", True),
        ("lib/python3.11/site-packages/nvidia/cudnn/lib/libcudnn.so.9", True),
        ("lib/python3.11/site-packages/torch/_C.cpython-311-x86_64-linux-gnu.so", True),
        ("Lib/site-packages/torch/lib/c10.pyd", True),
        ("lib/python3.11/site-packages/torch-2.13.0+cpu.dist-info/RECORD", True),
        ("lib/python3.11/site-packages/distutils-precedence.pth", True),
        ("bin/torchrun", True),
        ("lib/python3.11/site-packages/torch/version.py", False),
        ("lib/python3.11/site-packages/torch/_refs/nn/functional/__init__.pyi", False),
        ("lib/python3.11/site-packages/sympy/solvers/ode/ode.py", False),
    ],
)
def test_the_fast_path_stats_sentinels_itself(path: str, stat_itself: bool) -> None:
    assert integrity.sentinel(path) is stat_itself


def test_tree_facts_are_every_directory_and_the_sentinels(tmp_path: Path) -> None:
    lock = build_lock(tmp_path / "lockdir", [torch_spec(), plain_spec("filelock")], host=HOST)
    result = run_sync(lock, tmp_path / "env", tmp_path / "cache")
    env = result.env_dir
    manifest = json.loads((env / integrity.MANIFEST).read_text())
    listed = {d for groups in manifest["files"].values() for d in groups}
    dirs, sentinels = integrity.tree_facts(env)
    assert {d for d, _, _ in dirs} == listed
    assert all(os.lstat(env / d).st_ino == ino for d, _, ino in dirs)
    names = {p for p, *_ in sentinels}
    assert any(p.endswith("torch/__init__.py") for p in names)
    assert any(".dist-info/" in p for p in names)
    assert not any(p.endswith("torch/version.py") for p in names)
