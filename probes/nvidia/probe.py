"""The NVIDIA probe: Tegra, else NVML or nvidia-smi, else the fallbacks; visibility, overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchenv.probes.hostio import FactUnavailable, HostIO, read_optional
from torchenv.probes.nvidia.context import Found, ProbeRun
from torchenv.probes.nvidia.fallbacks import (
    Kernel,
    check_kernel,
    fill_from_smi,
    from_kernel,
    from_pci,
    kernel_driver,
    smi_rows,
    smi_versions,
)
from torchenv.probes.nvidia.nvml import live_snapshot, nvml_error_reason, report_from_snapshot
from torchenv.probes.nvidia.overrides import ENV_CC, ENV_DRIVER, UV_ENV_DRIVER, apply_overrides
from torchenv.probes.nvidia.parsers import parse_tegra_release
from torchenv.probes.nvidia.visibility import apply_visibility
from torchenv.probes.report import NvidiaReport, NvidiaState

PROCFS_DIR = "/proc/driver/nvidia"
WSL_LIB_DIR = "/usr/lib/wsl/lib"
TEGRA_RELEASE = "/etc/nv_tegra_release"
DT_MODEL = "/proc/device-tree/model"
DT_COMPATIBLE = "/proc/device-tree/compatible"


def probe(
    io: HostIO, *, os_name: str, container: str | None, command_timeout: float = 5.0
) -> NvidiaReport:
    """The NVIDIA stack of the host behind `io`. Never raises for a broken source."""
    run = ProbeRun(io, command_timeout, container)
    if os_name == "linux":
        found = _detect_linux(run)
    elif os_name == "windows":
        found = _detect_windows(run)
    else:
        found = Found(NvidiaReport())
    report = apply_visibility(
        found.report,
        nvidia_visible=io.getenv("NVIDIA_VISIBLE_DEVICES"),
        cuda_visible=io.getenv("CUDA_VISIBLE_DEVICES"),
        in_container=container is not None,
        mig_devices=found.mig_devices,
        device_order=io.getenv("CUDA_DEVICE_ORDER"),
    )
    source = ENV_DRIVER if io.getenv(ENV_DRIVER) else UV_ENV_DRIVER
    return apply_overrides(
        report, driver=io.getenv(source), compute_capability=io.getenv(ENV_CC),
        driver_source=source,
    )  # fmt: skip


def _detect_windows(run: ProbeRun) -> Found:
    windir = run.io.getenv("SystemRoot") or "C:/Windows"
    program_files = run.io.getenv("ProgramFiles") or "C:/Program Files"
    dlls = (f"{windir}/System32/nvml.dll", f"{program_files}/NVIDIA Corporation/NVSMI/nvml.dll")
    if not any(run.io.exists(p) for p in dlls):
        return Found(NvidiaReport())
    found, _ = _from_nvml_or_smi(run, "nvidia-smi", kernel=None)
    return found or run.done(NvidiaReport(state=NvidiaState.ERROR))


def _detect_linux(run: ProbeRun) -> Found:
    tegra = _tegra(run)
    if tegra is not None:
        return run.done(tegra)
    io = run.io
    module = io.exists("/sys/module/nvidia") or io.exists(PROCFS_DIR)
    wsl = io.exists(f"{WSL_LIB_DIR}/libnvidia-ml.so.1")
    device_node = io.exists("/dev/nvidiactl")
    if not (module or wsl or device_node):
        return from_pci(run, evidence=False)
    kernel = kernel_driver(run) if module else None
    smi = (
        f"{WSL_LIB_DIR}/nvidia-smi"
        if wsl and io.exists(f"{WSL_LIB_DIR}/nvidia-smi")
        else "nvidia-smi"
    )
    found, nvml_error = _from_nvml_or_smi(run, smi, kernel=kernel)
    if found is not None:
        return found
    if module:
        return from_kernel(run, kernel, nvml_error)
    return from_pci(run, evidence=True)


def _tegra(run: ProbeRun) -> NvidiaReport | None:
    release_text, _ = read_optional(run.io, TEGRA_RELEASE)
    compatible, _ = read_optional(run.io, DT_COMPATIBLE)
    if release_text is None and "nvidia,tegra" not in (compatible or ""):
        return None
    model = run.read(DT_MODEL)
    release = parse_tegra_release(release_text) if release_text is not None else None
    if release_text is not None and release is None:
        run.notes.append(f"{TEGRA_RELEASE}: no '# R<major> (release), REVISION: ...' line")
    return NvidiaReport(
        state=NvidiaState.TEGRA,
        source="tegra",
        tegra_model=model.strip("\x00 \n") or None if model is not None else None,
        tegra_release=release,
    )


def _nvml(run: ProbeRun) -> Mapping[str, Any] | None:
    try:
        snap = run.io.fact("nvml", live_snapshot)
    except FactUnavailable as exc:
        run.notes.append(f"NVML: {exc}")
        return None
    if not isinstance(snap, dict):
        run.notes.append("NVML: the recorded answer is not an object")
        return None
    return snap


def _from_nvml_or_smi(
    run: ProbeRun, smi: str, *, kernel: Kernel | None
) -> tuple[Found | None, str | None]:
    """NVML, then nvidia-smi; (None, NVML's error) when neither enumerates the GPUs."""
    snap = _nvml(run)
    error = None if snap is None else snap.get("error")
    if snap is not None and error is None:
        report, migs = report_from_snapshot(snap)
        report = fill_from_smi(run, smi, report)
        check_kernel(run, report.driver_version, kernel)
        return run.done(report, migs), None
    if error is not None:
        run.notes.append(
            nvml_error_reason(
                str(error),
                str(snap.get("message", "")) if snap else "",
                in_container=run.container is not None,
            )
        )
    rows = smi_rows(run, smi)
    if not rows:
        return None, None if error is None else str(error)
    drivers = {r.driver_version for r in rows if r.driver_version}
    driver = drivers.pop() if len(drivers) == 1 else None
    _, cuda = smi_versions(run, smi)
    check_kernel(run, driver, kernel)
    report = NvidiaReport(
        state=NvidiaState.OK,
        driver_version=driver,
        cuda_driver_version=cuda,
        gpus=tuple(r.gpu for r in rows),
        source="nvidia-smi",
    )
    return run.done(report), None
