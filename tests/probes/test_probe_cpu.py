"""The CPU probe: /proc/cpuinfo on Linux, py-cpuinfo (cached per boot) elsewhere, libc."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.hosts import copy_host, empty_host, set_fact, set_read_error

from torchenv.probes import LiveIO, ReplayIO, cpu


def cpuinfo_of(host: str) -> str:
    return (HOSTS / host / "root" / "proc" / "cpuinfo").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("machine", "os_name", "arch"),
    [
        ("x86_64", "linux", "x86_64"),
        ("AMD64", "windows", "x86_64"),
        ("aarch64", "linux", "aarch64"),
        ("ARM64", "windows", "aarch64"),
        ("arm64", "macos", "arm64"),
        ("x86_64", "macos", "x86_64"),
        ("i686", "linux", "i686"),
        ("ppc64le", "linux", "ppc64le"),
        ("", "linux", "unknown"),
    ],
)
def test_normalise_arch(machine: str, os_name: str, arch: str) -> None:
    assert cpu.normalise_arch(machine, os_name) == arch


@pytest.mark.parametrize(
    ("host", "vendor", "model", "flags"),
    [
        (
            "h100-driver580",
            "AMD",
            "AMD EPYC 7R13 Processor",
            ("avx", "avx2", "f16c", "fma", "sse4_2"),
        ),
        (
            "amd-mi300x",
            "Intel",
            "Intel(R) Xeon(R) Platinum 8480C",
            ("amx", "avx", "avx2", "avx512_bf16", "avx512f", "f16c", "fma", "sse4_2"),
        ),
        (
            "a100-mig",
            "Intel",
            "Intel(R) Xeon(R) CPU @ 2.20GHz",
            ("avx", "avx2", "avx512f", "f16c", "fma", "sse4_2"),
        ),
        ("gh200-aarch64", "ARM", "ARM Neoverse-V2", ("asimd", "bf16", "i8mm", "sve", "sve2")),
        ("jetson-orin", "ARM", "ARM Cortex-A78AE", ("asimd",)),
    ],
)
def test_parse_recorded_cpuinfo(host: str, vendor: str, model: str, flags: tuple[str, ...]) -> None:
    assert cpu.parse_cpuinfo(cpuinfo_of(host)) == cpu.CpuIdentity(vendor, model, flags)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "processor\t: 0\nCPU implementer\t: 0xc0\nCPU part\t: 0xac3\nFeatures\t: fp asimd\n",
            cpu.CpuIdentity("Ampere", "Ampere AmpereOne", ("asimd",)),
        ),
        (
            "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xfff\n",
            cpu.CpuIdentity("ARM", "ARM part 0xfff", ()),
        ),
        (
            "processor\t: 0\nCPU implementer\t: 0x99\nCPU part\t: 0x001\n",
            cpu.CpuIdentity("implementer 0x99", "implementer 0x99 part 0x001", ()),
        ),
        (
            "processor\t: 0\nvendor_id\t: HygonGenuine\nflags\t\t: avx2 sse4_2\n",
            cpu.CpuIdentity("Hygon", None, ("avx2", "sse4_2")),
        ),
        (
            "\n\nprocessor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: X\nflags\t: avx\n\n"
            "processor\t: 1\nvendor_id\t: Other\nflags\t: avx512f\n",
            cpu.CpuIdentity("Intel", "X", ("avx",)),
        ),
        ("", cpu.CpuIdentity()),
        ("binary\x00junk without colons\n", cpu.CpuIdentity()),
    ],
)
def test_parse_cpuinfo_table(text: str, expected: cpu.CpuIdentity) -> None:
    assert cpu.parse_cpuinfo(text) == expected


@pytest.mark.parametrize(
    ("names", "flags"),
    [
        (["AVX1.0", "SSE4.2", "FMA", "AVX2"], ("avx", "avx2", "fma", "sse4_2")),
        (["avx512bf16", "amx_tile", "amx_int8"], ("amx", "avx512_bf16")),
        (["sve", "svebf16", "sve2", "sm4"], ("sve", "sve2")),
        ([], ()),
    ],
)
def test_select_flags(names: list[str], flags: tuple[str, ...]) -> None:
    assert cpu.select_flags(names) == flags


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            {"vendor": "GenuineIntel", "brand": "Intel(R) Core(TM) i9", "flags": ["avx2"]},
            cpu.CpuIdentity("Intel", "Intel(R) Core(TM) i9", ("avx2",)),
        ),
        (
            {"vendor": None, "brand": "Apple M3", "flags": []},
            cpu.CpuIdentity("Apple", "Apple M3", ()),
        ),
        ({"vendor": "", "brand": None, "flags": "avx"}, cpu.CpuIdentity()),
        ("not a mapping", cpu.CpuIdentity()),
    ],
)
def test_identity_from_cpuinfo_fact(value: object, expected: cpu.CpuIdentity) -> None:
    assert cpu.identity_from_cpuinfo_fact(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"kind": "glibc", "version": "2.35"}, ("glibc", "2.35")),
        ({"kind": "musl", "version": "1.2.5"}, ("musl", "1.2.5")),
        ({"kind": "musl", "version": ""}, ("musl", None)),
        (None, (None, None)),
    ],
)
def test_parse_libc(value: object, expected: tuple[str | None, str | None]) -> None:
    assert cpu.parse_libc(value) == expected


def elf_with_interpreter(interp: bytes, *, is64: bool = True, little: bool = True) -> bytes:
    """A minimal ELF executable header with one PT_INTERP program header."""
    order = "<" if little else ">"
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if little else 2, 1]) + b"\0" * 9
    if is64:
        ehsize, phentsize = 64, 56
        header = ident + struct.pack(
            order + "HHIQQQIHHHHHH", 2, 62, 1, 0, ehsize, 0, 0, ehsize, phentsize, 1, 0, 0, 0
        )
        data_off = ehsize + phentsize
        phdr = struct.pack(order + "IIQQQQQQ", 3, 4, data_off, 0, 0, len(interp), len(interp), 1)
    else:
        ehsize, phentsize = 52, 32
        header = ident + struct.pack(
            order + "HHIIIIIHHHHHH", 2, 3, 1, 0, ehsize, 0, 0, ehsize, phentsize, 1, 0, 0, 0
        )
        data_off = ehsize + phentsize
        phdr = struct.pack(order + "IIIIIIII", 3, data_off, 0, 0, len(interp), len(interp), 4, 1)
    return header + phdr + interp


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (elf_with_interpreter(b"/lib/ld-musl-x86_64.so.1\0"), "/lib/ld-musl-x86_64.so.1"),
        (elf_with_interpreter(b"/lib/ld-musl-armhf.so.1\0", is64=False), "/lib/ld-musl-armhf.so.1"),
        (elf_with_interpreter(b"/lib64/ld64.so.1\0", little=False), "/lib64/ld64.so.1"),
        (b"#!/bin/sh\n" + b"\0" * 80, None),
        (b"\x7fELF", None),
    ],
)
def test_elf_interpreter(data: bytes, expected: str | None) -> None:
    assert cpu.elf_interpreter(data) == expected


@pytest.mark.skipif(sys.platform != "linux", reason="reads this interpreter's ELF header")
def test_elf_interpreter_of_this_python() -> None:
    with open(sys.executable, "rb") as fh:
        loader = cpu.elf_interpreter(fh.read(65536))
    assert loader is not None and "/ld-" in loader


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        ("musl libc (x86_64)\nVersion 1.2.4\nDynamic Program Loader\nUsage: ...\n", "1.2.4"),
        ("musl libc (aarch64)\nVersion 1.2.5_git20240512\n", "1.2.5_git20240512"),
        ("ld.so: no program given\n", None),
        ("", None),
    ],
)
def test_parse_musl_version(stderr: str, expected: str | None) -> None:
    assert cpu.parse_musl_version(stderr) == expected


def test_unreadable_cpuinfo_is_a_reason(tmp_path: Path) -> None:
    host = copy_host("h100-driver580", tmp_path)
    set_read_error(host, "/proc/cpuinfo", "PermissionError: Permission denied")
    report = cpu.probe(ReplayIO(host), os_name="linux")
    assert report.model is None and report.flags == ()
    assert report.arch == "x86_64" and report.libc_version == "2.35"
    assert any("/proc/cpuinfo" in r and "PermissionError" in r for r in report.reasons)


def test_missing_facts_are_reasons(tmp_path: Path) -> None:
    report = cpu.probe(ReplayIO(empty_host(tmp_path)), os_name="linux")
    assert report.arch == "unknown"
    text = " ".join(report.reasons)
    for what in ("platform", "/proc/cpuinfo", "cpu_count", "libc"):
        assert what in text


def test_unidentified_libc_is_a_reason(tmp_path: Path) -> None:
    host = copy_host("cpu-cloud-vm", tmp_path)
    set_fact(host, "libc", None)
    report = cpu.probe(ReplayIO(host), os_name="linux")
    assert report.libc is None
    assert any("libc" in r for r in report.reasons)


def test_off_linux_reads_the_cpuinfo_fact_not_proc() -> None:
    report = cpu.probe(ReplayIO(HOSTS / "mac-intel"), os_name="macos")
    assert (report.arch, report.vendor, report.libc) == ("x86_64", "Intel", None)
    assert "avx2" in report.flags and report.logical_cores == 16


@pytest.mark.skipif(sys.platform != "linux", reason="this machine's /proc/cpuinfo and glibc")
def test_live_linux_probe_needs_no_py_cpuinfo() -> None:
    sys.modules.pop("cpuinfo", None)
    report = cpu.probe(LiveIO(), os_name="linux")
    assert "cpuinfo" not in sys.modules
    assert report.logical_cores is not None and report.logical_cores >= 1
    assert report.libc in ("glibc", "musl") and report.libc_version


def test_cache_for_this_boot_answers_without_py_cpuinfo(tmp_path: Path) -> None:
    cache = tmp_path / "cpuinfo.json"
    cached = {"vendor": "GenuineIntel", "brand": "Cached CPU", "flags": ["avx2"]}
    cache.write_text(json.dumps({"boot_id": "boot-1", "cpuinfo": cached}))
    sys.modules.pop("cpuinfo", None)
    assert cpu._live_py_cpuinfo(str(cache), "boot-1") == cached
    assert "cpuinfo" not in sys.modules


def test_cache_from_another_boot_is_replaced(tmp_path: Path) -> None:
    cache = tmp_path / "sub" / "cpuinfo.json"
    cache.parent.mkdir()
    cache.write_text(json.dumps({"boot_id": "old", "cpuinfo": {"brand": "stale"}}))
    fresh = cpu._live_py_cpuinfo(str(cache), "new")  # runs py-cpuinfo for real
    assert fresh["brand"] != "stale"
    stored = json.loads(cache.read_text())
    assert stored == {"boot_id": "new", "cpuinfo": fresh}


def test_no_cache_path_writes_nothing(tmp_path: Path) -> None:
    assert cpu._read_cache(None, "boot") is None
    cpu._write_cache(None, "boot", {"brand": "x"})
    cpu._write_cache(str(tmp_path / "c.json"), None, {"brand": "x"})
    assert list(tmp_path.iterdir()) == []
