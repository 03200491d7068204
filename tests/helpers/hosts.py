"""Hosts for tests: recorded ones, copies made broken or varied, made-up hosts, lock targets."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import HOSTS
from torchenv.agent.base.uvbin import find_uv
from torchenv.agent.host.source import HostFlags, load_host
from torchenv.probes.report import (
    AmdGpu,
    AmdReport,
    AppleReport,
    CpuReport,
    HostReport,
    IntelGpu,
    IntelReport,
    NvidiaGpu,
    NvidiaReport,
    NvidiaState,
    PythonReport,
    SystemReport,
)


def copy_host(name: str, into: Path) -> Path:
    """A writable copy of tests/hosts/<name>."""
    target = into / name
    shutil.copytree(HOSTS / name, target)
    return target


def empty_host(into: Path, name: str = "host") -> Path:
    target = into / name
    (target / "root").mkdir(parents=True)
    return target


def write_root(host: Path, path: str, text: str) -> None:
    """Put a file at the absolute host path `path`."""
    target = host / "root" / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def remove_root(host: Path, path: str) -> None:
    target = host / "root" / path.lstrip("/")
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()


def edit_json(host: Path, name: str, change: Callable[[Any], Any], default: Any) -> None:
    """Read-modify-write one of a host's JSON side files (facts.json, commands.json...)."""
    path = host / name
    value = json.loads(path.read_text(encoding="utf-8")) if path.exists() else default
    result = change(value)
    path.write_text(json.dumps(value if result is None else result, indent=2), encoding="utf-8")


def set_fact(host: Path, name: str, value: Any) -> None:
    edit_json(host, "facts.json", lambda facts: facts.__setitem__(name, value), {})


def set_env(host: Path, name: str, value: str | None) -> None:
    edit_json(host, "env.json", lambda env: env.__setitem__(name, value), {})


def set_command(
    host: Path,
    argv: list[str],
    *,
    returncode: int | None = 0,
    stdout: str = "",
    stderr: str = "",
    error: str | None = None,
) -> None:
    entry = {
        "argv": argv,
        "returncode": returncode,
        "stdout": stdout,
        "stderr": stderr,
        "error": error,
    }
    edit_json(
        host, "commands.json", lambda cmds: [c for c in cmds if c["argv"] != argv] + [entry], []
    )


def set_read_error(host: Path, path: str, error: str) -> None:
    """Make the manifest say that reading `path` failed ("PermissionError: ...")."""

    def change(manifest: dict[str, Any]) -> None:
        manifest.setdefault("errors", {})[path] = error

    edit_json(host, "manifest.json", change, {})


def sibling_host(name: str, into: Path, number: int) -> Path:
    """Another node of the same hardware class as tests/hosts/<name>: a copy whose only changes
    are facts outside the target (memory, free disk, CPU count, GPU serials and bus ids)."""
    target = into / f"{name}-node{number}"
    shutil.copytree(HOSTS / name, target, symlinks=True)

    def change(facts: dict[str, Any]) -> None:
        facts["memory"] = {"total": (64 + number) << 30, "available": (60 + number) << 30}
        facts["disk"] = {"path": f"/srv/node{number}", "free": (500 + number) << 30}
        facts["cpu_count"] = 16 * (number + 1)
        for device in (facts.get("nvml") or {}).get("devices", []):
            device["uuid"] = f"GPU-{number:08d}-0000-0000-0000-{device['index']:012d}"
            device["pci_bus_id"] = f"00000000:{0x10 + number:02X}:{device['index']:02X}.0"

    edit_json(target, "facts.json", change, {})
    return target


def gfx_version(name: str) -> int:
    digits = name[3:]
    return int(digits[:-2]) * 10000 + int(digits[-2], 16) * 100 + int(digits[-1], 16)


def make_host(
    *,
    os: str = "linux",
    arch: str = "x86_64",
    python: str = "3.12",
    free_threaded: bool = False,
    driver: str | None = None,
    cuda: str | None = None,
    gpus: tuple[str | None, ...] = (),
    state: NvidiaState | None = None,
    hidden: int = 0,
    tegra: str | None = None,
    gfx: tuple[str, ...] = (),
    rocm: str | None = None,
    kfd: bool = True,
    xpu: bool = False,
    macos: str | None = None,
    rosetta: bool = False,
    libc: str | None = "glibc",
    glibc: str = "2.35",
) -> HostReport:
    """A HostReport with only the facts selection reads; `gpus` are compute capabilities."""
    if state is None:
        state = NvidiaState.OK if (driver or cuda or gpus) else NvidiaState.ABSENT
        state = NvidiaState.TEGRA if tegra else state
    nvidia = NvidiaReport(
        state=state,
        driver_version=driver,
        cuda_driver_version=cuda,
        gpus=tuple(
            NvidiaGpu(index=i, name=f"test GPU {cc}", compute_capability=cc)
            for i, cc in enumerate(gpus)
        ),
        hidden_gpus=hidden,
        source="test",
        tegra_model=tegra,
    )
    amd = AmdReport(
        kfd_present=kfd and bool(gfx),
        rocm_version=rocm,
        gpus=tuple(
            AmdGpu(node=i + 1, gfx=g, gfx_target_version=gfx_version(g)) for i, g in enumerate(gfx)
        ),
        source="kfd" if gfx else None,
    )
    intel = IntelReport(
        gpus=(
            IntelGpu(
                pci_address="0000:03:00.0", device_id="0x56a0", name="Intel Arc A770", driver="xe"
            ),
        )
        if xpu
        else ()
    )
    is_mac = os == "macos"
    apple = AppleReport(
        is_macos=is_mac,
        macos_version=(macos or "14.5") if is_mac else None,
        apple_silicon=(arch == "arm64") if is_mac else None,
        rosetta=rosetta if is_mac else None,
        mps_capable=(arch == "arm64" and not rosetta) if is_mac else None,
    )
    tag = "cp" + python.replace(".", "")
    return HostReport(
        system=SystemReport(os=os),
        cpu=CpuReport(
            arch=arch,
            machine=arch,
            libc=libc if os == "linux" else None,
            libc_version=glibc if os == "linux" and libc == "glibc" else None,
        ),
        python=PythonReport(
            version=f"{python}.1",
            implementation="cpython",
            interpreter_tag=tag,
            abi_tags=(tag, "abi3", "none"),
            platform_tags=(),
            free_threaded=free_threaded,
        ),
        nvidia=nvidia,
        amd=amd,
        intel=intel,
        apple=apple,
    )


def host(name: str = "h100-driver580", **flags: str) -> HostReport:
    """A recorded host, optionally described as another target (`os=`, `arch=`, `python=`)."""
    return load_host(replay=HOSTS / name, flags=HostFlags(**flags) if flags else None)


def linux_host(arch: str = "x86_64", python: str = "3.11") -> HostReport:
    return host("h100-driver580", os="linux", arch=arch, python=python)


def mac_host(python: str = "3.11") -> HostReport:
    return host("mac-m3", python=python)


def need_uv() -> str:
    found = find_uv()
    if found is None:
        pytest.skip("uv is not installed (it is a dev dependency: pip install -e .[dev])")
    return found
