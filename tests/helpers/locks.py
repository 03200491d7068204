"""Shared pieces for the sync, verify and auto tests: real wheels, real locks, a host."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from indexsim.catalog import torch_stub
from indexsim.wheels import WheelSpec, build_wheel

from torchenv.agent.lock.pylock import LockedPackage, LockedWheel, PyLock, write_pylock
from torchenv.probes.report import CpuReport, HostReport, PythonReport, SystemReport

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
PYTAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"


def cpu_host(python: str = PY, arch: str = "x86_64") -> HostReport:
    """A CPU-only Linux host whose interpreter is this one's X.Y."""
    return HostReport(
        system=SystemReport(os="linux"),
        cpu=CpuReport(arch=arch, machine=arch, libc="glibc", libc_version="2.36"),
        python=PythonReport(
            version=f"{python}.0",
            implementation="cpython",
            interpreter_tag=PYTAG,
            abi_tags=(PYTAG, "abi3", "none"),
            platform_tags=("linux_x86_64",),
        ),
    )


def torch_spec(version: str = "2.13.0+cpu", cuda: str | None = None) -> WheelSpec:
    return WheelSpec("torch", version, "py3-none-any", files=torch_stub(version, cuda, ["sm_90"]))


def plain_spec(name: str, version: str = "1.0") -> WheelSpec:
    module = name.replace("-", "_")
    return WheelSpec(name, version, "py3-none-any", files={f"{module}/__init__.py": "X = 1\n"})


def build_lock(
    directory: Path,
    specs: Iterable[WheelSpec],
    *,
    host: HostReport,
    backend: str = "cpu",
    url_for: Any = None,
    name: str = "pylock.toml",
) -> Path:
    """Build the wheels under directory/wheels and a lock naming them (file:// by default)."""
    wheels = [(s.project, s.version, build_wheel(s, directory / "wheels")) for s in specs]
    return lock_wheels(directory, wheels, host=host, backend=backend, url_for=url_for, name=name)


def lock_wheels(
    directory: Path,
    wheels: Iterable[tuple[str, str, Path]],
    *,
    host: HostReport,
    backend: str = "cpu",
    url_for: Any = None,
    name: str = "pylock.toml",
) -> Path:
    """A lock at directory/name naming these (project, version, wheel file)s for `host`."""
    packages = []
    for project, version, path in wheels:
        data = path.read_bytes()
        url = url_for(path) if url_for else path.resolve().as_uri()
        packages.append(
            LockedPackage(
                name=project,
                version=version,
                index="file://local",
                wheels=(
                    LockedWheel(
                        name=path.name,
                        url=url,
                        size=len(data),
                        sha256=hashlib.sha256(data).hexdigest(),
                    ),
                ),
            )
        )
    lock = PyLock(
        packages=tuple(packages),
        requires_python=f">={PY}",
        tool_torchenv={
            "torchenv-version": "0.1.0",
            "fingerprint": host.fingerprint(),
            "target": host.target_facts(),
            "backend": backend,
            "python": host.python.minor,
            "requirements": ["torch"],
        },
    )
    out = directory / name
    write_pylock(out, lock)
    return out
