"""The host options every command that works for a target shares (--replay, --os, --gpu, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from torchenv.agent.host.source import HostFlags, HostSource

if TYPE_CHECKING:
    pass

REPLAY = typer.Option(None, "--replay", metavar="DIR", help="Work for the host recorded in DIR.")
HOST_REPORT = typer.Option(
    None, "--host-report", metavar="FILE", help="Work for the host in a `probe --json` file."
)
OS = typer.Option(None, "--os", help="linux, windows or macos.")
ARCH = typer.Option(None, "--arch", help="x86_64, aarch64 or arm64.")
PYTHON = typer.Option(None, "--python", help="The target Python, e.g. 3.12.")
DRIVER = typer.Option(None, "--driver", help="NVIDIA driver, e.g. 580.95.05.")
GPU = typer.Option(None, "--gpu", help="A GPU's compute capability (repeatable), e.g. 8.6.")
ROCM_GFX = typer.Option(None, "--rocm-gfx", help="An AMD gfx target (repeatable), e.g. gfx1100.")
XPU = typer.Option(False, "--xpu", help="The host has an Intel GPU.")
MACOS = typer.Option(None, "--macos", help="The macOS version, e.g. 14.5.")
CHANNEL = typer.Option(None, "--channel", help="stable, test or nightly.")
BACKEND = typer.Option(None, "--backend", help="auto, or force one: cpu, cu126, rocm6.4, xpu, mps.")


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
) -> HostSource:
    """The host options of one command line, parsed: where the host comes from, and the facts
    given on top of it."""
    flags = HostFlags(
        os=os, arch=arch, python=python, driver=driver, gpus=tuple(gpu or ()),
        rocm_gfx=tuple(rocm_gfx or ()), xpu=xpu, macos=macos,
    )  # fmt: skip
    return HostSource(replay=replay, host_report=host_report, flags=flags)
