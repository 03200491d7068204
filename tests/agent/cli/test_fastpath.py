"""The no-op fast path of `torchenv auto`: it answers only while every input is unchanged.

Each test runs the real console entry (`python -m torchenv.agent`) on a lock of local wheels,
so no network is needed, and tells the fast answer from the full path's by its stages (the
fast check reports `check`, the full path `probe`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import HOSTS
from helpers.locks import build_lock, plain_spec, torch_spec

from torchenv.agent.cli import fastpath, stamps
from torchenv.agent.cli.fastpath_write import Watched
from torchenv.agent.host.source import load_host
from torchenv.probes import LiveIO, probe_host


class Auto:
    """`torchenv auto torch --json --lock L --prefix P` in a scratch directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.work = tmp_path
        self.lock = build_lock(tmp_path / "lockdir", [torch_spec(), plain_spec("filelock")],
                               host=load_host())  # fmt: skip
        self.prefix = tmp_path / "env"
        self.config = tmp_path / "user.toml"
        self.env = {k: v for k, v in os.environ.items() if k != "TORCHENV_NO_FASTPATH"}
        self.env.update({"TORCHENV_CACHE_DIR": str(tmp_path / "cache"),
                         "TORCHENV_USER_CONFIG": str(self.config)})  # fmt: skip

    def __call__(self, **env: str) -> dict[str, Any]:
        argv = [sys.executable, "-m", "torchenv.agent", "auto", "torch", "--json",
                "--lock", str(self.lock), "--prefix", str(self.prefix)]  # fmt: skip
        done = subprocess.run(argv, env={**self.env, **env}, cwd=self.work, capture_output=True,
                              text=True, check=False, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def stamps(self) -> list[Path]:
        return sorted((self.work / "cache" / "noop").glob("*.bin"))

    def settle(self, **env: str) -> None:
        """After a sync: no stamp rests on mtimes a coarse clock may yet repeat (git's racy
        rule), so wait until the environment's are old enough; the full no-op run then
        stamps (unless verify outlasted that window: then the sync stamped)."""
        if self.stamps():
            return
        newest = max(os.lstat(os.path.join(d, n)).st_mtime_ns
                     for d, _, files in os.walk(self.prefix.resolve())
                     for n in [".", *files])  # fmt: skip
        wait = newest + stamps.RACY_NS - fastpath.time.time_ns()
        if wait > 0:
            fastpath.time.sleep(wait / 1e9 + 0.05)
        assert full_noop(self(**env))
        assert len(self.stamps()) == 1


def fast(result: dict[str, Any]) -> bool:
    return result["action"] == "unchanged" and set(result["stages"]) == {"check"}


def full_noop(result: dict[str, Any]) -> bool:
    return result["action"] == "unchanged" and "probe" in result["stages"]


def _site(auto: Auto) -> Path:
    return next(auto.prefix.resolve().glob("lib/python*/site-packages"))


@pytest.fixture
def auto(tmp_path: Path) -> Auto:
    run = Auto(tmp_path)
    first = run()
    assert first["action"] == "synced"
    run.settle()
    second = run()
    assert fast(second), second
    assert second["env"] == first["env"] and second["torch"] == first["torch"]
    assert second["notes"] == ["host, request and lock unchanged; the environment verified before"]
    return run


pytestmark = pytest.mark.e2e


def test_the_fast_answer_is_the_full_no_op_answer(auto: Auto) -> None:
    fast_answer = auto()
    full = auto(TORCHENV_NO_FASTPATH="1")
    assert full_noop(full)
    for key in ("action", "prefix", "lock", "fingerprint", "host", "backend", "torch", "env",
                "installed", "reasons", "skipped", "notes", "relocked", "verify"):  # fmt: skip
        assert fast_answer[key] == full[key], key


def test_a_changed_environment_variable_runs_the_full_path(auto: Auto) -> None:
    # CUDA_DEVICE_ORDER is read by the probe; here it changes nothing the lock depends on.
    assert full_noop(auto(CUDA_DEVICE_ORDER="PCI_BUS_ID"))
    assert fast(auto(CUDA_DEVICE_ORDER="PCI_BUS_ID"))  # stamped again by the full run
    assert full_noop(auto())


def test_a_driver_override_is_a_changed_host(auto: Auto) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "torchenv.agent", "auto", "torch", "--json", "--lock",
         str(auto.lock), "--prefix", str(auto.prefix)],
        env={**auto.env, "TORCHENV_CUDA_DRIVER_VERSION": "13.0"}, cwd=auto.work,
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    out = json.loads(done.stdout)
    assert out.get("action") != "unchanged"  # the host is another: the lock no longer fits
    assert auto.stamps() == []  # the full path dropped the stamp and wrote none


