"""uv's `--python-platform` values as the OS, architecture, glibc and macOS they stand for."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from torchenv.agent.base.errors import HostError, UsageError

# uv's shorthands, as `uv pip compile --help` lists them.
ALIASES = {
    "linux": "x86_64-unknown-linux-gnu",
    "macos": "aarch64-apple-darwin",
    "windows": "x86_64-pc-windows-msvc",
}
GNU_GLIBC = "2.28"  # uv: `<arch>-unknown-linux-gnu` is `<arch>-manylinux_2_28`
MACOS_DEFAULT = "13.0"  # uv: the oldest macOS not at end of life, unless MACOSX_DEPLOYMENT_TARGET
MANYLINUX = re.compile(r"(x86_64|aarch64)-manylinux(?:2014|_2_(\d+))")
FIXED = {
    "x86_64-unknown-linux-gnu": ("linux", "x86_64"),
    "aarch64-unknown-linux-gnu": ("linux", "aarch64"),
    "x86_64-apple-darwin": ("macos", "x86_64"),
    "aarch64-apple-darwin": ("macos", "arm64"),
    "x86_64-pc-windows-msvc": ("windows", "x86_64"),
    "aarch64-pc-windows-msvc": ("windows", "aarch64"),
}
# uv knows these, but PyTorch publishes no wheels for them.
WITHOUT_TORCH = (
    "i686-pc-windows-msvc",
    "aarch64-unknown-linux-musl",
    "x86_64-unknown-linux-musl",
    "riscv64-unknown-linux",
    "aarch64-linux-android",
    "x86_64-linux-android",
    "wasm32-pyodide2024",
    "wasm32-pyodide2025",
    "arm64-apple-ios",
    "arm64-apple-ios-simulator",
    "x86_64-apple-ios-simulator",
)


@dataclass(frozen=True)
class PythonPlatform:
    """What one `--python-platform` value says about the target."""

    os: str
    arch: str
    glibc: str | None = None  # Linux only: the newest glibc its wheels may need
    macos: str | None = None  # macOS only: the deployment target


def parse_python_platform(value: str, env: Mapping[str, str]) -> PythonPlatform:
    """uv's value -> the target; UsageError for a value uv does not know, HostError for one
    that PyTorch has no builds for."""
    name = ALIASES.get(value.strip().lower(), value.strip().lower())
    if name in WITHOUT_TORCH:
        raise HostError(
            f"--python-platform {value}: PyTorch publishes no wheels for that platform",
            hint="torchenv targets Linux (glibc) x86_64 and aarch64, Windows x86_64 and "
            "aarch64, and macOS (aarch64-apple-darwin, x86_64-apple-darwin)",
        )
    found = MANYLINUX.fullmatch(name)
    if found:
        minor = found.group(2) or "17"  # manylinux2014 is manylinux_2_17
        return PythonPlatform("linux", found.group(1), glibc=f"2.{int(minor)}")
    if name not in FIXED:
        raise UsageError(
            f"--python-platform {value!r} is not one of uv's platforms",
            hint="use e.g. linux, macos, windows, x86_64-manylinux_2_28, "
            "aarch64-unknown-linux-gnu, aarch64-apple-darwin or x86_64-pc-windows-msvc",
        )
    os_name, arch = FIXED[name]
    if os_name == "linux":
        return PythonPlatform(os_name, arch, glibc=GNU_GLIBC)
    if os_name == "macos":
        return PythonPlatform(
            os_name, arch, macos=env.get("MACOSX_DEPLOYMENT_TARGET") or MACOS_DEFAULT
        )
    return PythonPlatform(os_name, arch)
