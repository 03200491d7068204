"""The host options every command that works for a target shares (--replay, --os, --gpu, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from torchenv.agent.base.errors import UsageError

if TYPE_CHECKING:
    from torchenv.agent.host.source import HostSource

REPLAY = typer.Option(None, "--replay", metavar="DIR", help="Work for the host recorded in DIR.")
HOST_REPORT = typer.Option(
    None, "--host-report", metavar="FILE", help="Work for the host in a `probe --json` file."
)
OS = typer.Option(None, "--os", help="linux, windows or macos.")
ARCH = typer.Option(None, "--arch", help="x86_64, aarch64 or arm64.")
PYTHON = typer.Option(
    None,
    "--python",
    metavar="VERSION|PATH",
    help="The target Python, as uv takes it: a version (3.12, 3.13t) or an interpreter "
    "(/usr/bin/python3, python3.12) that is asked for its version and platform.",
)
PYTHON_VERSION = typer.Option(
    None,
    "--python-version",
    metavar="VERSION",
    help="The target Python version, as in uv: 3.12, 3.13t.",
)
PYTHON_PLATFORM = typer.Option(
    None,
    "--python-platform",
    metavar="PLATFORM",
    help="The target platform with uv's names (instead of --os/--arch): linux, macos, windows, "
    "x86_64-manylinux_2_28, aarch64-unknown-linux-gnu, aarch64-apple-darwin, "
    "x86_64-pc-windows-msvc, ...",
)
DRIVER = typer.Option(None, "--driver", help="NVIDIA driver, e.g. 580.95.05.")
GPU = typer.Option(None, "--gpu", help="A GPU's compute capability (repeatable), e.g. 8.6.")
ROCM_GFX = typer.Option(None, "--rocm-gfx", help="An AMD gfx target (repeatable), e.g. gfx1100.")
XPU = typer.Option(False, "--xpu", help="The host has an Intel GPU.")
MACOS = typer.Option(None, "--macos", help="The macOS version, e.g. 14.5.")
CHANNEL = typer.Option(None, "--channel", help="stable, test or nightly.")
BACKEND = typer.Option(
    None,
    "--backend",
    "--torch-backend",
    metavar="BACKEND",
    help="auto, or force one: cpu, cu126, rocm6.4, xpu, mps (uv's --torch-backend).",
)
INDEX_URL = typer.Option(
    None,
    "--index-url",
    metavar="URL",
    help="The index for everything but the torch family (default: pip's or uv's, else PyPI).",
)
TORCH_INDEX_URL = typer.Option(
    None,
    "--torch-index-url",
    metavar="URL",
    help="The base of the PyTorch index (default https://download.pytorch.org/whl).",
)


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
    from torchenv.agent.host.python import parse_python_version

    if python_version is None:
        return python
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
