"""The system probe: OS, os-release, container, WSL, cloud, memory, disk, boot id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.hosts import (
    copy_host,
    empty_host,
    remove_root,
    set_env,
    set_fact,
    set_read_error,
    write_root,
)

from torchenv.probes import LiveIO, ReplayIO, system
from torchenv.probes.hostio import HostIO


def read_host_file(host: str, path: str) -> str:
    return (HOSTS / host / "root" / path.lstrip("/")).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("host", "pretty"),
    [
        ("h100-driver580", "Ubuntu 22.04.5 LTS"),
        ("gh200-aarch64", "Ubuntu 24.04.2 LTS"),
        ("cpu-cloud-vm", "Debian GNU/Linux 12 (bookworm)"),
    ],
)
def test_os_release_of_recorded_hosts(host: str, pretty: str) -> None:
    fields = system.parse_os_release(read_host_file(host, "/etc/os-release"))
    assert system.os_release_name(fields) == pretty


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.3\n', "Alpine Linux 3.20.3"),
        (
            "# comment\nPRETTY_NAME='Fedora Linux 40 (Container Image)'\n",
            "Fedora Linux 40 (Container Image)",
        ),
        ('PRETTY_NAME="Say \\"hi\\""\n', 'Say "hi"'),
        ("garbage without equals\n", None),
        ("", None),
    ],
)
def test_os_release_table(text: str, expected: str | None) -> None:
    assert system.os_release_name(system.parse_os_release(text)) == expected


@pytest.mark.parametrize(
    ("proc_version", "distro", "expected", "doubt"),
    [
        (
            "Linux version 5.15.167.4-microsoft-standard-WSL2 (root@f9c826d3017f) (gcc (GCC) "
            "11.2.0) #1 SMP Tue Nov 5 00:21:55 UTC 2024",
            None,
            2,
            False,
        ),
        (
            "Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com) (gcc version 5.4.0 "
            "(GCC) ) #1237-Microsoft Sat Sep 11 14:32:00 PST 2021",
            "Ubuntu",
            1,
            False,
        ),
        (
            "Linux version 6.8.0-60-generic (buildd@lcy02-amd64-098) #63-Ubuntu SMP",
            None,
            None,
            False,
        ),
        (
            "Linux version 6.8.0-60-generic (buildd@lcy02-amd64-098) #63-Ubuntu SMP",
            "Ubuntu",
            2,
            True,
        ),
        (None, None, None, False),
    ],
)
def test_wsl_version(
    proc_version: str | None, distro: str | None, expected: int | None, doubt: bool
) -> None:
    version, reason = system.wsl_version(proc_version, distro)
    assert version == expected
    assert (reason is not None) is doubt


@pytest.mark.parametrize(
    ("cgroup", "expected"),
    [
        ("0::/\n", None),
        ("0::/init.scope\n", None),
        (
            "12:memory:/docker/3c4f1e0d2b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e\n"
            "11:cpuset:/docker/3c4f1e0d2b9a\n",
            "docker",
        ),
        ("0::/system.slice/docker-3c4f1e0d2b9a.scope\n", "docker"),
        (
            "11:cpu,cpuacct:/kubepods/burstable/pod6f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/3c4f1e\n",
            "kubernetes",
        ),
        ("0::/machine.slice/libpod-3c4f1e0d2b9a.scope/container\n", "podman"),
        ("10:devices:/lxc/web01\n", "lxc"),
    ],
)
def test_container_from_cgroup(cgroup: str, expected: str | None) -> None:
    assert system.container_from_cgroup(cgroup) == expected


@pytest.mark.parametrize(
    ("dmi", "expected"),
    [
        ({"sys_vendor": "Amazon EC2\n", "product_name": "p5.48xlarge\n"}, "aws"),
        ({"sys_vendor": "Xen\n", "product_version": "4.11.amazon\n"}, "aws"),
        ({"sys_vendor": "Google\n", "product_name": "Google Compute Engine\n"}, "gcp"),
        (
            {
                "sys_vendor": "Microsoft Corporation\n",
                "product_name": "Virtual Machine\n",
                "chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77\n",
            },
            "azure",
        ),
        (
            {
                "sys_vendor": "Microsoft Corporation\n",
                "product_name": "Virtual Machine\n",
                "chassis_asset_tag": "0000-0000-0000-0000\n",
            },
            None,
        ),  # Hyper-V on a desk
        ({"sys_vendor": "QEMU\n", "chassis_asset_tag": "OracleCloud.com\n"}, "oracle"),
        ({"sys_vendor": "Alibaba Cloud\n", "product_name": "Alibaba Cloud ECS\n"}, "alibaba"),
        ({"sys_vendor": "OpenStack Foundation\n", "product_name": "OpenStack Nova\n"}, "openstack"),
        ({"sys_vendor": "Dell Inc.\n", "product_name": "PowerEdge R750xa\n"}, None),
    ],
)
def test_cloud_from_dmi(dmi: dict[str, str], expected: str | None) -> None:
    assert system.cloud_from_dmi(dmi) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Linux", "linux"),
        ("Darwin", "macos"),
        ("Windows", "windows"),
        ("FreeBSD", "freebsd"),
        ("", "unknown"),
    ],
)
def test_os_name(name: str, expected: str) -> None:
    assert system.os_name(name) == expected


def test_nearest_existing_climbs_to_a_parent(tmp_path: Path) -> None:
    assert system.nearest_existing(str(tmp_path / "env" / "not" / "yet")) == str(tmp_path)
    assert system.nearest_existing(str(tmp_path)) == str(tmp_path)


def probe_dir(host: Path, disk_path: str | None = None) -> system.SystemReport:
    io: HostIO = ReplayIO(host)
    return system.probe(io, disk_path=disk_path)


def test_podman_by_containerenv(tmp_path: Path) -> None:
    host = copy_host("cpu-cloud-vm", tmp_path)
    write_root(host, "/run/.containerenv", 'engine="podman-4.9.3"\n')
    assert probe_dir(host).container == "podman"


def test_kubernetes_by_environment_wins_over_dockerenv(tmp_path: Path) -> None:
    host = copy_host("container-no-nvml", tmp_path)
    set_env(host, "KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert probe_dir(host).container == "kubernetes"


def test_container_env_variable(tmp_path: Path) -> None:
    host = copy_host("cpu-cloud-vm", tmp_path)
    set_env(host, "container", "systemd-nspawn")
    assert probe_dir(host).container == "systemd-nspawn"


def test_cgroup_v1_docker_without_dockerenv(tmp_path: Path) -> None:
    host = copy_host("container-no-nvml", tmp_path)
    remove_root(host, "/.dockerenv")
    write_root(host, "/proc/1/cgroup", "12:pids:/docker/3c4f1e0d2b9a\n")
    assert probe_dir(host).container == "docker"


def test_bare_host_is_no_container() -> None:
    assert probe_dir(HOSTS / "h100-driver580").container is None


def test_unreadable_dmi_becomes_a_reason(tmp_path: Path) -> None:
    host = copy_host("h100-driver580", tmp_path)
    set_read_error(host, "/sys/class/dmi/id/sys_vendor", "PermissionError: Permission denied")
    report = probe_dir(host)
    assert report.cloud == "aws"  # bios_vendor still says so
    assert any("sys_vendor" in r and "PermissionError" in r for r in report.reasons)


def test_memory_and_disk_facts(tmp_path: Path) -> None:
    report = probe_dir(HOSTS / "h100-driver580", disk_path="/home/ubuntu/work/.venv")
    assert report.memory_total_bytes == 2_010_000_000_000
    assert report.memory_available_bytes == 1_950_000_000_000
    assert report.disk_path == "/home/ubuntu/work"
    assert report.disk_free_bytes == 27 * 10**12
    assert report.boot_id == "3f1c2d7e-9a41-4f0b-8d2e-6c5a7b9e0f11"


def test_missing_facts_become_reasons(tmp_path: Path) -> None:
    host = empty_host(tmp_path)
    report = probe_dir(host, disk_path="/srv")
    assert report.os == "unknown"
    text = " ".join(report.reasons)
    for fact in ("platform", "memory", "disk"):
        assert f"{fact}: " in text
    assert report.memory_total_bytes is None and report.disk_free_bytes is None


def test_a_fact_of_the_wrong_shape_is_not_a_crash(tmp_path: Path) -> None:
    host = copy_host("cpu-cloud-vm", tmp_path)
    set_fact(host, "memory", "lots")
    set_fact(host, "platform", ["Linux"])
    report = probe_dir(host)
    assert report.memory_total_bytes is None
    assert report.os == "unknown"


def test_macos_release_and_boot_time() -> None:
    report = probe_dir(HOSTS / "mac-m3")
    assert (report.os, report.os_release, report.kernel) == ("macos", "14.5", "23.5.0")
    assert report.boot_id == "boot-1718000000"
    assert report.container is None and report.cloud is None


def test_windows_release_from_platform(tmp_path: Path) -> None:
    host = empty_host(tmp_path)
    set_fact(
        host,
        "platform",
        {"system": "Windows", "machine": "AMD64", "release": "11", "version": "10.0.22631"},
    )
    set_fact(host, "memory", {"total": 1, "available": 1})
    set_fact(host, "boot_time", 1700000000.5)
    report = probe_dir(host)
    assert (report.os, report.os_release, report.reasons) == ("windows", "10.0.22631", ())


def test_live_probe_of_this_machine(tmp_path: Path) -> None:
    report = system.probe(LiveIO(), disk_path=str(tmp_path / "not-yet"))
    assert report.os in ("linux", "macos", "windows")
    assert report.disk_path == str(tmp_path)
    assert report.disk_free_bytes is not None and report.disk_free_bytes > 0
    assert report.memory_total_bytes is not None
    assert report.memory_total_bytes >= (report.memory_available_bytes or 0)


@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux paths under a fake root")
def test_live_probe_of_a_fake_tree(tmp_path: Path) -> None:
    """LiveIO with a root: the files come from the tree, the facts from this machine."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text('PRETTY_NAME="Tree OS 1"\n')
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "version").write_text(
        "Linux version 5.15.167.4-microsoft-standard-WSL2 (root@x) #1 SMP\n"
    )
    report = system.probe(LiveIO(root=tmp_path, env={}), disk_path=None)
    assert (report.os_release, report.wsl, report.container) == ("Tree OS 1", 2, None)


