"""Every recorded host replays to the facts that decide which build fits it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from helpers import HOSTS

from torchenv.probes import ReplayIO, probe_host
from torchenv.probes.report import HostReport


@dataclass(frozen=True)
class Expect:
    os: str
    arch: str
    libc: tuple[str | None, str | None]
    python: str
    venv: bool
    container: str | None = None
    wsl: int | None = None
    cloud: str | None = None
    flags: frozenset[str] = frozenset()
    no_flags: frozenset[str] = frozenset()
    gfx: tuple[str, ...] = ()
    rocm: str | None = None
    kfd: bool = False
    intel: tuple[str, ...] = ()
    macos: str | None = None
    apple_silicon: bool | None = None
    rosetta: bool | None = None
    mps: bool | None = None
    first_platform_tag: str | None = None


X86_BASE = frozenset({"avx", "avx2", "fma", "f16c", "sse4_2"})
EXPECTED = {
    "h100-driver580": Expect(
        "linux",
        "x86_64",
        ("glibc", "2.35"),
        "3.10",
        True,
        cloud="aws",
        flags=X86_BASE,
        no_flags=frozenset({"avx512f"}),
        first_platform_tag="linux_x86_64",
    ),
    "gtx1080ti-driver580": Expect(
        "linux",
        "x86_64",
        ("glibc", "2.39"),
        "3.12",
        False,
        flags=X86_BASE,
        no_flags=frozenset({"avx512f", "amx"}),
    ),
    "rtx5090-driver570": Expect(
        "linux",
        "x86_64",
        ("glibc", "2.39"),
        "3.12",
        True,
        flags=X86_BASE | {"avx512f", "avx512_bf16"},
        no_flags=frozenset({"amx"}),
    ),
    "a100-mig": Expect(
        "linux",
        "x86_64",
        ("glibc", "2.35"),
        "3.10",
        False,
        cloud="gcp",
        flags=X86_BASE | {"avx512f"},
        no_flags=frozenset({"avx512_bf16"}),
    ),
    "gh200-aarch64": Expect(
        "linux",
        "aarch64",
        ("glibc", "2.39"),
        "3.12",
        True,
        flags=frozenset({"asimd", "sve", "sve2", "bf16", "i8mm"}),
        first_platform_tag="linux_aarch64",
    ),
    "jetson-orin": Expect(
        "linux",
        "aarch64",
        ("glibc", "2.35"),
        "3.10",
        False,
        flags=frozenset({"asimd"}),
        no_flags=frozenset({"sve", "bf16"}),
    ),
    "mac-m3": Expect(
        "macos",
        "arm64",
        (None, None),
        "3.12",
        True,
        macos="14.5",
        apple_silicon=True,
        rosetta=False,
        mps=True,
        first_platform_tag="macosx_14_0_arm64",
    ),
    "mac-intel": Expect(
        "macos",
        "x86_64",
        (None, None),
        "3.11",
        False,
        flags=X86_BASE,
        macos="13.6.3",
        apple_silicon=False,
        rosetta=False,
        mps=False,
        first_platform_tag="macosx_13_0_x86_64",
    ),
    "amd-mi300x": Expect(
        "linux",
        "x86_64",
        ("glibc", "2.35"),
        "3.10",
        True,
        cloud="azure",
        flags=X86_BASE | {"avx512f", "avx512_bf16", "amx"},
        gfx=("gfx942",) * 8,
        rocm="6.4.1",
        kfd=True,
    ),
    "amd-rx7900": Expect(
        "linux",
        "x86_64",
        ("glibc", "2.35"),
        "3.10",
        True,
        gfx=("gfx1100",),
        rocm="6.2.4",
        kfd=True,
    ),
    "intel-arc": Expect(
        "linux",
        "x86_64",
        ("glibc", "2.39"),
        "3.12",
        True,
        intel=("0x56a0",),
        no_flags=frozenset({"avx512f"}),
    ),
    "cpu-cloud-vm": Expect("linux", "x86_64", ("glibc", "2.36"), "3.11", True, cloud="gcp"),
    "container-no-nvml": Expect(
        "linux",
        "x86_64",
        ("glibc", "2.36"),
        "3.12",
        False,
        container="docker",
    ),
    "firstboot-not-loaded": Expect(
        "linux", "x86_64", ("glibc", "2.35"), "3.10", False, cloud="aws"
    ),
    "wsl2-rtx4090": Expect("linux", "x86_64", ("glibc", "2.35"), "3.10", True, wsl=2),
}


def replay(name: str) -> HostReport:
    return probe_host(ReplayIO(HOSTS / name))


def test_every_recorded_host_has_expectations() -> None:
    recorded = {p.name for p in HOSTS.iterdir() if p.is_dir()} - {"this-dev-box"}
    assert recorded == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_replayed_host(name: str) -> None:
    want = EXPECTED[name]
    report = replay(name)
    assert (report.system.os, report.cpu.arch) == (want.os, want.arch)
    assert (report.cpu.libc, report.cpu.libc_version) == want.libc
    assert report.python.minor == want.python
    assert report.python.interpreter_tag == "cp" + want.python.replace(".", "")
    assert report.python.is_virtualenv is want.venv
    assert (report.system.container, report.system.wsl, report.system.cloud) == (
        want.container,
        want.wsl,
        want.cloud,
    )
    assert want.flags <= set(report.cpu.flags)
    assert not want.no_flags & set(report.cpu.flags)
    assert tuple(g.gfx for g in report.amd.gpus) == want.gfx
    assert (report.amd.rocm_version, report.amd.kfd_present) == (want.rocm, want.kfd)
    assert tuple(g.device_id for g in report.intel.gpus) == want.intel
    apple = report.apple
    assert apple.is_macos is (want.os == "macos")
    assert (apple.macos_version, apple.apple_silicon, apple.rosetta, apple.mps_capable) == (
        want.macos,
        want.apple_silicon,
        want.rosetta,
        want.mps,
    )
    if want.first_platform_tag:
        assert report.python.platform_tags[0] == want.first_platform_tag


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_base_sections_have_no_reasons(name: str) -> None:
    """The hand-made hosts hold every base part the probes read: nothing is reported broken."""
    report = replay(name)
    for section in (
        report.system,
        report.cpu,
        report.python,
        report.amd,
        report.intel,
        report.apple,
    ):
        assert section.reasons == (), (type(section).__name__, section.reasons)


@pytest.mark.parametrize("name", [n for n, e in EXPECTED.items() if e.os == "linux"])
def test_linux_wheel_tags_reach_down_to_manylinux2014(name: str) -> None:
    report = replay(name)
    arch, glibc = report.cpu.arch, report.cpu.libc_version
    assert glibc is not None
    tags = report.python.platform_tags
    assert f"manylinux_2_{glibc.split('.')[1]}_{arch}" in tags
    assert f"manylinux2014_{arch}" in tags
    assert f"manylinux_2_{int(glibc.split('.')[1]) + 1}_{arch}" not in tags


def test_the_recorded_dev_box_replays() -> None:
    report = replay("this-dev-box")
    assert report.system.os == "linux"
    assert report.cpu.arch == "x86_64"
    assert report.cpu.libc == "glibc"
    assert report.python.interpreter_tag.startswith("cp3")
    assert report.python.platform_tags[0] == "linux_x86_64"
    assert report.amd.gpus == () and report.intel.gpus == ()