def test_a_changed_settings_file_runs_the_full_path(auto: Auto) -> None:
    auto.config.write_text("probe-timeout = 6\n")
    assert full_noop(auto())
    assert fast(auto())
    auto.config.write_text('channel = "nightly"\n')  # another request: not a no-op
    assert not fast(_run_allowing_failure(auto, auto.env))


def test_a_rewritten_lock_runs_the_full_path(auto: Auto) -> None:
    auto.lock.write_bytes(auto.lock.read_bytes())  # same bytes, new stat
    assert full_noop(auto())
    assert fast(auto())
    auto.lock.write_bytes(auto.lock.read_bytes() + b"\n# edited\n")
    edited = auto()
    assert edited["action"] == "synced"  # another lock: built again
    auto.settle()
    assert fast(auto())


def test_a_damaged_environment_runs_the_full_path_and_is_rebuilt(auto: Auto) -> None:
    init = _site(auto) / "torch" / "__init__.py"  # a sentinel: its own stat is in the stamp
    init.write_text(init.read_text() + "\n# damaged\n")
    rebuilt = auto()
    assert rebuilt["action"] == "synced"
    assert any("files changed" in n for n in rebuilt["notes"])
    auto.settle()
    assert fast(auto())


def test_a_deleted_module_is_noticed_by_the_fast_path_and_rebuilt(auto: Auto) -> None:
    (_site(auto) / "torch" / "version.py").unlink()  # no sentinel: its directory changed
    rebuilt = auto()
    assert rebuilt["action"] == "synced"
    assert any("files changed" in n for n in rebuilt["notes"])
    auto.settle()
    assert fast(auto())


def test_a_file_added_to_a_package_runs_the_full_path(auto: Auto) -> None:
    (_site(auto) / "torch" / "extra.py").write_text("X = 1\n")
    assert full_noop(auto())  # not damage: the full check knows only the wheels' files
    assert auto.stamps() == []  # the directory changed a moment ago: no stamp rests on it
    auto.settle()  # then stamped with the directory as it is now
    assert fast(auto())


def test_a_file_replaced_by_rename_is_noticed_by_the_fast_path(auto: Auto) -> None:
    version = _site(auto) / "torch" / "version.py"
    new = version.with_name("version.py.new")
    new.write_bytes(version.read_bytes())  # the same bytes, as an editor saves them
    st = version.stat()
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    new.replace(version)
    rebuilt = auto()
    assert rebuilt["action"] == "synced"  # another inode: the full check calls it damage
    auto.settle()
    assert fast(auto())


