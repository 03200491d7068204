"""systemd/ units: `systemd-analyze verify` accepts them and they say what the agent needs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

UNITS = ROOT / "systemd"
NAMES = ("torchenv-agent.service", "torchenv-bootstrap.service")
INSTALLED = "/usr/local/bin/torchenv"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze is not installed (Debian/Ubuntu: apt-get install -y systemd)",
)


def settings(name: str) -> dict[str, list[str]]:
    """Key -> values (keys may repeat), over all sections."""
    found: dict[str, list[str]] = {}
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def staged(tmp: Path, name: str, text: str | None = None) -> Path:
    """A copy whose ExecStart binary exists here (verify checks that it is executable)."""
    torchenv = shutil.which("torchenv") or str(Path(sys.executable).parent / "torchenv")
    body = (UNITS / name).read_text() if text is None else text
    path = tmp / name
    path.write_text(body.replace(INSTALLED, torchenv))
    return path


def verify(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, "verify", *map(str, paths)], capture_output=True, text=True,
                          check=False, timeout=120)  # fmt: skip


@needs_analyze
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    paths = [staged(tmp_path, name) for name in NAMES]
    result = verify(paths)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    complaints = [line for line in output.splitlines() if any(n in line for n in NAMES)]
    assert complaints == []  # e.g. "Unknown key ..., ignoring" only warns


@needs_analyze
def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    text = (UNITS / NAMES[0]).read_text().replace("WatchdogSec=", "WatchdgSec=")
    result = verify([staged(tmp_path, NAMES[0], text)])
    assert "Unknown key" in result.stdout + result.stderr


def test_agent_unit_is_a_hardened_notify_service_that_still_reaches_the_gpu() -> None:
    unit = settings("torchenv-agent.service")
    assert unit["Type"] == ["notify"]
    assert unit["WatchdogSec"] and unit["StateDirectory"] == ["torchenv"]
    assert unit["CacheDirectory"] == ["torchenv"] and unit["RuntimeDirectory"] == ["torchenv"]
    for key, value in (("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                       ("NoNewPrivileges", "yes")):  # fmt: skip
        assert unit[key] == [value]
    assert "PrivateDevices" not in unit  # it would hide /dev/nvidia*
    allowed = {v.split()[0] for v in unit["DeviceAllow"]}
    assert {"/dev/nvidiactl", "/dev/nvidia-uvm", "char-nvidia*"} <= allowed
    assert any("/opt/torchenv" in v for v in unit["ReadWritePaths"])
    assert "MemoryDenyWriteExecute" not in unit


def test_bootstrap_unit_is_a_bounded_oneshot_skipped_once_done() -> None:
    unit = settings("torchenv-bootstrap.service")
    assert unit["Type"] == ["oneshot"]
    done = next(v for v in unit["ConditionPathExists"] if v.startswith("!"))
    exec_start = unit["ExecStart"][0]
    assert f"--mark-done {done[1:]}" in exec_start
    assert re.search(r"--wait-driver \d+", exec_start) and "--once" in exec_start
    assert "torchenv-agent.service" in unit["Before"][0]


@pytest.mark.parametrize("name", NAMES)
def test_exec_start_options_exist_in_the_cli(name: str) -> None:
    """The flags the units pass are flags `torchenv agent` has."""
    exec_start = settings(name)["ExecStart"][0].split()
    assert exec_start[0] == INSTALLED and exec_start[1] == "agent"
    help_text = subprocess.run(
        [sys.executable, "-m", "torchenv.agent", "agent", "--help"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    for flag in (a for a in exec_start if a.startswith("--")):
        assert flag in help_text, flag


def _cloud_init_files() -> dict[str, str]:
    """path -> content of each write_files entry in docs/cloud-init.yaml (literal blocks)."""
    lines = (UNITS.parent / "docs" / "cloud-init.yaml").read_text().splitlines()
    files: dict[str, str] = {}
    path = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.strip().startswith("- path: "):
            path = line.split(": ", 1)[1].strip()
        elif line.strip() == "content: |" and path is not None:
            block: list[str] = []
            index += 1
            while index < len(lines) and (lines[index].startswith("      ") or not lines[index]):
                block.append(lines[index][6:])
                index += 1
            files[path] = "\n".join(block).rstrip("\n") + "\n"
            continue
        index += 1
    return files


def test_cloud_init_carries_the_units_unchanged_and_a_valid_config(tmp_path: Path) -> None:
    from torchenv.agent.base.settings import read_toml
    from torchenv.agent.daemon.config import parse_config

    files = _cloud_init_files()
    for name in NAMES:
        assert files[f"/etc/systemd/system/{name}"] == (UNITS / name).read_text()
    (tmp_path / "config.toml").write_text(files["/etc/torchenv/config.toml"])
    config = parse_config(read_toml(tmp_path / "config.toml"), where="cloud-init", env={})
    assert config.socket_group == "torchenv"
    assert all(str(e.prefix).startswith("/opt/torchenv/") for e in config.environments)
    text = (UNITS.parent / "docs" / "cloud-init.yaml").read_text()
    assert "systemctl enable torchenv-bootstrap.service torchenv-agent.service" in text


def _documented_outputs(tmp: Path) -> list[Path]:
    """textfile and nfd-feature-file of the agent configuration that docs/docker.md shows."""
    from torchenv.agent.base.settings import read_toml
    from torchenv.agent.daemon.config import parse_config

    text = (UNITS.parent / "docs" / "docker.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "[agent]" in b)
    (tmp / "config.toml").write_text(block)
    config = parse_config(read_toml(tmp / "config.toml"), where="docs/docker.md", env={})
    paths = [config.textfile, config.nfd_feature_file]
    assert all(p is not None for p in paths)
    return [p for p in paths if p is not None]


@pytest.mark.parametrize("name", NAMES)
def test_hardened_units_let_the_agent_write_its_documented_outputs(
    tmp_path: Path, name: str
) -> None:
    """ProtectSystem=strict makes / read-only: each documented output's directory (and the
    managed prefixes) must be named in ReadWritePaths=, `-` so a missing one does not fail."""
    unit = settings(name)
    assert unit["ProtectSystem"] == ["strict"]
    writable = [Path(v) for line in unit["ReadWritePaths"] for v in line.split()]
    assert all(str(p).startswith("-/") for p in writable)
    allowed = [Path(str(p)[1:]) for p in writable]
    for output in _documented_outputs(tmp_path):
        assert any(output.parent == a or a in output.parents for a in allowed), output
    assert Path("/opt/torchenv") in allowed
