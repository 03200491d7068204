"""The one interpreter and platform a lock is made for, derived from a HostReport."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded where used: target_of's callers may need no tags at all
    from packaging.tags import Tag

    from torchenv.probes.report import HostReport

_OS_MARKERS = {
    # os: (os_name, sys_platform, platform_system)
    "linux": ("posix", "linux", "Linux"),
    "macos": ("posix", "darwin", "Darwin"),
    "windows": ("nt", "win32", "Windows"),
}
_WINDOWS_MACHINE = {"x86_64": "AMD64", "aarch64": "ARM64", "arm64": "ARM64"}
# uv's --python-platform knows manylinux_2_17 .. manylinux_2_40 (uv 0.5 and later).
_UV_GLIBC = (17, 40)


@dataclass(frozen=True)
class Target:
    """What decides which wheel installs and which markers hold; may differ from this machine."""

    os: str  # "linux", "macos", "windows"
    arch: str  # "x86_64", "aarch64", "arm64"
    python_version: str  # full: "3.11.7"
    implementation: str  # "cpython"
    interpreter_tag: str  # "cp311"
    abi_tags: tuple[str, ...]
    platform_tags: tuple[str, ...]  # best first, as the probe wrote them
    libc: str | None = None
    libc_version: str | None = None
    macos_version: str | None = None
    free_threaded: bool = False

    @property
    def python_minor(self) -> str:
        return ".".join(self.python_version.split(".")[:2])

    @property
    def version_tuple(self) -> tuple[int, int]:
        major, minor = self.python_minor.split(".")
        return int(major), int(minor)

    def tags(self) -> tuple[Tag, ...]:
        """Every wheel tag the target accepts, most preferred first."""
        from packaging.tags import compatible_tags, cpython_tags, generic_tags

        platforms = list(self.platform_tags)
        if self.implementation == "cpython":
            abis = [a for a in self.abi_tags if a not in ("abi3", "none")]
            found = list(cpython_tags(self.version_tuple, abis=abis, platforms=platforms))
        else:
            found = list(generic_tags(self.interpreter_tag, self.abi_tags, platforms))
        found += compatible_tags(self.version_tuple, self.interpreter_tag, platforms)
        return tuple(dict.fromkeys(found))

    def markers(self) -> dict[str, str]:
        """PEP 508 environment markers of the target (release and version strings unknown)."""
        os_name, sys_platform, system = _OS_MARKERS[self.os]
        machine = _WINDOWS_MACHINE.get(self.arch, self.arch) if self.os == "windows" else self.arch
        impl_name = self.implementation
        impl_pretty = {"cpython": "CPython", "pypy": "PyPy"}.get(impl_name, impl_name)
        return {
            "implementation_name": impl_name,
            "implementation_version": self.python_version,
            "os_name": os_name,
            "platform_machine": machine,
            "platform_python_implementation": impl_pretty,
            "platform_release": "",
            "platform_system": system,
            "platform_version": "",
            "python_full_version": self.python_version,
            "python_version": self.python_minor,
            "sys_platform": sys_platform,
        }

    def uv_platform(self) -> str:
        """The value for `uv pip compile --python-platform`."""
        arch = "aarch64" if self.arch in ("aarch64", "arm64") else self.arch
        if self.os == "macos":
            return f"{arch}-apple-darwin"
        if self.os == "windows":
            return f"{arch}-pc-windows-msvc"
        if self.libc == "musl":
            return f"{arch}-unknown-linux-musl"
        glibc = _glibc_minor(self.libc_version)
        if glibc is None:
            return f"{arch}-unknown-linux-gnu"
        return f"{arch}-manylinux_2_{min(max(glibc, _UV_GLIBC[0]), _UV_GLIBC[1])}"

    def describe(self) -> str:
        return f"{self.implementation} {self.python_minor} on {self.os} {self.arch}"


def _glibc_minor(version: str | None) -> int | None:
    match = re.fullmatch(r"2\.(\d+)", version or "")
    return int(match[1]) if match else None


def target_of(host: HostReport) -> Target:
    py = host.python
    version = py.version if py.version.count(".") >= 2 else py.version + ".0"
    return Target(
        os=host.system.os,
        arch=host.cpu.arch,
        python_version=version,
        implementation=py.implementation,
        interpreter_tag=py.interpreter_tag,
        abi_tags=tuple(py.abi_tags),
        platform_tags=tuple(py.platform_tags),
        libc=host.cpu.libc,
        libc_version=host.cpu.libc_version,
        macos_version=host.apple.macos_version,
        free_threaded=py.free_threaded,
    )