def test_an_in_place_edit_of_a_module_is_left_to_the_full_check_and_verify(auto: Auto) -> None:
    """No directory changes and torch/version.py is no sentinel: the fast path may answer (the
    module docstring says so); the full no-op path and `verify` do notice."""
    version = _site(auto) / "torch" / "version.py"
    with version.open("a") as fh:  # the same inode
        fh.write("# edited in place\n")
    done = subprocess.run(
        [sys.executable, "-m", "torchenv.agent", "verify", "--prefix", str(auto.prefix)],
        env=auto.env, cwd=auto.work, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0 and "torch/version.py" in done.stdout + done.stderr
    rebuilt = auto(TORCHENV_NO_FASTPATH="1")
    assert rebuilt["action"] == "synced"
    assert any("files changed" in n for n in rebuilt["notes"])


def test_a_changed_state_or_switched_environment_runs_the_full_path(auto: Auto) -> None:
    state = auto.prefix.with_name("env.torchenv") / "state.json"
    state.write_bytes(state.read_bytes())
    assert full_noop(auto())
    assert fast(auto())


def test_another_command_line_has_its_own_stamp(auto: Auto) -> None:
    argv = [sys.executable, "-m", "torchenv.agent", "auto", "torch", "--lock", str(auto.lock),
            "--prefix", str(auto.prefix)]  # fmt: skip
    text = subprocess.run(argv, env=auto.env, cwd=auto.work, capture_output=True, text=True,
                          check=True, timeout=300).stdout  # fmt: skip
    assert "nothing to do" in text and "(probe " in text  # the full path, in text
    again = subprocess.run(argv, env=auto.env, cwd=auto.work, capture_output=True, text=True,
                           check=True, timeout=300).stdout  # fmt: skip
    assert "nothing to do" in again and "(check " in again
    assert len(auto.stamps()) == 2


def test_the_typer_way_in_keeps_its_answer_too(auto: Auto) -> None:
    """-q is left to the typer command (no plain way in): its command line is stamped too."""
    argv = [sys.executable, "-m", "torchenv.agent", "auto", "torch", "--json", "-q", "--lock",
            str(auto.lock), "--prefix", str(auto.prefix)]  # fmt: skip
    runs = [json.loads(subprocess.run(argv, env=auto.env, cwd=auto.work, capture_output=True,
                                      text=True, check=True, timeout=300).stdout)
            for _ in range(2)]  # fmt: skip
    assert full_noop(runs[0]) and fast(runs[1])
    assert len(auto.stamps()) == 2


@pytest.mark.parametrize(
    "name", ["entry", "plainargs", "auto_plain", "env", "env_run", "hostflags", "outcome",
             "lock_run"],
)  # fmt: skip
def test_a_changed_module_of_either_way_in_runs_the_full_path(auto: Auto, name: str) -> None:
    """The plain way's modules and the typer command's (a reinstall changes their stat)."""
    module = Path(fastpath.__file__).with_name(f"{name}.py")
    before = module.stat()
    try:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        assert full_noop(auto())
    finally:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert full_noop(auto())  # stamped while it was changed: that stamp holds no longer


def _run_allowing_failure(auto: Auto, env: dict[str, str]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "torchenv.agent", "auto", "torch", "--json",
            "--lock", str(auto.lock), "--prefix", str(auto.prefix)]  # fmt: skip
    done = subprocess.run(argv, env=env, cwd=auto.work, capture_output=True, text=True,
                          check=False, timeout=300)  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# ---------------------------------------------------------------- the probe's inputs


def _changed(inputs: dict[tuple[str, str], Any]) -> set[tuple[str, str]]:
    return {key for key, value in inputs.items() if fastpath.observe(*key) != value}


def test_the_driver_version_and_the_gpus_are_inputs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(HOSTS / "h100-driver580" / "root", root, symlinks=True)
    watched = Watched(LiveIO(root=root), root=str(root))
    probe_host(watched)
    assert watched.stands_for_probe()
    inputs = watched.probe_inputs()
    assert _changed(inputs) == set()

    version = root / "proc/driver/nvidia/version"
    assert ("text", str(version)) in inputs
    original = version.read_text()
    version.write_text(original.replace("580.", "590."))
    assert _changed(inputs) == {("text", str(version))}
    version.write_text(original)

    gpus = root / "proc/driver/nvidia/gpus"
    shutil.rmtree(gpus / sorted(os.listdir(gpus))[0])
    assert ("list", str(gpus)) in _changed(inputs)


def test_a_gpu_swapped_in_the_same_slot_is_a_changed_input(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(HOSTS / "h100-driver580" / "root", root, symlinks=True)
    watched = Watched(LiveIO(root=root), root=str(root))
    probe_host(watched)
    inputs = watched.probe_inputs()
    devices = [Path(p) for (kind, p) in inputs if kind == "text" and p.endswith("/device")]
    assert devices, "the PCI device ids stand for the GPU models NVML reported"
    devices[0].write_text("0x20b0\n")
    assert ("text", str(devices[0])) in _changed(inputs)


def test_a_probe_asking_what_the_stamp_cannot_stand_for_gets_none() -> None:
    watched = Watched(LiveIO())
    watched.fact("mac_ver", lambda: ["14.0", ["", "", ""], "arm64"])
    assert not watched.stands_for_probe()


def test_the_stamp_keeps_no_environment_value(tmp_path: Path) -> None:
    run = Auto(tmp_path)
    secret = "s3cr3t-9f2c41d7e5"
    assert run(API_TOKEN=secret)["action"] == "synced"
    run.settle(API_TOKEN=secret)
    stamps = run.stamps()
    assert len(stamps) == 1 and secret.encode() not in stamps[0].read_bytes()
    assert fast(run(API_TOKEN=secret))
    assert full_noop(run(API_TOKEN=secret + "x"))  # another value: the full path


def test_a_stamp_written_prunes_old_and_surplus_stamps(auto: Auto) -> None:
    """Stamps (one per command line and directory) are bounded: a stamp written removes those
    older than KEEP_DAYS and all but the newest KEEP_STAMPS."""

    noop = auto.work / "cache" / "noop"
    ours = auto.stamps()[0]
    now = fastpath.time.time()
    for n in range(stamps.KEEP_STAMPS + 10):
        other = noop / f"auto-{n:016x}.bin"
        other.write_bytes(b"")
        age = 40 * 86400 if n < 5 else n  # five a month old, the rest seconds old
        os.utime(other, (now - age, now - age))
    ours.unlink()
    assert full_noop(auto())  # writes its stamp again
    left = auto.stamps()
    assert ours in left
    assert len(left) == stamps.KEEP_STAMPS
    assert not any((noop / f"auto-{n:016x}.bin").exists() for n in range(5))


def test_the_stamp_is_written_through_a_fresh_temporary_file(tmp_path: Path) -> None:
    """A temporary name another process (another container: same pid) left, even a link to
    some file, is neither truncated nor followed."""
    from torchenv.agent.cli.stamps import write

    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    path = tmp_path / "noop" / "auto-0.bin"
    path.parent.mkdir()
    os.symlink(victim, f"{path}.{os.getpid()}.tmp")
    write(str(path), b"stamp")
    assert victim.read_bytes() == b"keep me"
    assert path.read_bytes() == b"stamp" and not path.is_symlink()
