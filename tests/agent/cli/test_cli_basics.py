"""The CLI boundary: exit codes, one-paragraph errors, --json everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchenv.agent.base.errors import EXIT_UNEXPECTED, HostError, TorchenvError


def torchenv(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "TORCHENV_USER_CONFIG": os.devnull, **(env or {})}
    full_env.pop("TORCHENV_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-c", "from torchenv.agent.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        check=False,
        timeout=120,
    )


def test_error_paragraph_and_json_carry_message_and_hint() -> None:
    error = HostError("cannot replay /x", hint="pass a recorded directory", details={"p": "/x"})
    assert error.paragraph() == "cannot replay /x. pass a recorded directory."
    assert error.to_json()["details"] == {"p": "/x"}
    assert error.exit_code == 1
    assert TorchenvError("x").exit_code == 1


def test_version() -> None:
    result = torchenv("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("torchenv ")


def test_probe_json_is_a_host_report() -> None:
    result = torchenv("probe", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1
    assert data["system"]["os"] in ("linux", "macos", "windows")
    assert data["python"]["version"].startswith(f"{sys.version_info[0]}.{sys.version_info[1]}")


def test_probe_readable_summary_has_each_section() -> None:
    result = torchenv("probe")
    assert result.returncode == 0, result.stderr
    for label in ("host", "cpu", "python", "nvidia", "memory", "fingerprint"):
        assert any(line.startswith(label) for line in result.stdout.splitlines()), label


def test_missing_replay_dir_is_exit_1_with_a_hint_and_no_traceback(tmp_path: Path) -> None:
    result = torchenv("probe", "--replay", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "torchenv probe --record" in result.stderr
    result = torchenv("probe", "--json", "--replay", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"] == "host"


def test_record_into_non_empty_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = torchenv("probe", "--record", str(tmp_path))
    assert result.returncode == 1
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_bad_config_file_is_exit_1(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.torchenv]\nchannel = "weekly"\n')
    result = torchenv("config", cwd=tmp_path)
    assert result.returncode == 1
    assert "channel" in result.stderr and "Traceback" not in result.stderr


def test_config_json_shows_sources(tmp_path: Path) -> None:
    result = torchenv("config", "--json", cwd=tmp_path, env={"TORCHENV_CHANNEL": "nightly"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["channel"] == {"value": "nightly", "source": "environment (TORCHENV_CHANNEL)"}


def test_wrong_shaped_report_is_a_host_error(tmp_path: Path) -> None:
    bad = tmp_path / "report.json"
    bad.write_text(json.dumps({"schema_version": 1, "system": 5}))
    from torchenv.agent.host.source import read_host_report

    with pytest.raises(HostError, match="not a torchenv host report"):
        read_host_report(bad)


def test_unexpected_failure_is_exit_3_and_expected_is_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import typer

    from torchenv.agent.cli.guard import guarded

    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(typer.Exit) as info:
        guarded(False, broken)
    assert info.value.exit_code == EXIT_UNEXPECTED
    assert "TORCHENV_DEBUG=1" in capsys.readouterr().err

    def refused() -> None:
        raise HostError("no", hint="do this")

    with pytest.raises(typer.Exit) as info:
        guarded(True, refused)
    assert info.value.exit_code == 1
    assert json.loads(capsys.readouterr().out)["hint"] == "do this"


def test_override_variables_apply_on_top_of_a_replay(hosts_dir: Path) -> None:
    replay = hosts_dir / "container-no-nvml"
    plain = json.loads(torchenv("probe", "--json", "--replay", str(replay)).stdout)
    assert plain["overrides"] == {}
    result = torchenv(
        "probe", "--json", "--replay", str(replay), env={"TORCHENV_GPU_COMPUTE_CAPABILITY": "8.6"}
    )
    data = json.loads(result.stdout)
    assert data["overrides"] == {"TORCHENV_GPU_COMPUTE_CAPABILITY": "8.6"}
    assert [g["compute_capability"] for g in data["nvidia"]["gpus"]] == ["8.6"]
    assert plain["nvidia"]["gpus"][0]["compute_capability"] is None


def test_flags_describing_a_whole_target_do_not_probe_this_machine() -> None:
    from torchenv.agent.host.source import HostFlags, load_host

    report = load_host(
        flags=HostFlags(
            os="windows", arch="amd64", python="3.13", gpus=("8.9",), driver="580.95.05"
        )
    )
    assert report.system.os == "windows"
    assert report.system.memory_total_bytes is None  # nothing of this machine leaks in
    assert report.cpu.arch == "x86_64"
    assert report.python.minor == "3.13"
    assert "win_amd64" in report.python.platform_tags
    assert [g.compute_capability for g in report.nvidia.gpus] == ["8.9"]
    assert report.overrides["--os"] == "windows"
    # Only some facts given: this machine, changed.
    changed = load_host(flags=HostFlags(python="3.12"))
    assert changed.system.memory_total_bytes is not None
    assert changed.python.minor == "3.12"


def test_rocm_gfx_flags_name_amd_gpus_and_a_bad_one_is_a_host_error() -> None:
    from torchenv.agent.host.source import HostFlags, load_host

    flags = HostFlags(os="linux", arch="x86_64", python="3.12", rocm_gfx=("gfx90a", " GFX942 "))
    report = load_host(flags=flags)
    assert [(g.gfx, g.gfx_target_version) for g in report.amd.gpus] == [
        ("gfx90a", 90010),
        ("gfx942", 90402),
    ]
    assert {g.name for g in report.amd.gpus} == {"given on the command line"}
    with pytest.raises(HostError, match="not an AMD gfx target"):
        load_host(flags=HostFlags(os="linux", arch="x86_64", python="3.12", rocm_gfx=("gfx9",)))
