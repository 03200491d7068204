"""Shared helpers for the lock tests: recorded hosts described as other targets, stand-ins."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchenv.agent.host.source import HostFlags, load_host
from torchenv.agent.lock.resolvers.uv import find_uv
from torchenv.probes.report import HostReport

HOSTS = Path(__file__).parent / "hosts"


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
