"""The operating system, container, WSL, cloud vendor, memory, disk and boot id of a host."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from torchenv.probes.hostio import FactUnavailable, HostIO, read_optional
from torchenv.probes.report import SystemReport

OS_NAMES = {"linux": "linux", "darwin": "macos", "windows": "windows"}
DMI = "/sys/class/dmi/id"
DMI_FIELDS = ("sys_vendor", "product_name", "bios_vendor", "chassis_asset_tag")
AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"

# (DMI field, substring, cloud): the first match wins; checked against lower-cased values.
CLOUD_HINTS: tuple[tuple[str, str, str], ...] = (
    ("sys_vendor", "amazon ec2", "aws"),
    ("bios_vendor", "amazon ec2", "aws"),
    ("product_version", "amazon", "aws"),  # Xen-based EC2 instances
    ("sys_vendor", "google", "gcp"),
    ("product_name", "google compute engine", "gcp"),
    ("chassis_asset_tag", AZURE_ASSET_TAG, "azure"),
    ("chassis_asset_tag", "oraclecloud.com", "oracle"),
    ("sys_vendor", "alibaba cloud", "alibaba"),
    ("product_name", "alibaba cloud ecs", "alibaba"),
    ("sys_vendor", "tencent cloud", "tencent"),
    ("sys_vendor", "digitalocean", "digitalocean"),
    ("sys_vendor", "hetzner", "hetzner"),
    ("sys_vendor", "scaleway", "scaleway"),
    ("product_name", "openstack", "openstack"),
)

# (substring of a /proc/1/cgroup line, container): cgroup v1 paths name the runtime.
CGROUP_HINTS: tuple[tuple[str, str], ...] = (
    ("kubepods", "kubernetes"),
    ("libpod", "podman"),
    ("/docker", "docker"),
    ("docker-", "docker"),
    ("/lxc", "lxc"),
    ("containerd", "containerd"),
)


def uname(io: HostIO) -> dict[str, str]:
    """platform.uname() as the fact "platform": system, machine, release, version (and
    "reason" when it could not be had)."""

    def compute() -> dict[str, str]:
        import platform

        u = platform.uname()
        return {
            "system": u.system,
            "machine": u.machine,
            "release": u.release,
            "version": u.version,
        }

    try:
        value = io.fact("platform", compute)
    except FactUnavailable as exc:
        return {
            "system": "",
            "machine": "",
            "release": "",
            "version": "",
            "reason": f"platform: {exc}",
        }
    fields = value if isinstance(value, Mapping) else {}
    return {k: str(fields.get(k) or "") for k in ("system", "machine", "release", "version")}


def os_name(system: str) -> str:
    """ "Linux" -> "linux", "Darwin" -> "macos", "Windows" -> "windows", others lower-cased."""
    low = system.strip().lower()
    return OS_NAMES.get(low, low or "unknown")


def mac_version(io: HostIO) -> tuple[str | None, str | None]:
    """platform.mac_ver() as the fact "mac_ver": (release, None) or (None, reason)."""

    def compute() -> dict[str, str]:
        import platform

        release, _, machine = platform.mac_ver()
        return {"release": release, "machine": machine}

    try:
        value = io.fact("mac_ver", compute)
    except FactUnavailable as exc:
        return None, f"mac_ver: {exc}"
    release = str(value.get("release") or "") if isinstance(value, Mapping) else ""
    return (release, None) if release else (None, "mac_ver: macOS gave no version")


def parse_os_release(text: str) -> dict[str, str]:
    """/etc/os-release (shell-style KEY=value lines, values optionally quoted)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or not key or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        fields[key] = re.sub(r"\\(.)", r"\1", value)
    return fields


def os_release_name(fields: Mapping[str, str]) -> str | None:
    pretty = fields.get("PRETTY_NAME")
    if pretty:
        return pretty
    name, version = fields.get("NAME"), fields.get("VERSION") or fields.get("VERSION_ID")
    return " ".join(p for p in (name, version) if p) or None


def wsl_version(proc_version: str | None, distro: str | None) -> tuple[int | None, str | None]:
    """(1 | 2 | None, reason): WSL2 kernels say "microsoft-standard-WSL2", WSL1 "Microsoft"."""
    text = (proc_version or "").lower()
    if "wsl2" in text:
        return 2, None
    if "microsoft" in text:
        return 1, None
    if distro:
        return 2, "WSL_DISTRO_NAME is set but the kernel does not name WSL; assuming WSL2"
    return None, None


def container_from_cgroup(text: str) -> str | None:
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for hint, name in CGROUP_HINTS:
            if hint in path:
                return name
    return None


def cloud_from_dmi(dmi: Mapping[str, str]) -> str | None:
    values = {k: v.strip().lower() for k, v in dmi.items()}
    for key, hint, cloud in CLOUD_HINTS:
        if hint in values.get(key, ""):
            return cloud
    return None


def _container(io: HostIO) -> tuple[str | None, list[str]]:
    if io.getenv("KUBERNETES_SERVICE_HOST"):
        return "kubernetes", []
    if io.exists("/.dockerenv"):
        return "docker", []
    if io.exists("/run/.containerenv"):
        return "podman", []
    env_hint = io.getenv("container")  # set by podman, systemd-nspawn, lxc, flatpak...
    if env_hint:
        return env_hint.strip().lower(), []
    text, reason = read_optional(io, "/proc/1/cgroup")
    return (container_from_cgroup(text) if text else None), [reason] if reason else []


