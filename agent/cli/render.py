"""Readable text for reports: pure functions from data to lines, no printing."""

from __future__ import annotations

from torchenv.probes.report import HostReport, NvidiaState


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} TiB"


def host_summary(report: HostReport) -> list[str]:
    s, c, p = report.system, report.cpu, report.python
    where = ", ".join(
        x
        for x in (
            s.os_release,
            f"container: {s.container}" if s.container else "",
            f"WSL{s.wsl}" if s.wsl else "",
            f"cloud: {s.cloud}" if s.cloud else "",
        )
        if x
    )
    lines = [f"host       {s.os} {c.arch}" + (f" ({where})" if where else "")]
    libc = f"; {c.libc} {c.libc_version}" if c.libc else ""
    flags = " ".join(c.flags)
    lines.append(
        f"cpu        {c.model or c.vendor or 'unknown'}, {c.logical_cores or '?'} "
        f"cores{libc}" + (f"; {flags}" if flags else "")
    )
    lines.append(
        f"python     {p.version} {p.implementation} {p.interpreter_tag}"
        + (" free-threaded" if p.free_threaded else "")
        + (" (virtualenv)" if p.is_virtualenv else "")
        + (f" {p.executable}" if p.executable else "")
    )
    lines.extend(_nvidia_lines(report))
    a = report.amd
    if a.gpus or a.kfd_present or a.rocm_version:
        rocm = a.rocm_version or "not installed"
        lines.append(f"amd        ROCm {rocm}, /dev/kfd {'present' if a.kfd_present else 'absent'}")
        lines.extend(
            f"  gpu {g.node:<5} {g.gfx}" + (f"  {g.name}" if g.name else "") for g in a.gpus
        )
    for g in report.intel.gpus:
        lines.append(f"intel      {g.name or 'GPU'} {g.device_id} at {g.pci_address}")
    ap = report.apple
    if ap.is_macos:
        lines.append(
            f"apple      macOS {ap.macos_version or '?'}, {ap.chip or '?'}"
            + (", Apple silicon" if ap.apple_silicon else ", Intel")
            + (", under Rosetta" if ap.rosetta else "")
            + (", MPS capable" if ap.mps_capable else "")
        )
    lines.append(
        f"memory     {_fmt_bytes(s.memory_total_bytes)} total, "
        f"{_fmt_bytes(s.memory_available_bytes)} available; disk "
        f"{_fmt_bytes(s.disk_free_bytes)} free at {s.disk_path or '?'}"
    )
    for name, value in report.overrides.items():
        lines.append(f"override   {name}={value}")
    reasons = [
        (section, r)
        for section, rs in (
            ("system", s.reasons),
            ("cpu", c.reasons),
            ("python", p.reasons),
            ("nvidia", report.nvidia.reasons),
            ("amd", a.reasons),
            ("intel", report.intel.reasons),
            ("apple", ap.reasons),
        )
        for r in rs
    ]
    lines.extend(f"note       {section}: {r}" for section, r in reasons)
    lines.append(f"fingerprint {report.fingerprint()}")
    return lines


_STATE_TEXT = {
    NvidiaState.ABSENT: "no NVIDIA hardware",
    NvidiaState.NO_DRIVER: "NVIDIA hardware, no driver installed",
    NvidiaState.NOT_LOADED: "driver installed but not loaded",
    NvidiaState.NVML_MISSING: "driver loaded, NVML missing (container without 'utility'?)",
    NvidiaState.TEGRA: "Jetson/Tegra board",
    NvidiaState.ERROR: "the NVIDIA sources disagree or failed",
}


def _nvidia_lines(report: HostReport) -> list[str]:
    n = report.nvidia
    if n.state is NvidiaState.ABSENT and not n.gpus:
        return ["nvidia     none"]
    head = f"nvidia     driver {n.driver_version or '?'}"
    if n.cuda_driver_version:
        head += f" (CUDA {n.cuda_driver_version})"
    if n.source:
        head += f" via {n.source}"
    if n.state is not NvidiaState.OK:
        head += f"; {_STATE_TEXT.get(n.state, n.state.value)}"
    if n.tegra_model:
        head += f"; {n.tegra_model} {n.tegra_release or ''}".rstrip()
    lines = [head]
    for g in n.gpus:
        cc = f"sm {g.compute_capability}" if g.compute_capability else "sm ?"
        mem = f"{g.memory_total_mib} MiB" if g.memory_total_mib else ""
        mig = "MIG on" if g.mig_mode else ""
        parts = [p for p in (g.name or "GPU", cc, mem, mig, g.uuid or "") if p]
        lines.append(f"  gpu {g.index:<5} " + "  ".join(parts))
    if n.hidden_gpus:
        lines.append(f"  ({n.hidden_gpus} more hidden by *_VISIBLE_DEVICES)")
    return lines
