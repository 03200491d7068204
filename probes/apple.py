"""Apple: macOS version, Apple silicon, Rosetta translation, and whether MPS can run."""

from __future__ import annotations

import re

from torchenv.probes.hostio import CommandResult, HostIO
from torchenv.probes.report import AppleReport
from torchenv.probes.system import mac_version

MPS_MIN_MACOS = (12, 3)


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """ "14.5" -> (14, 5); "13.6.3" -> (13, 6, 3)."""
    if not text or not re.fullmatch(r"\d+(\.\d+)*", text.strip()):
        return None
    return tuple(int(p) for p in text.strip().split("."))


def parse_sysctl_flag(result: CommandResult) -> tuple[bool | None, str | None]:
    """A 0/1 sysctl: "1" -> True; "0" or an unknown oid (Intel Macs lack both) -> False."""
    key = result.argv[-1]
    if result.error is not None:
        return None, f"sysctl {key}: {result.error}"
    if result.returncode == 0:
        value = result.stdout.strip()
        if value in ("0", "1"):
            return value == "1", None
        return None, f"sysctl {key}: unexpected answer {value[:40]!r}"
    if "unknown oid" in result.stderr:
        return False, None
    return None, f"sysctl {key}: exit {result.returncode}: {result.stderr.strip()[:80]}"


def _sysctl(io: HostIO, key: str, timeout: float) -> CommandResult:
    return io.run(["sysctl", "-n", key], timeout=timeout)


def probe(io: HostIO, *, os_name: str, command_timeout: float) -> AppleReport:
    """Read the Apple section (macOS only; elsewhere it stays empty)."""
    if os_name != "macos":
        return AppleReport()
    reasons: list[str] = []
    release, reason = mac_version(io)
    reasons += [reason] if reason else []
    arm64, reason = parse_sysctl_flag(_sysctl(io, "hw.optional.arm64", command_timeout))
    reasons += [reason] if reason else []
    translated, reason = parse_sysctl_flag(_sysctl(io, "sysctl.proc_translated", command_timeout))
    reasons += [reason] if reason else []
    brand = _sysctl(io, "machdep.cpu.brand_string", command_timeout)
    chip = brand.stdout.strip() or None if brand.ok else None
    if not brand.ok:
        reasons.append(f"sysctl machdep.cpu.brand_string: {brand.error or brand.returncode}")
    version = parse_version(release)
    mps = None
    if arm64 is not None:
        mps = arm64 and version is not None and version >= MPS_MIN_MACOS
    return AppleReport(
        is_macos=True,
        macos_version=release,
        apple_silicon=arm64,
        rosetta=translated,
        chip=chip,
        mps_capable=mps,
        reasons=tuple(reasons),
    )
