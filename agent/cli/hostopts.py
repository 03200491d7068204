"""The host options every command that works for a target shares (--replay, --os, --gpu, ...)."""

from __future__ import annotations

import typer

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
