"""The CPU: architecture, vendor, model, the instruction-set flags that matter, cores and libc."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torchenv.probes.hostio import FactUnavailable, HostIO, read_optional
from torchenv.probes.report import CpuReport
from torchenv.probes.system import uname

ARCH_ALIASES = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "aarch64_be": "aarch64_be",
    "i386": "i686",
    "i486": "i686",
    "i586": "i686",
    "i686": "i686",
    "x86": "i686",
}

# Flag spellings (Linux /proc/cpuinfo, py-cpuinfo, macOS sysctl) -> the name reported.
FLAG_NAMES = {
    "avx": "avx",
    "avx1.0": "avx",
    "avx2": "avx2",
    "avx512f": "avx512f",
    "avx512_bf16": "avx512_bf16",
    "avx512bf16": "avx512_bf16",
    "amx_tile": "amx",
    "amx": "amx",
    "fma": "fma",
    "f16c": "f16c",
    "sse4_2": "sse4_2",
    "sse4.2": "sse4_2",
    "asimd": "asimd",
    "sve": "sve",
    "sve2": "sve2",
    "bf16": "bf16",
    "i8mm": "i8mm",
}

X86_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}

# Arm "CPU implementer" codes and (implementer, "CPU part") names, from the Arm and vendor TRMs.
ARM_IMPLEMENTERS = {
    0x41: "ARM",
    0x42: "Broadcom",
    0x43: "Cavium",
    0x48: "HiSilicon",
    0x4E: "NVIDIA",
    0x50: "APM",
    0x51: "Qualcomm",
    0x61: "Apple",
    0x6D: "Microsoft",
    0xC0: "Ampere",
}
ARM_PARTS = {
    (0x41, 0xD03): "Cortex-A53",
    (0x41, 0xD07): "Cortex-A57",
    (0x41, 0xD08): "Cortex-A72",
    (0x41, 0xD0B): "Cortex-A76",
    (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD40): "Neoverse-V1",
    (0x41, 0xD41): "Cortex-A78",
    (0x41, 0xD42): "Cortex-A78AE",
    (0x41, 0xD49): "Neoverse-N2",
    (0x41, 0xD4F): "Neoverse-V2",
    (0x41, 0xD84): "Neoverse-V3",
    (0x41, 0xD8E): "Neoverse-N3",
    (0x48, 0xD01): "Kunpeng-920",
    (0x4E, 0x004): "Carmel",
    (0xC0, 0xAC3): "AmpereOne",
}


@dataclass(frozen=True)
class CpuIdentity:
    """What a CPU says about itself (from /proc/cpuinfo or py-cpuinfo)."""

    vendor: str | None = None
    model: str | None = None
    flags: tuple[str, ...] = ()


def normalise_arch(machine: str, os_name: str) -> str:
    """x86_64/AMD64 -> x86_64; aarch64/arm64 -> aarch64, but arm64 on macOS."""
    low = machine.strip().lower()
    arch = ARCH_ALIASES.get(low, low or "unknown")
    if arch == "aarch64" and os_name == "macos":
        return "arm64"
    return arch


def select_flags(names: Sequence[str]) -> tuple[str, ...]:
    """The flags that matter for builds, normalised and sorted."""
    return tuple(sorted({FLAG_NAMES[n] for n in (x.lower() for x in names) if n in FLAG_NAMES}))


def _first_block(text: str) -> dict[str, str]:
    """The "key : value" lines of the first processor block of /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _hex(value: str | None) -> int | None:
    try:
        return int(value, 16) if value else None
    except ValueError:
        return None