MEMINFO = """MemTotal:       24576000 kB
MemFree:         1000000 kB
MemAvailable:   20480000 kB
Buffers:          100000 kB
"""


def test_meminfo_gives_total_and_available_bytes() -> None:
    assert system.meminfo_memory(MEMINFO) == {"total": 24576000 * 1024,
                                              "available": 20480000 * 1024}  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "",
        "MemTotal: 100 kB\nMemFree: 50 kB\n",
        "MemTotal: lots\nMemAvailable: 1 kB\n",
        "garbage\n\x00\n",
    ],
)
def test_meminfo_without_both_figures_gives_none(text: str) -> None:
    assert system.meminfo_memory(text) is None


@pytest.mark.skipif(sys.platform != "linux", reason="/proc/meminfo is Linux's")
def test_live_memory_and_disk_agree_with_psutil_without_importing_it(tmp_path: Path) -> None:
    code = (
        "import json, sys; from torchenv.probes import LiveIO, system; "
        f"r = system.probe(LiveIO(), disk_path={str(tmp_path)!r}); "
        "print(json.dumps([r.memory_total_bytes, r.disk_free_bytes, 'psutil' in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    total, free, imported = json.loads(done.stdout)
    import psutil  # type: ignore[import-untyped,unused-ignore]

    assert imported is False
    assert total == psutil.virtual_memory().total
    assert abs(free - psutil.disk_usage(str(tmp_path)).free) < 256 << 20  # others write too
