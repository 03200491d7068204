"""AMD GPUs for ROCm: gfx targets from the KFD topology, /dev/kfd, and the ROCm version."""

from __future__ import annotations

import re

from torchenv.probes.hostio import HostIO, list_optional, read_optional
from torchenv.probes.report import AmdGpu, AmdReport

TOPOLOGY = "/sys/class/kfd/kfd/topology/nodes"
AMD_VENDOR_ID = 4098  # 0x1002
OVERRIDE = "TORCHENV_ROCM_GFX"
UV_OVERRIDE = "UV_AMD_GPU_ARCHITECTURE"  # uv's name for the same override; torchenv's wins
DEVICE_NAMES = {  # PCI device id -> marketing name (the pci.ids database)
    0x74A1: "AMD Instinct MI300X",
    0x74A5: "AMD Instinct MI325X",
    0x740F: "AMD Instinct MI210",
    0x7408: "AMD Instinct MI250X",
    0x744C: "AMD Radeon RX 7900 XTX/XT",
    0x7448: "AMD Radeon Pro W7900",
}


def parse_properties(text: str) -> dict[str, int]:
    """A KFD node's `properties` file: one "name value" pair of integers a line."""
    values: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"line {number} is not 'name value': {line[:60]!r}")
        values[parts[0]] = int(parts[1])
    return values


def gfx_name(target_version: int) -> str:
    """90402 -> "gfx942", 90010 -> "gfx90a", 110501 -> "gfx1151"."""
    major, minor, step = (
        target_version // 10000,
        (target_version // 100) % 100,
        target_version % 100,
    )
    return f"gfx{major}{minor:x}{step:x}"


def parse_gfx(name: str, node: int = -1) -> AmdGpu | None:
    """ "gfx90a" -> AmdGpu(gfx_target_version=90010); None when it is not a gfx name."""
    match = re.fullmatch(r"gfx(\d{1,2})([0-9a-f])([0-9a-f])", name.strip().lower())
    if not match:
        return None
    version = int(match[1]) * 10000 + int(match[2], 16) * 100 + int(match[3], 16)
    return AmdGpu(node=node, gfx=match[0], gfx_target_version=version)


def parse_rocm_version(text: str) -> str | None:
    """ "6.2.4-120" -> "6.2.4" (the .info/version file of a ROCm installation)."""
    match = re.match(r"\s*(\d+\.\d+(?:\.\d+)?)", text)
    return match[1] if match else None


def gpu_from_properties(node: int, props: dict[str, int]) -> AmdGpu | None:
    """The GPU a node describes; None for CPU nodes (gfx_target_version 0) and other vendors."""
    target = props.get("gfx_target_version", 0)
    if target <= 0 or props.get("vendor_id", AMD_VENDOR_ID) != AMD_VENDOR_ID:
        return None
    device = props.get("device_id")
    return AmdGpu(
        node=node,
        gfx=gfx_name(target),
        gfx_target_version=target,
        device_id=f"0x{device:04x}" if device else None,
        name=DEVICE_NAMES.get(device) if device else None,
    )


def _node_number(name: str) -> int:
    return int(name) if name.isdigit() else -1


def _kfd_gpus(io: HostIO) -> tuple[list[AmdGpu], list[str]]:
    nodes, reason = list_optional(io, TOPOLOGY)
    gpus: list[AmdGpu] = []
    reasons: list[str] = [reason] if reason else []
    for name in sorted(nodes, key=_node_number):
        path = f"{TOPOLOGY}/{name}/properties"
        text, reason = read_optional(io, path)
        if text is None:
            reasons += [reason] if reason else []
            continue
        try:
            gpu = gpu_from_properties(_node_number(name), parse_properties(text))
        except ValueError as exc:
            reasons.append(f"{path}: not a KFD properties file ({exc})")
            continue
        if gpu is not None:
            gpus.append(gpu)
    return gpus, reasons


def _rocm_version(io: HostIO) -> tuple[str | None, str | None]:
    roots = [r for r in (io.getenv("ROCM_PATH"), "/opt/rocm") if r]
    for root in dict.fromkeys(root.rstrip("/") for root in roots):
        path = f"{root}/.info/version"
        text, reason = read_optional(io, path)
        if reason:
            return None, reason
        if text is not None:
            version = parse_rocm_version(text)
            return version, None if version else f"{path}: no version in {text[:40]!r}"
    return None, None


def parse_override(
    value: str, source: str = OVERRIDE
) -> tuple[tuple[AmdGpu, ...], tuple[str, ...]]:
    """TORCHENV_ROCM_GFX="gfx942,gfx1100" -> the GPUs it names, and a reason per bad name."""
    gpus: list[AmdGpu] = []
    reasons: list[str] = []
    for index, item in enumerate(p for p in value.split(",") if p.strip()):
        gpu = parse_gfx(item, node=index)
        if gpu is None:
            reasons.append(f"{source}: {item.strip()!r} is not a gfx target such as gfx942")
        else:
            gpus.append(gpu)
    return tuple(gpus), tuple(reasons)


def probe(io: HostIO, *, os_name: str) -> AmdReport:
    """Read the AMD section (Linux only: ROCm torch builds exist for Linux alone)."""
    named = OVERRIDE if io.getenv(OVERRIDE) else UV_OVERRIDE
    override = io.getenv(named)
    if os_name != "linux" and not override:
        return AmdReport()
    reasons: list[str] = []
    kfd = io.exists("/dev/kfd") if os_name == "linux" else False
    gpus: tuple[AmdGpu, ...] = ()
    rocm = None
    if os_name == "linux":
        found, more = _kfd_gpus(io)
        gpus, reasons = tuple(found), more
        rocm, reason = _rocm_version(io)
        reasons += [reason] if reason else []
        if gpus and not kfd:
            reasons.append(
                "the KFD topology lists AMD GPUs but /dev/kfd is missing "
                "(in a container, pass --device=/dev/kfd --device=/dev/dri)"
            )
    source = "kfd" if gpus else None
    if override:
        given, bad = parse_override(override, named)
        reasons += bad
        if given:
            gpus, source = given, "override"
            reasons.append(f"gfx targets {', '.join(g.gfx for g in given)} from {named}")
    return AmdReport(
        kfd_present=kfd, rocm_version=rocm, gpus=gpus, source=source, reasons=tuple(reasons)
    )
