"""The Python interpreter: version, implementation, ABI, free-threading, wheel tags, venv."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from torchenv.probes.hostio import FactUnavailable, HostIO
from torchenv.probes.report import PythonReport

IMPLEMENTATION_TAGS = {"cpython": "cp", "pypy": "pp", "graalpy": "graalpy"}
MAC_ARCHS = {"arm64": "arm64", "aarch64": "arm64", "x86_64": "x86_64"}
WINDOWS_PLATFORMS = {
    "x86_64": "win_amd64",
    "aarch64": "win_arm64",
    "arm64": "win_arm64",
    "i686": "win32",
}
_LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


def _live_python() -> dict[str, Any]:
    """The running interpreter, with its wheel tags from packaging.tags."""
    import sys
    import sysconfig

    from packaging import tags

    interpreter = f"{tags.interpreter_name()}{tags.interpreter_version()}"
    abis = [t.abi for t in tags.sys_tags() if t.interpreter == interpreter]
    return {
        "version": ".".join(str(p) for p in sys.version_info[:3]),
        "implementation": sys.implementation.name,
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "interpreter_tag": interpreter,
        "abi_tags": list(dict.fromkeys(abis)),
        "platform_tags": list(tags.platform_tags()),
    }


def interpreter_tag(version: str, implementation: str = "cpython") -> str:
    """ "3.12.4" -> "cp312"."""
    major, minor = _major_minor(version)
    prefix = IMPLEMENTATION_TAGS.get(implementation, implementation[:2])
    return f"{prefix}{major}{minor}"


def _major_minor(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version.strip())
    if not match:
        raise ValueError(f"{version!r} is not a Python version such as 3.12")
    return int(match[1]), int(match[2])


def abi_tags(version: str, *, free_threaded: bool = False) -> tuple[str, ...]:
    """CPython's ABI tags, most specific first: cp313t (free-threaded) or cp312, abi3, none.
    A free-threaded build cannot load the stable ABI (abi3)."""
    major, minor = _major_minor(version)
    if free_threaded:
        return (f"cp{major}{minor}t", "none")
    return (f"cp{major}{minor}", "abi3", "none")


def manylinux_platforms(arch: str, glibc: str) -> Iterator[str]:
    """linux_ARCH, then manylinux_2_N_ARCH from the host's glibc down (with the legacy alias
    beside 2_17, 2_12 and 2_5), in the order packaging gives for a running interpreter."""
    yield f"linux_{arch}"
    match = re.match(r"2\.(\d+)", glibc)
    if not match:
        return
    oldest = 5 if arch in ("x86_64", "i686") else 17
    for minor in range(int(match[1]), oldest - 1, -1):
        yield f"manylinux_2_{minor}_{arch}"
        if minor in _LEGACY_MANYLINUX:
            yield f"{_LEGACY_MANYLINUX[minor]}_{arch}"


def mac_platforms(arch: str, macos_version: str) -> list[str]:
    from packaging.tags import mac_platforms as packaging_mac_platforms

    match = re.match(r"(\d+)(?:\.(\d+))?", macos_version)
    if not match:
        return []
    version = (int(match[1]), int(match[2] or 0))
    return list(packaging_mac_platforms(version, MAC_ARCHS.get(arch, arch)))


def platform_tags(
    *, os_name: str, arch: str, libc_version: str | None, macos_version: str | None
) -> tuple[str, ...]:
    """The platform tags of a described (not running) target."""
    if os_name == "linux":
        return tuple(manylinux_platforms(arch, libc_version or ""))
    if os_name == "macos":
        return tuple(mac_platforms(arch, macos_version or "11.0"))
    if os_name == "windows":
        tag = WINDOWS_PLATFORMS.get(arch)
        return (tag,) if tag else ()
    return ()


def describe(
    version: str,
    *,
    os_name: str,
    arch: str,
    libc_version: str | None,
    macos_version: str | None,
    free_threaded: bool = False,
) -> PythonReport:
    """A PythonReport for a CPython that is not this one (`--python 3.12 --os linux`...)."""
    return PythonReport(
        version=version,
        implementation="cpython",
        interpreter_tag=interpreter_tag(version),
        abi_tags=abi_tags(version, free_threaded=free_threaded),
        platform_tags=platform_tags(
            os_name=os_name, arch=arch, libc_version=libc_version, macos_version=macos_version
        ),
        free_threaded=free_threaded,
    )


def _str(value: object) -> str | None:
    return str(value) if isinstance(value, str) and value else None


def _described_tags(io: HostIO, version: str, free_threaded: bool) -> PythonReport:
    """Tags for a recorded host that holds only the interpreter's identity (hand-made)."""
    from torchenv.probes.cpu import normalise_arch, parse_libc
    from torchenv.probes.system import mac_version, os_name, uname

    u = uname(io)
    kind = os_name(u["system"])
    libc_version = macos = None
    if kind == "linux":
        try:
            libc_version = parse_libc(io.fact("libc", lambda: None))[1]
        except FactUnavailable:
            libc_version = None
    elif kind == "macos":
        macos = mac_version(io)[0]
    return describe(
        version,
        os_name=kind,
        arch=normalise_arch(u["machine"], kind),
        libc_version=libc_version,
        macos_version=macos,
        free_threaded=free_threaded,
    )


def from_fact(io: HostIO, value: Mapping[str, Any]) -> PythonReport:
    version = _str(value.get("version")) or "0.0.0"
    free_threaded = bool(value.get("free_threaded"))
    prefix, base = _str(value.get("prefix")), _str(value.get("base_prefix"))
    tags = value.get("platform_tags")
    if isinstance(tags, list) and value.get("interpreter_tag"):
        interpreter = str(value["interpreter_tag"])
        abis = tuple(str(t) for t in value.get("abi_tags") or ())
        platforms = tuple(str(t) for t in tags)
    else:
        described = _described_tags(io, version, free_threaded)
        interpreter, abis, platforms = (
            described.interpreter_tag,
            described.abi_tags,
            described.platform_tags,
        )
    return PythonReport(
        version=version,
        implementation=_str(value.get("implementation")) or "cpython",
        interpreter_tag=interpreter,
        abi_tags=abis,
        platform_tags=platforms,
        free_threaded=free_threaded,
        executable=_str(value.get("executable")),
        is_virtualenv=prefix is not None and base is not None and prefix != base,
        prefix=prefix,
    )


def _unknown(reason: str) -> PythonReport:
    return PythonReport(
        version="0.0.0",
        implementation="unknown",
        interpreter_tag="",
        abi_tags=(),
        platform_tags=(),
        reasons=(reason,),
    )


def probe(io: HostIO) -> PythonReport:
    """The interpreter torchenv runs in (live), or the recorded one (replay)."""
    try:
        value = io.fact("python", _live_python)
    except FactUnavailable as exc:
        return _unknown(f"python: {exc}")
    if not isinstance(value, Mapping) or not _str(value.get("version")):
        return _unknown("python: the recorded interpreter has no version")
    return from_fact(io, value)