def parse_cpuinfo(text: str) -> CpuIdentity:
    """Linux /proc/cpuinfo: x86 (vendor_id, model name, flags) or Arm (implementer, part,
    Features). Only the first processor block is read."""
    fields = _first_block(text)
    if "vendor_id" in fields or "flags" in fields:
        vendor_id = fields.get("vendor_id")
        return CpuIdentity(
            vendor=X86_VENDORS.get(vendor_id, vendor_id) if vendor_id else None,
            model=fields.get("model name") or None,
            flags=select_flags(fields.get("flags", "").split()),
        )
    implementer, part = _hex(fields.get("CPU implementer")), _hex(fields.get("CPU part"))
    vendor = (
        ARM_IMPLEMENTERS.get(implementer, f"implementer {implementer:#x}")
        if (implementer is not None)
        else None
    )
    model = fields.get("model name") or fields.get("Hardware") or None
    if implementer is not None and part is not None:
        part_name = ARM_PARTS.get((implementer, part), f"part {part:#05x}")
        model = f"{vendor} {part_name}"
    return CpuIdentity(
        vendor=vendor, model=model, flags=select_flags(fields.get("Features", "").split())
    )


def identity_from_cpuinfo_fact(value: object) -> CpuIdentity:
    """The recorded py-cpuinfo answer: {"vendor", "brand", "flags"}."""
    if not isinstance(value, Mapping):
        return CpuIdentity()
    vendor, brand, flags = value.get("vendor"), value.get("brand"), value.get("flags")
    brand = str(brand) if brand else None
    if not (isinstance(vendor, str) and vendor):
        vendor = "Apple" if brand and brand.startswith("Apple ") else None
    return CpuIdentity(
        vendor=X86_VENDORS.get(vendor, vendor) if vendor else None,
        model=brand,
        flags=select_flags([str(f) for f in flags]) if isinstance(flags, list) else (),
    )


def parse_libc(value: object) -> tuple[str | None, str | None]:
    """The "libc" fact ({"kind": "glibc", "version": "2.35"}) -> (kind, version)."""
    if not isinstance(value, Mapping):
        return None, None
    kind, version = value.get("kind"), value.get("version")
    return (str(kind) if kind else None), (str(version) if version else None)


def elf_interpreter(data: bytes) -> str | None:
    """The PT_INTERP path of an ELF executable (the dynamic loader), or None."""
    import struct

    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        (phoff,) = struct.unpack_from(order + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x36)
    else:
        (phoff,) = struct.unpack_from(order + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x2A)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + phentsize > len(data):
            return None
        (p_type,) = struct.unpack_from(order + "I", data, off)
        if p_type != 3:  # PT_INTERP
            continue
        if is64:
            (p_offset,) = struct.unpack_from(order + "Q", data, off + 8)
            (p_filesz,) = struct.unpack_from(order + "Q", data, off + 32)
        else:
            (p_offset,) = struct.unpack_from(order + "I", data, off + 4)
            (p_filesz,) = struct.unpack_from(order + "I", data, off + 16)
        raw = data[p_offset : p_offset + p_filesz]
        return raw.split(b"\0", 1)[0].decode("ascii", "replace") or None
    return None