def _cloud(io: HostIO) -> tuple[str | None, list[str]]:
    dmi: dict[str, str] = {}
    reasons: list[str] = []
    for name in (*DMI_FIELDS, "product_version"):
        text, reason = read_optional(io, f"{DMI}/{name}")
        if reason:
            reasons.append(reason)
        if text is not None:
            dmi[name] = text
        elif name == "sys_vendor" and reason is None:
            return None, reasons  # no DMI at all (WSL, Jetson, containers without /sys)
    return cloud_from_dmi(dmi), reasons


def meminfo_memory(text: str) -> dict[str, int] | None:
    """Total and available bytes from /proc/meminfo's text, as psutil reports them where the
    kernel gives MemAvailable (Linux 3.14 and later); None where it lacks either line."""
    kib: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if name in ("MemTotal", "MemAvailable") and fields and fields[0].isdigit():
            kib[name] = int(fields[0])
    if len(kib) < 2:
        return None
    return {"total": kib["MemTotal"] * 1024, "available": kib["MemAvailable"] * 1024}


def _live_memory() -> dict[str, int]:
    """This machine's memory: /proc/meminfo where it says enough (no psutil import, tens of
    milliseconds), else psutil's figures."""
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as file:
            found = meminfo_memory(file.read(1 << 16))
    except OSError:
        found = None
    if found is not None:
        return found
    import psutil  # type: ignore[import-untyped,unused-ignore]

    vm = psutil.virtual_memory()
    return {"total": int(vm.total), "available": int(vm.available)}


def _memory(io: HostIO) -> tuple[int | None, int | None, str | None]:
    def compute() -> dict[str, int]:
        return _live_memory()

    try:
        value = io.fact("memory", compute)
    except FactUnavailable as exc:
        return None, None, f"memory: {exc}"
    except OSError as exc:
        return None, None, f"memory: {type(exc).__name__}: {exc}"
    fields = value if isinstance(value, Mapping) else {}
    return _int(fields.get("total")), _int(fields.get("available")), None


def nearest_existing(path: str) -> str:
    """The path itself or its nearest existing parent (the environment may not exist yet)."""
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def _disk(io: HostIO, disk_path: str) -> tuple[str | None, int | None, str | None]:
    def compute() -> dict[str, Any]:
        import shutil  # its free space is psutil's: the blocks a user may take

        where = nearest_existing(disk_path)
        return {"path": where, "free": int(shutil.disk_usage(where).free)}

    try:
        value = io.fact("disk", compute)
    except FactUnavailable as exc:
        return None, None, f"disk: {exc}"
    except OSError as exc:
        return None, None, f"disk at {disk_path}: {type(exc).__name__}: {exc.strerror or exc}"
    fields = value if isinstance(value, Mapping) else {}
    return str(fields.get("path") or disk_path), _int(fields.get("free")), None


def _boot_id(io: HostIO, os_kind: str) -> tuple[str | None, str | None]:
    if os_kind == "linux":
        text, reason = read_optional(io, "/proc/sys/kernel/random/boot_id")
        return (text.strip() or None) if text else None, reason

    def compute() -> float:
        import psutil  # type: ignore[import-untyped,unused-ignore]

        return float(psutil.boot_time())

    try:
        seconds = _int(io.fact("boot_time", compute))
        return (f"boot-{seconds}", None) if seconds else (None, "boot_time: not a number")
    except FactUnavailable as exc:
        return None, f"boot_time: {exc}"
    except OSError as exc:
        return None, f"boot_time: {type(exc).__name__}: {exc}"


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def probe(io: HostIO, *, disk_path: str | None) -> SystemReport:
    """Read the system section; every unreadable source becomes a reason."""
    reasons: list[str] = []
    u = uname(io)
    reasons += [u["reason"]] if "reason" in u else []
    kind = os_name(u["system"])
    release: str | None = None
    container = wsl = cloud = None
    if kind == "linux":
        text, reason = read_optional(io, "/etc/os-release")
        if text is None and reason is None:
            text, reason = read_optional(io, "/usr/lib/os-release")
        reasons += [reason] if reason else []
        release = os_release_name(parse_os_release(text)) if text else None
        container, more = _container(io)
        reasons += more
        proc_version, reason = read_optional(io, "/proc/version")
        reasons += [reason] if reason else []
        wsl, reason = wsl_version(proc_version or u["release"], io.getenv("WSL_DISTRO_NAME"))
        reasons += [reason] if reason else []
        cloud, more = _cloud(io)
        reasons += more
    elif kind == "macos":
        release, reason = mac_version(io)
        reasons += [reason] if reason else []
    elif kind == "windows":
        release = u["version"] or None
    total, available, reason = _memory(io)
    reasons += [reason] if reason else []
    where = free = None
    if disk_path is not None:
        where, free, reason = _disk(io, disk_path)
        reasons += [reason] if reason else []
    boot_id, reason = _boot_id(io, kind)
    reasons += [reason] if reason else []
    return SystemReport(
        os=kind,
        os_release=release,
        kernel=u["release"] or None,
        container=container,
        wsl=wsl,
        cloud=cloud,
        memory_total_bytes=total,
        memory_available_bytes=available,
        disk_path=where,
        disk_free_bytes=free,
        boot_id=boot_id,
        reasons=tuple(reasons),
    )
