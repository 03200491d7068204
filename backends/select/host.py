"""The host as selection sees it: platform, Python, libc and each vendor's GPUs."""

from __future__ import annotations

from dataclasses import dataclass, replace

from torchenv.backends.catalog import Build, Catalog
from torchenv.backends.vocabulary import Dotted, Kind, backend_order, dotted
from torchenv.probes.report import HostReport, NvidiaState


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU: its label in reasons, compute capability, the backends with SASS for it."""

    label: str  # "GPU 0 (NVIDIA GeForce RTX 5090, sm 12.0)"
    cc: Dotted | None
    sass_in: tuple[str, ...] = ()  # the backends that carry SASS for it, in any release


@dataclass(frozen=True)
class Nvidia:
    """The NVIDIA facts selection needs, or why CUDA cannot be used at all."""

    present: bool
    blocked: str | None  # a reason no CUDA build can run now
    unblock: str | None
    driver: Dotted | None
    driver_text: str | None
    cuda: Dotted | None  # newest CUDA the driver runs natively
    cuda_measured: bool  # from the driver itself, not derived from the version
    gpus: tuple[Gpu, ...]


@dataclass(frozen=True)
class Host:
    """The host facts selection needs: OS, platform, Python, libc and each vendor's GPUs."""

    os: str
    platform: str | None
    python: str
    free_threaded: bool
    glibc: Dotted | None
    musl: bool
    nvidia: Nvidia
    amd_gfx: tuple[str, ...]
    amd_ready: bool
    rocm: str | None
    intel: bool
    apple_silicon: bool
    macos: Dotted | None
    notes: tuple[str, ...]  # warnings about the host itself

    @property
    def python_label(self) -> str:
        """ "3.13t" for a free-threaded 3.13, else "3.13"."""
        return self.python + ("t" if self.free_threaded else "")


def _platform(report: HostReport) -> str | None:
    os_name, arch = report.system.os, report.cpu.arch
    if os_name == "macos":
        if report.apple.rosetta or arch == "x86_64":
            return "macos-x86_64"
        return "macos-arm64" if arch in ("arm64", "aarch64") else None
    key = f"{os_name}-{'aarch64' if arch == 'arm64' else arch}"
    return key if key in ("linux-x86_64", "linux-aarch64", "windows-x86_64") else None


def _parse(text: str | None) -> Dotted | None:
    if not text:
        return None
    try:
        return dotted(text)
    except ValueError:
        return None


def _cc(text: str | None) -> Dotted | None:
    value = _parse(text)
    return value if value is not None and len(value) == 2 else None


def _nvidia(report: HostReport, catalog: Catalog) -> Nvidia:
    nv = report.nvidia
    driver = _parse(nv.driver_version)
    measured = _parse(nv.cuda_driver_version)
    cuda = measured or (
        catalog.newest_cuda_for_driver(driver, report.system.os) if driver else None
    )
    gpus = tuple(
        Gpu(
            f"GPU {g.index} ({g.name + ', ' if g.name else ''}sm {g.compute_capability or '?'})",
            _cc(g.compute_capability),
        )
        for g in sorted(nv.gpus, key=lambda g: (_cc(g.compute_capability) or (), g.index))
    )
    present = nv.state is not NvidiaState.ABSENT or bool(nv.gpus)
    blocked, unblock = None, None
    if nv.state is NvidiaState.TEGRA or nv.tegra_model:
        blocked = (
            "Jetson/Tegra boards are not served by the standard PyTorch index; use "
            "NVIDIA's JetPack wheels for CUDA"
        )
        unblock = "install NVIDIA's Jetson wheels for your JetPack release"
    elif nv.state is NvidiaState.NO_DRIVER:
        blocked, unblock = "NVIDIA GPU present but no driver installed", "install the NVIDIA driver"
    elif nv.state is NvidiaState.NOT_LOADED:
        blocked = "the NVIDIA driver is installed but not loaded, so CUDA cannot run now"
        unblock = "load the NVIDIA driver (reboot or `modprobe nvidia`) and select again"
    elif not nv.gpus and nv.hidden_gpus:
        blocked = f"all {nv.hidden_gpus} NVIDIA GPUs are hidden by *_VISIBLE_DEVICES"
        unblock = "make a GPU visible (CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES)"
    elif present and driver is None and cuda is None:
        blocked, unblock = "the NVIDIA driver version is unknown", "pass --driver VERSION"
    ignored = [r for r in nv.reasons if r.endswith("; ignored")]  # a rejected override
    if blocked and ignored:
        blocked += " (" + "; ".join(ignored) + ")"
        unblock = f"{unblock}, or correct the override"
    return Nvidia(
        present, blocked, unblock, driver, nv.driver_version, cuda, measured is not None, gpus
    )


def _with_sass(nvidia: Nvidia, catalog: Catalog, platform: str | None) -> Nvidia:
    builds = [b for r in catalog.releases for b in r.builds(platform or "") if b.kind is Kind.CUDA]
    gpus = []
    for gpu in nvidia.gpus:
        cc = gpu.cc
        found = {b.backend for b in builds if cc is not None and covers(b, cc) == "sass"}
        gpus.append(replace(gpu, sass_in=tuple(sorted(found, key=backend_order))))
    return replace(nvidia, gpus=tuple(gpus))


def host_view(report: HostReport, catalog: Catalog) -> Host:
    notes = []
    nvidia = _with_sass(_nvidia(report, catalog), catalog, _platform(report))
    if nvidia.blocked:
        notes.append(nvidia.blocked)
    unknown = not nvidia.gpus or any(g.cc is None for g in nvidia.gpus)
    state = report.nvidia.state
    if nvidia.present and not nvidia.blocked and unknown and state is not NvidiaState.OK:
        notes.append(
            f"NVIDIA state is {report.nvidia.state.value}: GPUs could not be enumerated, "
            "so their compute capability is unknown"
        )
    if report.apple.rosetta:
        notes.append(
            "this Python runs under Rosetta (x86_64): it gets Intel-Mac wheels, the last "
            "being torch 2.2 without MPS; use an arm64 Python"
        )
    amd_ready = report.amd.kfd_present or report.amd.source == "flags"
    if report.amd.gpus and not amd_ready:
        notes.append("AMD GPU present but /dev/kfd is missing: the amdgpu driver is not loaded")
    libc = report.cpu.libc
    return Host(
        os=report.system.os,
        platform=_platform(report),
        python=report.python.minor,
        free_threaded=report.python.free_threaded,
        glibc=_parse(report.cpu.libc_version) if libc == "glibc" else None,
        musl=libc == "musl",
        nvidia=nvidia,
        amd_gfx=tuple(sorted({g.gfx for g in report.amd.gpus})),
        amd_ready=amd_ready,
        rocm=report.amd.rocm_version,
        intel=bool(report.intel.gpus),
        apple_silicon=bool(report.apple.apple_silicon),
        macos=_parse(report.apple.macos_version),
        notes=tuple(notes),
    )


def covers(build: Build, cc: Dotted) -> str | None:
    """ "sass", "ptx" or None: how the build carries code for a GPU of this capability."""
    for sass in build.sass:
        major, minor = dotted(sass)
        if major == cc[0] and minor <= cc[1]:
            return "sass"
    if any(dotted(p) <= cc for p in build.ptx):
        return "ptx"
    return None
