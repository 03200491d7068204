"""Where NVML cannot answer: nvidia-smi, the kernel module (sysfs, procfs), PCI and modinfo."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torchenv.probes.hostio import HostIO, list_optional, read_optional
from torchenv.probes.nvidia.context import Found, ProbeRun
from torchenv.probes.nvidia.nvml import NVML_MISSING_ERRORS
from torchenv.probes.nvidia.parsers import (
    SMI_QUERY,
    SmiRow,
    normalise_bus_id,
    parse_driver_version,
    parse_gpu_information,
    parse_procfs_version,
    parse_smi_query,
    parse_smi_versions,
)
from torchenv.probes.report import NvidiaGpu, NvidiaReport, NvidiaState

NVIDIA_VENDOR = "0x10de"
PCI_DEVICES = "/sys/bus/pci/devices"
SYSFS_VERSION = "/sys/module/nvidia/version"
PROCFS_VERSION = "/proc/driver/nvidia/version"
PROCFS_GPUS = "/proc/driver/nvidia/gpus"
MODINFO_ARGV = ("modinfo", "-F", "version", "nvidia")
CC_HINT = (
    "compute capability unknown: set TORCHENV_GPU_COMPUTE_CAPABILITY (e.g. 8.6,9.0)"
    " or make NVML available"
)


@dataclass(frozen=True)
class Kernel:
    """The loaded NVIDIA module's driver version, and where it was read (sysfs, procfs)."""

    version: str | None
    source: str  # "sysfs" or "procfs"


def kernel_driver(run: ProbeRun) -> Kernel:
    """The loaded module's version: sysfs first, procfs when sysfs is missing or garbage."""
    for path, source, parse in (
        (SYSFS_VERSION, "sysfs", parse_driver_version),
        (PROCFS_VERSION, "procfs", parse_procfs_version),
    ):
        text = run.read(path)
        if text is None:
            continue
        version = parse(text)
        if version is not None:
            return Kernel(version, source)
        run.notes.append(f"{path}: no driver version in {text.strip()[:60]!r}")
    return Kernel(None, "sysfs")


def smi_rows(run: ProbeRun, smi: str) -> list[SmiRow]:
    if run.smi_dead:
        return []
    result = run.run([smi, *SMI_QUERY])
    if result is None:
        return []
    rows, problems = parse_smi_query(result.stdout)
    run.notes.extend(problems)
    if not rows:
        run.notes.append("nvidia-smi: listed no GPU")
    return rows


def smi_versions(run: ProbeRun, smi: str) -> tuple[str | None, str | None]:
    """(driver, CUDA) from `nvidia-smi --version`, else from the `nvidia-smi` header."""
    driver, cuda = None, None
    for argv in ([smi, "--version"], [smi]):
        if run.smi_dead:
            break
        result = run.run(argv)
        if result is not None:
            driver, cuda = parse_smi_versions(result.stdout)
            if cuda is not None:
                break
    if cuda is None:
        run.notes.append("nvidia-smi: no CUDA version reported")
    return driver, cuda


def fill_from_smi(run: ProbeRun, smi: str, report: NvidiaReport) -> NvidiaReport:
    """Ask nvidia-smi only for what NVML left unknown; note where the two disagree."""
    missing_cc = any(g.compute_capability is None for g in report.gpus)
    if report.cuda_driver_version is None and not run.smi_dead:
        driver, cuda = smi_versions(run, smi)
        if cuda is not None:
            run.notes.append(f"CUDA level {cuda} from nvidia-smi")
            report = dataclasses.replace(report, cuda_driver_version=cuda)
        _note_disagreement(run, "driver version", report.driver_version, driver)
    if not missing_cc and report.driver_version is not None:
        return report
    rows = smi_rows(run, smi)
    by_key = {(r.gpu.uuid or f"#{r.gpu.index}"): r for r in rows}
    gpus = []
    for gpu in report.gpus:
        row = by_key.get(gpu.uuid or f"#{gpu.index}")
        if row is None:
            gpus.append(gpu)
            continue
        _note_disagreement(
            run,
            f"GPU {gpu.index} compute capability",
            gpu.compute_capability,
            row.gpu.compute_capability,
        )
        if gpu.compute_capability is None and row.gpu.compute_capability is not None:
            run.notes.append(f"GPU {gpu.index}: compute capability from nvidia-smi")
            gpus.append(dataclasses.replace(gpu, compute_capability=row.gpu.compute_capability))
        else:
            gpus.append(gpu)
    if rows and len(rows) != len(report.gpus):
        run.notes.append(f"nvidia-smi lists {len(rows)} GPUs, NVML {len(report.gpus)}")
    smi_drivers = {r.driver_version for r in rows if r.driver_version}
    driver = report.driver_version
    for other in smi_drivers:
        _note_disagreement(run, "driver version", driver, other)
    if driver is None and len(smi_drivers) == 1:
        driver = smi_drivers.pop()
    return dataclasses.replace(report, gpus=tuple(gpus), driver_version=driver)


