"""The host options of one command line, parsed (no typer: the plain `select` reads them too)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torchenv.agent.base.errors import UsageError

if TYPE_CHECKING:
    from torchenv.agent.host.source import HostSource


def host_source(
    *,
    replay: Path | None = None,
    host_report: Path | None = None,
    os: str | None = None,
    arch: str | None = None,
    python: str | None = None,
    driver: str | None = None,
    gpu: list[str] | None = None,
    rocm_gfx: list[str] | None = None,
    xpu: bool = False,
    macos: str | None = None,
    python_version: str | None = None,
    python_platform: str | None = None,
) -> HostSource:
    """The host options of one command line, parsed: where the host comes from, and the facts
    given on top of it. UsageError where two of them name the same fact."""
    from torchenv.agent.host.source import HostFlags, HostSource

    python = _one_python(python, python_version)
    glibc = None
    if python_platform is not None:
        import os as _os

        from torchenv.agent.host.pyplatform import parse_python_platform

        if os or arch:
            raise UsageError(
                "--python-platform names the OS and the architecture, and so does "
                + " and ".join(n for n, v in (("--os", os), ("--arch", arch)) if v),
                hint="give --python-platform alone, or --os and --arch",
            )
        platform = parse_python_platform(python_platform, _os.environ)
        os, arch, glibc = platform.os, platform.arch, platform.glibc
        macos = macos or platform.macos
    flags = HostFlags(
        os=os, arch=arch, python=python, driver=driver, gpus=tuple(gpu or ()),
        rocm_gfx=tuple(rocm_gfx or ()), xpu=xpu, macos=macos, glibc=glibc,
    )  # fmt: skip
    return HostSource(replay=replay, host_report=host_report, flags=flags)


def _one_python(python: str | None, python_version: str | None) -> str | None:
    """--python (a version or an interpreter) or --python-version (a version only)."""
    if python_version is None:
        return python
    from torchenv.agent.host.python import parse_python_version

    if python is not None:
        raise UsageError(
            "--python and --python-version both name the target Python",
            hint="give one: --python-version 3.12, or --python 3.12 or an interpreter",
        )
    if parse_python_version(python_version) is None:
        raise UsageError(
            f"--python-version {python_version!r} is not a Python version",
            hint="give a version such as 3.12 or 3.13t; name an interpreter with --python",
        )
    return python_version
