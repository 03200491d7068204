"""AMD (KFD topology, ROCm), Intel (PCI) and Apple (sysctl, macOS) probes."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.hosts import (
    copy_host,
    remove_root,
    set_command,
    set_env,
    set_fact,
    set_read_error,
    write_root,
)
from hypothesis import given
from hypothesis import strategies as st

from torchenv.probes import ReplayIO, amd, apple, intel, probe_host
from torchenv.probes.hostio import CommandResult

TOPO = amd.TOPOLOGY
MI300X_GPU = f"{TOPO}/2/properties"

# --- AMD ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "name"),
    [
        (90402, "gfx942"),
        (90010, "gfx90a"),
        (110501, "gfx1151"),
        (110000, "gfx1100"),
        (120001, "gfx1201"),
        (90000, "gfx900"),
        (100300, "gfx1030"),
        (90500, "gfx950"),
    ],
)
def test_gfx_name(version: int, name: str) -> None:
    assert amd.gfx_name(version) == name
    gpu = amd.parse_gfx(name)
    assert gpu is not None and gpu.gfx_target_version == version


@given(st.integers(6, 12), st.integers(0, 15), st.integers(0, 15))
def test_gfx_name_and_parse_are_inverse(major: int, minor: int, step: int) -> None:
    version = major * 10000 + minor * 100 + step
    parsed = amd.parse_gfx(amd.gfx_name(version))
    assert parsed is not None and parsed.gfx_target_version == version


@pytest.mark.parametrize(
    ("text", "version"),
    [("6.2.4-120\n", "6.2.4"), ("6.4.1-83", "6.4.1"), ("7.0\n", "7.0"), ("unknown\n", None)],
)
def test_parse_rocm_version(text: str, version: str | None) -> None:
    assert amd.parse_rocm_version(text) == version


def test_parse_recorded_properties() -> None:
    text = (HOSTS / "amd-mi300x" / "root" / MI300X_GPU.lstrip("/")).read_text()
    props = amd.parse_properties(text)
    gpu = amd.gpu_from_properties(2, props)
    assert gpu == amd.AmdGpu(
        node=2,
        gfx="gfx942",
        gfx_target_version=90402,
        device_id="0x74a1",
        name="AMD Instinct MI300X",
    )
    cpu_node = amd.parse_properties(
        (HOSTS / "amd-mi300x" / "root" / f"{TOPO}/0/properties".lstrip("/")).read_text()
    )
    assert amd.gpu_from_properties(0, cpu_node) is None


@pytest.mark.parametrize("text", ["gfx_target_version ninety\n", "gfx_target_version\n", "a b c\n"])
def test_corrupt_properties_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        amd.parse_properties(text)


def test_corrupt_properties_file_is_a_reason_and_other_nodes_still_count(tmp_path: Path) -> None:
    host = copy_host("amd-mi300x", tmp_path)
    write_root(host, MI300X_GPU, "gfx_target_version \x00\x00garbage\n")
    report = amd.probe(ReplayIO(host), os_name="linux")
    assert len(report.gpus) == 7 and report.source == "kfd"
    assert any(MI300X_GPU in r and "not a KFD properties file" in r for r in report.reasons)


def test_unreadable_properties_file_is_a_reason(tmp_path: Path) -> None:
    host = copy_host("amd-rx7900", tmp_path)
    path = f"{TOPO}/1/properties"
    set_read_error(host, path, "PermissionError: Permission denied")
    report = amd.probe(ReplayIO(host), os_name="linux")
    assert report.gpus == () and report.rocm_version == "6.2.4"
    assert any(path in r and "PermissionError" in r for r in report.reasons)


def test_topology_without_dev_kfd_says_how_to_pass_it(tmp_path: Path) -> None:
    host = copy_host("amd-rx7900", tmp_path)
    remove_root(host, "/dev/kfd")
    report = amd.probe(ReplayIO(host), os_name="linux")
    assert not report.kfd_present and [g.gfx for g in report.gpus] == ["gfx1100"]
    assert any("--device=/dev/kfd" in r for r in report.reasons)


def test_rocm_path_is_preferred(tmp_path: Path) -> None:
    host = copy_host("amd-rx7900", tmp_path)
    set_env(host, "ROCM_PATH", "/opt/rocm-6.3.1/")
    write_root(host, "/opt/rocm-6.3.1/.info/version", "6.3.1-48\n")
    assert amd.probe(ReplayIO(host), os_name="linux").rocm_version == "6.3.1"


def test_override_replaces_the_gpus_and_shows_in_the_report(tmp_path: Path) -> None:
    host = copy_host("amd-rx7900", tmp_path)
    set_env(host, "TORCHENV_ROCM_GFX", "gfx942, gfx90a,notgfx")
    report = probe_host(ReplayIO(host))
    assert [g.gfx for g in report.amd.gpus] == ["gfx942", "gfx90a"]
    assert report.amd.source == "override"
    assert report.overrides["TORCHENV_ROCM_GFX"] == "gfx942, gfx90a,notgfx"
    assert any("'notgfx'" in r for r in report.amd.reasons)
    assert report.amd.rocm_version == "6.2.4"


def test_override_describes_amd_gpus_off_linux(tmp_path: Path) -> None:
    host = copy_host("mac-m3", tmp_path)
    set_env(host, "TORCHENV_ROCM_GFX", "gfx1100")
    report = amd.probe(ReplayIO(host), os_name="macos")
    assert [g.gfx for g in report.gpus] == ["gfx1100"] and not report.kfd_present


def test_no_amd_anywhere() -> None:
    assert amd.probe(ReplayIO(HOSTS / "h100-driver580"), os_name="linux") == amd.AmdReport()
    assert amd.probe(ReplayIO(HOSTS / "mac-m3"), os_name="macos") == amd.AmdReport()


# --- Intel -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("0x030000\n", 0x030000), ("0x8086", 0x8086), ("", None), (None, None), ("zz", None)],
)
def test_parse_hex(text: str | None, value: int | None) -> None:
    assert intel.parse_hex(text) == value


@pytest.mark.parametrize(
    ("pci_class", "display"),
    [(0x030000, True), (0x038000, True), (0x030200, True), (0x040300, False), (0x060400, False)],
)
def test_is_display(pci_class: int, display: bool) -> None:
    assert intel.is_display(pci_class) is display


def test_uevent_driver() -> None:
    text = (HOSTS / "intel-arc/root/sys/bus/pci/devices/0000:03:00.0/uevent").read_text()
    assert intel.parse_uevent_driver(text) == "i915"
    assert intel.parse_uevent_driver("PCI_CLASS=30000\n") is None


def test_arc_a770_on_the_bus() -> None:
    report = intel.probe(ReplayIO(HOSTS / "intel-arc"), os_name="linux")
    assert report.gpus == (intel.IntelGpu("0000:03:00.0", "0x56a0", "Intel Arc A770", "i915"),)
    assert report.reasons == ()


def test_intel_audio_and_bridges_are_not_gpus(tmp_path: Path) -> None:
    host = copy_host("intel-arc", tmp_path)
    remove_root(host, "/sys/bus/pci/devices/0000:03:00.0")
    assert intel.probe(ReplayIO(host), os_name="linux").gpus == ()


def test_unreadable_pci_class_is_a_reason(tmp_path: Path) -> None:
    host = copy_host("intel-arc", tmp_path)
    path = "/sys/bus/pci/devices/0000:03:00.0/class"
    set_read_error(host, path, "OSError: Input/output error")
    report = intel.probe(ReplayIO(host), os_name="linux")
    assert report.gpus == () and any(path in r for r in report.reasons)


def test_unlistable_pci_bus_is_a_reason(tmp_path: Path) -> None:
    host = copy_host("intel-arc", tmp_path)
    set_read_error(host, intel.PCI_DEVICES, "PermissionError: Permission denied")
    report = intel.probe(ReplayIO(host), os_name="linux")
    assert report.gpus == () and "PermissionError" in report.reasons[0]


def test_a_new_intel_gpu_is_reported_without_a_name(tmp_path: Path) -> None:
    host = copy_host("intel-arc", tmp_path)
    write_root(host, "/sys/bus/pci/devices/0000:03:00.0/device", "0xffff\n")
    (gpu,) = intel.probe(ReplayIO(host), os_name="linux").gpus
    assert (gpu.device_id, gpu.name) == ("0xffff", None)


# --- Apple -------------------------------------------------------------------------


def sysctl(key: str, **kwargs: object) -> CommandResult:
    return CommandResult(("sysctl", "-n", key), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("result", "value", "has_reason"),
    [
        (sysctl("hw.optional.arm64", returncode=0, stdout="1\n"), True, False),
        (sysctl("hw.optional.arm64", returncode=0, stdout="0\n"), False, False),
        (
            sysctl(
                "hw.optional.arm64",
                returncode=1,
                stderr="sysctl: unknown oid 'hw.optional.arm64'\n",
            ),
            False,
            False,
        ),
        (sysctl("sysctl.proc_translated", error="timeout"), None, True),
        (sysctl("sysctl.proc_translated", error="not-found"), None, True),
        (sysctl("sysctl.proc_translated", returncode=0, stdout="yes\n"), None, True),
        (sysctl("sysctl.proc_translated", returncode=2, stderr="boom"), None, True),
    ],
)
def test_parse_sysctl_flag(result: CommandResult, value: bool | None, has_reason: bool) -> None:
    got, reason = apple.parse_sysctl_flag(result)
    assert got is value and (reason is not None) is has_reason


@pytest.mark.parametrize(
    ("text", "version"), [("14.5", (14, 5)), ("13.6.3", (13, 6, 3)), ("", None), ("x", None)]
)
def test_parse_version(text: str, version: tuple[int, ...] | None) -> None:
    assert apple.parse_version(text) == version


def probe_apple(host: Path) -> apple.AppleReport:
    return apple.probe(ReplayIO(host), os_name="macos", command_timeout=2.0)


def test_rosetta(tmp_path: Path) -> None:
    host = copy_host("mac-m3", tmp_path)
    set_command(host, ["sysctl", "-n", "sysctl.proc_translated"], stdout="1\n")
    set_fact(
        host,
        "platform",
        {
            "system": "Darwin",
            "machine": "x86_64",
            "release": "23.5.0",
            "version": "Darwin Kernel Version 23.5.0",
        },
    )
    report = probe_host(ReplayIO(host))
    assert report.apple.rosetta is True and report.apple.apple_silicon is True
    assert report.cpu.arch == "x86_64"
    assert report.python.platform_tags[0] == "macosx_14_0_x86_64"


def test_macos_too_old_for_mps(tmp_path: Path) -> None:
    host = copy_host("mac-m3", tmp_path)
    set_fact(host, "mac_ver", {"release": "12.2.1", "machine": "arm64"})
    report = probe_apple(host)
    assert report.apple_silicon is True and report.mps_capable is False


def test_sysctl_timing_out_is_a_reason_not_a_guess(tmp_path: Path) -> None:
    host = copy_host("mac-m3", tmp_path)
    set_command(host, ["sysctl", "-n", "hw.optional.arm64"], returncode=None, error="timeout")
    report = probe_apple(host)
    assert report.apple_silicon is None and report.mps_capable is None
    assert any("hw.optional.arm64" in r and "timeout" in r for r in report.reasons)
    assert report.macos_version == "14.5"


def test_missing_commands_and_facts_are_reasons(tmp_path: Path) -> None:
    host = copy_host("mac-m3", tmp_path)
    (host / "commands.json").unlink()
    set_fact(host, "mac_ver", {"__unavailable__": "no plist"})
    report = probe_apple(host)
    assert (report.apple_silicon, report.rosetta, report.chip) == (None, None, None)
    assert report.macos_version is None
    assert len(report.reasons) == 4


def test_apple_section_is_empty_off_macos() -> None:
    assert (
        apple.probe(ReplayIO(HOSTS / "h100-driver580"), os_name="linux", command_timeout=1.0)
        == apple.AppleReport()
    )