def _note_disagreement(run: ProbeRun, what: str, nvml: str | None, smi: str | None) -> None:
    if nvml is not None and smi is not None and nvml != smi:
        run.notes.append(f"nvidia-smi reports {what} {smi} but NVML {nvml}; NVML's is used")


def check_kernel(run: ProbeRun, driver: str | None, kernel: Kernel | None) -> None:
    if kernel is None or kernel.version is None or driver is None or kernel.version == driver:
        return
    run.notes.append(
        f"the loaded kernel module is {kernel.version} ({kernel.source}) but the "
        f"driver libraries are {driver}: reboot or reload the module"
    )


def from_kernel(run: ProbeRun, kernel: Kernel | None, nvml_error: str | None) -> Found:
    """The module is loaded but neither NVML nor nvidia-smi answered."""
    gpus = _procfs_gpus(run) or pci_gpus(run.io, run.notes)
    version = kernel.version if kernel else None
    if version is None:
        run.notes.append("the nvidia kernel module is loaded but its version cannot be read")
        state = NvidiaState.ERROR
    elif nvml_error is None or nvml_error in NVML_MISSING_ERRORS:
        state = NvidiaState.NVML_MISSING
    else:
        state = NvidiaState.ERROR
    if gpus:
        run.notes.append(
            CC_HINT
            if run.container is None
            else CC_HINT + " (add the `utility` capability to the container)"
        )
    report = NvidiaReport(
        state=state,
        driver_version=version,
        gpus=tuple(gpus),
        source=kernel.source if kernel and version else None,
    )
    return run.done(report)


def _procfs_gpus(run: ProbeRun) -> list[NvidiaGpu]:
    entries = run.listing(PROCFS_GPUS)
    gpus = []
    for index, entry in enumerate(sorted(entries)):
        text = run.read(f"{PROCFS_GPUS}/{entry}/information")
        info = parse_gpu_information(text) if text is not None else {}
        gpus.append(
            NvidiaGpu(
                index=index,
                name=info.get("name"),
                uuid=info.get("uuid"),
                pci_bus_id=info.get("pci_bus_id") or normalise_bus_id(entry),
            )
        )
    return gpus


def pci_gpus(io: HostIO, notes: list[str] | None = None) -> list[NvidiaGpu]:
    """NVIDIA display-class devices (vendor 0x10de, class 0x03xxxx) on the PCI bus; why the
    bus could not be listed goes to `notes`."""
    addresses, problem = list_optional(io, PCI_DEVICES)
    if problem and notes is not None:
        notes.append(problem)
    gpus: list[NvidiaGpu] = []
    for address in addresses:
        base = f"{PCI_DEVICES}/{address}"
        vendor, _ = read_optional(io, f"{base}/vendor")
        if vendor is None or vendor.strip().lower() != NVIDIA_VENDOR:
            continue
        klass, _ = read_optional(io, f"{base}/class")
        if klass is None or not klass.strip().lower().startswith("0x03"):
            continue
        device, _ = read_optional(io, f"{base}/device")
        name = f"NVIDIA PCI device {device.strip().lower()}" if device else None
        gpus.append(
            NvidiaGpu(index=len(gpus), name=name, pci_bus_id=normalise_bus_id(address) or address)
        )
    return gpus


def from_pci(run: ProbeRun, *, evidence: bool) -> Found:
    """No loaded module: NVIDIA hardware with the driver installed, not installed, or none."""
    gpus = pci_gpus(run.io, run.notes)
    if not gpus:
        if evidence:
            run.notes.append("signs of an NVIDIA driver, but no source could list a GPU")
            return run.done(NvidiaReport(state=NvidiaState.ERROR))
        return run.done(NvidiaReport())
    result = run.run(MODINFO_ARGV)
    installed = parse_driver_version(result.stdout) if result is not None else None
    if installed is not None:
        run.notes.append(
            f"driver {installed} is installed but its kernel module is not loaded "
            "(first boot? reboot or `modprobe nvidia`)"
        )
        report = NvidiaReport(
            state=NvidiaState.NOT_LOADED,
            driver_version=installed,
            gpus=tuple(gpus),
            source="modinfo",
        )
    else:
        run.notes.append("NVIDIA GPU on the PCI bus but no NVIDIA driver installed")
        report = NvidiaReport(state=NvidiaState.NO_DRIVER, gpus=tuple(gpus), source="pci")
    run.notes.append(
        "compute capability unknown until the driver is loaded: set "
        "TORCHENV_GPU_COMPUTE_CAPABILITY (e.g. 8.6,9.0) to plan for it"
    )
    return run.done(report)