def parse_musl_version(loader_stderr: str) -> str | None:
    """Running the musl loader prints "musl libc (x86_64)\\nVersion 1.2.4\\n..." on stderr."""
    lines = [line.strip() for line in loader_stderr.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("musl"):
        return None
    for line in lines[1:]:
        if line.startswith("Version "):
            return line.split(None, 1)[1]
    return None


def _live_libc() -> dict[str, str] | None:
    """glibc via confstr; else musl, recognised by the interpreter's ELF loader path."""
    import sys

    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, OSError, ValueError):
        text = None
    if text:
        kind, _, version = text.partition(" ")
        if kind == "glibc" and version:
            return {"kind": "glibc", "version": version}
    try:
        with open(sys.executable, "rb") as fh:
            head = fh.read(65536)
    except OSError:
        return None
    loader = elf_interpreter(head)
    if not loader or "musl" not in loader:
        return None
    import subprocess

    try:
        proc = subprocess.run([loader], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {"kind": "musl", "version": ""}
    return {"kind": "musl", "version": parse_musl_version(proc.stderr) or ""}


def _libc(io: HostIO) -> tuple[str | None, str | None, str | None]:
    try:
        kind, version = parse_libc(io.fact("libc", _live_libc))
    except FactUnavailable as exc:
        return None, None, f"libc: {exc}"
    if kind is None:
        return None, None, "libc: neither glibc nor musl could be identified"
    return kind, version, None


def _live_py_cpuinfo(cache_path: str | None, boot_id: str | None) -> dict[str, Any]:
    """py-cpuinfo's answer (over a second), cached per boot in `cache_path` when given."""
    cached = _read_cache(cache_path, boot_id)
    if cached is not None:
        return cached
    import cpuinfo

    info = cpuinfo.get_cpu_info()
    value = {
        "vendor": info.get("vendor_id_raw") or None,
        "brand": info.get("brand_raw") or None,
        "flags": [str(f) for f in info.get("flags", [])],
    }
    _write_cache(cache_path, boot_id, value)
    return value


def _read_cache(cache_path: str | None, boot_id: str | None) -> dict[str, Any] | None:
    if not cache_path or not boot_id:
        return None
    try:
        with open(cache_path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("boot_id") != boot_id:
        return None
    info = data.get("cpuinfo")
    return info if isinstance(info, dict) else None


def _write_cache(cache_path: str | None, boot_id: str | None, value: dict[str, Any]) -> None:
    if not cache_path or not boot_id:
        return
    tmp = f"{cache_path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(cache_path) or ".", exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"boot_id": boot_id, "cpuinfo": value}, fh)
        os.replace(tmp, cache_path)
    except OSError:
        return  # a cache that cannot be written only costs time on the next call


def _identity(
    io: HostIO, os_name: str, cache_path: str | None, boot_id: str | None
) -> tuple[CpuIdentity, list[str]]:
    if os_name == "linux":
        text, reason = read_optional(io, "/proc/cpuinfo")
        if text is None:
            return CpuIdentity(), [reason or "/proc/cpuinfo: missing"]
        return parse_cpuinfo(text), []
    try:
        value = io.fact("cpuinfo", lambda: _live_py_cpuinfo(cache_path, boot_id))
    except FactUnavailable as exc:
        return CpuIdentity(), [f"cpuinfo: {exc}"]
    except Exception as exc:  # py-cpuinfo fails in many ways: keep it as a reason
        return CpuIdentity(), [f"py-cpuinfo failed: {type(exc).__name__}: {exc}"]
    return identity_from_cpuinfo_fact(value), []


def _cores(io: HostIO) -> tuple[int | None, str | None]:
    try:
        value = io.fact("cpu_count", os.cpu_count)
    except FactUnavailable as exc:
        return None, f"cpu_count: {exc}"
    return (value, None) if isinstance(value, int) and value > 0 else (None, None)


def probe(
    io: HostIO, *, os_name: str, cache_path: str | None = None, boot_id: str | None = None
) -> CpuReport:
    """Read the CPU section. Off Linux py-cpuinfo answers; pass `cache_path` and `boot_id`
    to keep its (slow) answer until the next reboot. Nothing is written without them."""
    reasons: list[str] = []
    u = uname(io)
    reasons += [u["reason"]] if "reason" in u else []
    identity, more = _identity(io, os_name, cache_path, boot_id)
    reasons += more
    cores, reason = _cores(io)
    reasons += [reason] if reason else []
    libc = libc_version = None
    if os_name == "linux":
        libc, libc_version, reason = _libc(io)
        reasons += [reason] if reason else []
    return CpuReport(
        arch=normalise_arch(u["machine"], os_name),
        machine=u["machine"],
        vendor=identity.vendor,
        model=identity.model,
        flags=identity.flags,
        logical_cores=cores,
        libc=libc,
        libc_version=libc_version or None,
        reasons=tuple(reasons),
    )
