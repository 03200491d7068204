"""One module per source of facts about a host, composed into a HostReport; record and replay."""

from __future__ import annotations

from torchenv.probes.hostio import HostIO, LiveIO, RecordingIO, ReplayIO
from torchenv.probes.report import HostReport

__all__ = ["HostIO", "HostReport", "LiveIO", "RecordingIO", "ReplayIO", "probe_host"]


def probe_host(
    io: HostIO | None = None, *, disk_path: str | None = None, command_timeout: float = 5.0
) -> HostReport:
    """Read every source through `io` (the running machine by default). Never raises on a
    missing or broken source: each becomes a reason in its section of the report."""
    from torchenv.probes import amd, apple, cpu, intel, nvidia, python, system

    io = LiveIO() if io is None else io
    sys_report = system.probe(io, disk_path=disk_path)
    cpu_report = cpu.probe(io, os_name=sys_report.os)
    apple_report = apple.probe(io, os_name=sys_report.os, command_timeout=command_timeout)
    nvidia_report = nvidia.probe(
        io, os_name=sys_report.os, container=sys_report.container, command_timeout=command_timeout
    )
    amd_report = amd.probe(io, os_name=sys_report.os)
    intel_report = intel.probe(io, os_name=sys_report.os)
    python_report = python.probe(io)
    overrides = {
        name: value
        for name in (
            "TORCHENV_CUDA_DRIVER_VERSION",
            "TORCHENV_GPU_COMPUTE_CAPABILITY",
            "TORCHENV_ROCM_GFX",
        )
        if (value := io.getenv(name))
    }
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
