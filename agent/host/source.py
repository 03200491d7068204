"""Where a command's host comes from: this machine, a recording, a report file, or flags."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torchenv.agent.base.errors import HostError

if TYPE_CHECKING:  # the report's types load with the probe, not with the options (early.py)
    from collections.abc import Callable

    from torchenv.agent.base.options import ProbeOptions
    from torchenv.probes.hostio import HostIO
    from torchenv.probes.report import AmdGpu, HostReport

ARCH_ALIASES = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "x86_64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "arm64",
}
OS_CHOICES = ("linux", "windows", "macos")
DESCRIBED_GLIBC = "2.28"  # a described Linux target: the manylinux_2_28 floor of current torch
# Wraps the live probe's HostIO when set (agent/cli/fastpath_write.py notes what the probe reads).
live_io_watch: Callable[[HostIO], HostIO] | None = None


@dataclass(frozen=True)
class HostFlags:
    """Facts given on the command line; each replaces what the probe or recording said."""

    os: str | None = None
    arch: str | None = None
    python: str | None = None
    driver: str | None = None
    gpus: tuple[str, ...] = ()
    rocm_gfx: tuple[str, ...] = ()
    xpu: bool = False
    macos: str | None = None
    glibc: str | None = None  # a Linux target's glibc (from --python-platform)

    def describes_a_target(self) -> bool:
        """OS, architecture and Python given: a whole other machine, not this one changed."""
        return bool(self.os and self.arch and self.python)

    def any(self) -> bool:
        return any(
            (
                self.os,
                self.arch,
                self.python,
                self.driver,
                self.gpus,
                self.rocm_gfx,
                self.xpu,
                self.macos,
                self.glibc,
            )
        )


@dataclass(frozen=True)
class HostSource:
    """Which host a command works for: a recording (--replay), a report file (--host-report)
    or this machine, with the facts given on the command line on top."""

    replay: Path | None = None
    host_report: Path | None = None
    flags: HostFlags = HostFlags()

    @property
    def devices_here(self) -> bool:
        """Only a live probe of this machine has its devices here to exercise."""
        return self.replay is None and self.host_report is None and not self.flags.any()

    def load(self, probe: ProbeOptions) -> HostReport:
        """The HostReport this source describes (this machine when nothing is given)."""
        return load_host(
            replay=self.replay, host_report=self.host_report, flags=self.flags,
            **probe.as_kwargs(),
        )  # fmt: skip


def load_host(
    *,
    replay: Path | None = None,
    host_report: Path | None = None,
    record: Path | None = None,
    flags: HostFlags | None = None,
    disk_path: str | None = None,
    command_timeout: float = 5.0,
    cache_dir: str | None = None,
) -> HostReport:
    """The HostReport a command works for. Raises HostError for unusable inputs."""
    from torchenv.probes import (
        OVERRIDE_VARIABLES,
        LiveIO,
        RecordingIO,
        ReplayIO,
        probe_host,
    )
    from torchenv.probes.hostio import OverlayEnvIO

    if replay is not None and host_report is not None:
        raise HostError(
            "--replay and --host-report both describe the host", hint="give only one of them"
        )
    if host_report is not None:
        report = read_host_report(host_report)
    elif replay is not None:
        try:
            io = ReplayIO(replay)
        except (OSError, ValueError) as exc:
            raise HostError(
                f"cannot replay {replay}: {exc}",
                hint="pass a directory written by `torchenv probe --record DIR`",
            ) from exc
        # Overrides set for this run apply on top of the recording; the report shows them.
        given = {k: os.environ[k] for k in OVERRIDE_VARIABLES if os.environ.get(k)}
        replayed: HostIO = OverlayEnvIO(io, given) if given else io
        try:
            report = probe_host(replayed, disk_path=disk_path, command_timeout=command_timeout)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise HostError(  # a recording is input: a value of the wrong shape is its fault
                f"the recording {replay} holds a value of the wrong shape "
                f"({type(exc).__name__}: {exc})",
                hint="record the host again with `torchenv probe --record DIR`",
            ) from exc
    elif record is None and flags is not None and flags.describes_a_target():
        report = _blank_host(flags)  # another machine: nothing here is worth probing
    elif record is not None:
        try:
            record.mkdir(parents=True, exist_ok=True)
            if any(record.iterdir()):
                raise HostError(
                    f"{record} is not empty", hint="record into a new or empty directory"
                )
            recorder = RecordingIO(LiveIO(), record)
        except OSError as exc:
            raise HostError(
                f"cannot record into {record}: {exc.strerror or exc}",
                hint="choose a directory you can write",
            ) from exc
        report = probe_host(
            recorder,
            disk_path=disk_path,
            command_timeout=command_timeout,
            cache_dir=_live_cache_dir(cache_dir),
        )
        try:
            recorder.save()
        except OSError as exc:
            from torchenv.agent.base.errors import os_error

            raise HostError(
                f"cannot record into {record}: {exc.strerror or exc}",
                hint=os_error("record into", record, exc).hint,
                details={"path": str(record), "errno": exc.errno},
            ) from exc
    else:
        live: HostIO = LiveIO()
        report = probe_host(
            live if live_io_watch is None else live_io_watch(live),
            disk_path=disk_path,
            command_timeout=command_timeout,
            cache_dir=_live_cache_dir(cache_dir),
        )
    if flags is not None and flags.any():
        report = describe(report, flags)
    return report


def _blank_host(flags: HostFlags) -> HostReport:
    """A host with only what the flags say; `describe` then fills in the rest."""
    from torchenv.agent.host.python import target_python
    from torchenv.probes.report import CpuReport, HostReport, SystemReport

    os_name = flags.os or "linux"
    linux = os_name == "linux"
    glibc = (flags.glibc or DESCRIBED_GLIBC) if linux else None
    arch = ARCH_ALIASES.get((flags.arch or "x86_64").lower(), "x86_64")
    return HostReport(
        system=SystemReport(os=os_name, reasons=("described by command-line flags",)),
        cpu=CpuReport(
            arch=arch,
            machine=flags.arch or arch,
            libc="glibc" if linux else None,
            libc_version=glibc,
        ),
        python=target_python(
            flags.python or "3.12",
            os_name=os_name,
            arch=arch,
            libc_version=glibc,
            macos_version=flags.macos,
        ),
    )


def _live_cache_dir(given: str | None) -> str | None:
    """The cache for slow per-boot answers; only off Linux is there one to keep."""
    running_on = sys.platform  # a variable, so type checkers keep both branches
    if given is not None or running_on.startswith("linux"):
        return given
    from torchenv.agent.base.settings import BY_KEY

    return str(BY_KEY["cache-dir"].default(os.environ))


def read_host_report(path: Path) -> HostReport:
    from torchenv.agent.base.fsutil import read_bounded
    from torchenv.agent.base.limits import MAX_HOST_REPORT
    from torchenv.probes.report import HostReport

    try:
        data = json.loads(read_bounded(path, MAX_HOST_REPORT, "host report"))
        return HostReport.from_json(data)
    except OSError as exc:
        raise HostError(
            f"cannot read {path}: {exc.strerror or exc}",
            hint="pass the file written by `torchenv probe --json > FILE`",
        ) from exc
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise HostError(
            f"{path} is not a torchenv host report: {exc}",
            hint="write one with `torchenv probe --json > FILE`",
        ) from exc


def parse_gfx(name: str) -> AmdGpu:
    """ "gfx90a" -> gfx_target_version 90010; the reverse of the KFD encoding."""
    from torchenv.probes import amd

    gpu = amd.parse_gfx(name)
    if gpu is None:
        raise HostError(
            f"{name!r} is not an AMD gfx target", hint="use names like gfx942, gfx90a or gfx1100"
        )
    return dataclasses.replace(gpu, name="given on the command line")


def _check_cc(value: str) -> str:
    if not re.fullmatch(r"\d{1,2}\.\d", value.strip()):
        raise HostError(
            f"{value!r} is not a compute capability",
            hint="use MAJOR.MINOR, e.g. --gpu 8.6 (see `nvidia-smi --query-gpu="
            "compute_cap --format=csv`)",
        )
    return value.strip()


# ---------------------------------------------------------------- --python


def describe(report: HostReport, flags: HostFlags) -> HostReport:
    """Replace the facts the flags name. A different OS starts without the base's devices."""
    from torchenv.agent.host.python import target_python
    from torchenv.probes import python as python_probe
    from torchenv.probes.report import (
        AmdReport,
        AppleReport,
        IntelGpu,
        IntelReport,
        NvidiaGpu,
        NvidiaReport,
        NvidiaState,
    )

    system, cpu, apple = report.system, report.cpu, report.apple
    nvidia, amd, intel = report.nvidia, report.amd, report.intel
    os_name = flags.os or ("macos" if flags.macos else system.os)
    if os_name not in OS_CHOICES:
        raise HostError(f"unknown OS {os_name!r}", hint=f"use one of {', '.join(OS_CHOICES)}")
    if os_name != system.os:
        nvidia, amd, intel, apple = NvidiaReport(), AmdReport(), IntelReport(), AppleReport()
        libc, libc_version = ("glibc", DESCRIBED_GLIBC) if os_name == "linux" else (None, None)
        cpu = dataclasses.replace(cpu, libc=libc, libc_version=libc_version)
        system = dataclasses.replace(
            system, os=os_name, os_release=None, kernel=None, container=None, wsl=None
        )
    if flags.glibc and os_name == "linux":
        cpu = dataclasses.replace(cpu, libc="glibc", libc_version=flags.glibc)
    arch = cpu.arch
    if flags.arch:
        arch = ARCH_ALIASES.get(flags.arch.lower(), "")
        if not arch:
            raise HostError(
                f"unknown architecture {flags.arch!r}", hint="use x86_64, aarch64 or arm64"
            )
    if os_name == "macos" and arch == "aarch64":
        arch = "arm64"
    if os_name != "macos" and arch == "arm64":
        arch = "aarch64"
    cpu = dataclasses.replace(cpu, arch=arch, machine=flags.arch or cpu.machine)

    if flags.driver or flags.gpus:
        if flags.driver and not re.fullmatch(r"\d{3,4}(\.\d+){1,2}", flags.driver):
            raise HostError(
                f"{flags.driver!r} is not an NVIDIA driver version",
                hint="use the form 580.95.05 (see `nvidia-smi`)",
            )
        gpus = (
            tuple(
                NvidiaGpu(
                    index=i, compute_capability=_check_cc(cc), name="given on the command line"
                )
                for i, cc in enumerate(flags.gpus)
            )
            if flags.gpus
            else nvidia.gpus
        )
        driver = flags.driver or nvidia.driver_version
        nvidia = NvidiaReport(
            state=NvidiaState.OK,
            driver_version=driver,
            cuda_driver_version=None if flags.driver else nvidia.cuda_driver_version,
            gpus=gpus,
            source="flags",
            reasons=() if driver else ("no driver version given; pass --driver",),
        )
    if flags.rocm_gfx:
        amd = AmdReport(
            kfd_present=True,
            rocm_version=amd.rocm_version,
            gpus=tuple(parse_gfx(g) for g in flags.rocm_gfx),
            source="flags",
        )
    if flags.xpu:
        intel = IntelReport(
            gpus=(
                IntelGpu(pci_address="flags", device_id="0x0000", name="given on the command line"),
            )
        )
    if os_name == "macos":
        apple = AppleReport(
            is_macos=True,
            macos_version=flags.macos or apple.macos_version or "14.0",
            apple_silicon=arch == "arm64",
            rosetta=False,
            chip=apple.chip,
            mps_capable=arch == "arm64",
        )
    python = report.python
    if flags.python:
        python = target_python(
            flags.python,
            os_name=os_name,
            arch=arch,
            libc_version=cpu.libc_version,
            macos_version=apple.macos_version,
        )
    elif flags.os or flags.arch or flags.macos or flags.glibc:
        python = python_probe.describe(
            python.minor,
            os_name=os_name,
            arch=arch,
            libc_version=cpu.libc_version,
            macos_version=apple.macos_version,
            free_threaded=python.free_threaded,
        )
    given = {k: str(v) for k, v in dataclasses.asdict(flags).items() if v not in (None, (), False)}
    return dataclasses.replace(
        report,
        system=system,
        cpu=cpu,
        python=python,
        nvidia=nvidia,
        amd=amd,
        intel=intel,
        apple=apple,
        overrides={**report.overrides, **{f"--{k}": v for k, v in given.items()}},
    )
