"""One module per source of facts about a host, composed into a HostReport; record and replay."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from torchenv.probes.hostio import HostIO, LiveIO, RecordingIO, ReplayIO

if TYPE_CHECKING:  # the report's types load with the probe (hostio's limits load without)
    from torchenv.probes.report import HostReport

__all__ = [
    "OVERRIDE_VARIABLES",
    "HostIO",
    "LiveIO",
    "RecordingIO",
    "ReplayIO",
    "probe_host",
]

# Variables that replace what the probes read; a report lists those in force. uv's names
# come after torchenv's: where both are set, the TORCHENV_ one wins.
OVERRIDE_VARIABLES = (
    "TORCHENV_CUDA_DRIVER_VERSION",
    "TORCHENV_GPU_COMPUTE_CAPABILITY",
    "TORCHENV_ROCM_GFX",
    "UV_CUDA_DRIVER_VERSION",
    "UV_AMD_GPU_ARCHITECTURE",
)


def probe_host(
    io: HostIO | None = None,
    *,
    disk_path: str | None = None,
    command_timeout: float = 5.0,
    cache_dir: str | None = None,
) -> HostReport:
    """Read every source through `io` (the running machine by default). Never raises on a
    missing or broken source: each becomes a reason in its section of the report.
    `cache_dir` keeps answers that cannot change before a reboot (py-cpuinfo's, off Linux)."""
    from torchenv.probes import amd, apple, cpu, intel, nvidia, python, system
    from torchenv.probes.report import HostReport

    io = LiveIO() if io is None else io
    sys_report = system.probe(io, disk_path=disk_path)
    cpu_report = cpu.probe(
        io,
        os_name=sys_report.os,
        cache_path=os.path.join(cache_dir, "cpuinfo.json") if cache_dir else None,
        boot_id=sys_report.boot_id,
    )
    apple_report = apple.probe(io, os_name=sys_report.os, command_timeout=command_timeout)
    nvidia_report = nvidia.probe(
        io, os_name=sys_report.os, container=sys_report.container, command_timeout=command_timeout
    )
    amd_report = amd.probe(io, os_name=sys_report.os)
    intel_report = intel.probe(io, os_name=sys_report.os)
    python_report = python.probe(io)
    overrides = {name: value for name in OVERRIDE_VARIABLES if (value := io.getenv(name))}
    return HostReport(
        system=sys_report,
        cpu=cpu_report,
        python=python_report,
        nvidia=nvidia_report,
        amd=amd_report,
        intel=intel_report,
        apple=apple_report,
        overrides=overrides,
    )
