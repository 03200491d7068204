"""Hosts described in a line for the selection tests: HostReports built from a few facts."""

from __future__ import annotations

from torchenv.probes.report import (
    AmdGpu,
    AmdReport,
    AppleReport,
    CpuReport,
    HostReport,
    IntelGpu,
    IntelReport,
    NvidiaGpu,
    NvidiaReport,
    NvidiaState,
    PythonReport,
    SystemReport,
)


def gfx_version(name: str) -> int:
    digits = name[3:]
    return int(digits[:-2]) * 10000 + int(digits[-2], 16) * 100 + int(digits[-1], 16)


def make_host(
    *,
    os: str = "linux",
    arch: str = "x86_64",
    python: str = "3.12",
    free_threaded: bool = False,
    driver: str | None = None,
    cuda: str | None = None,
    gpus: tuple[str | None, ...] = (),
    state: NvidiaState | None = None,
    hidden: int = 0,
    tegra: str | None = None,
    gfx: tuple[str, ...] = (),
    rocm: str | None = None,
    kfd: bool = True,
    xpu: bool = False,
    macos: str | None = None,
    rosetta: bool = False,
    libc: str | None = "glibc",
    glibc: str = "2.35",
) -> HostReport:
    """A HostReport with only the facts selection reads; `gpus` are compute capabilities."""
    if state is None:
        state = NvidiaState.OK if (driver or cuda or gpus) else NvidiaState.ABSENT
        state = NvidiaState.TEGRA if tegra else state
    nvidia = NvidiaReport(
        state=state,
        driver_version=driver,
        cuda_driver_version=cuda,
        gpus=tuple(
            NvidiaGpu(index=i, name=f"test GPU {cc}", compute_capability=cc)
            for i, cc in enumerate(gpus)
        ),
        hidden_gpus=hidden,
        source="test",
        tegra_model=tegra,
    )
    amd = AmdReport(
        kfd_present=kfd and bool(gfx),
        rocm_version=rocm,
        gpus=tuple(
            AmdGpu(node=i + 1, gfx=g, gfx_target_version=gfx_version(g)) for i, g in enumerate(gfx)
        ),
        source="kfd" if gfx else None,
    )
    intel = IntelReport(
        gpus=(
            IntelGpu(
                pci_address="0000:03:00.0", device_id="0x56a0", name="Intel Arc A770", driver="xe"
            ),
        )
        if xpu
        else ()
    )
    is_mac = os == "macos"
    apple = AppleReport(
        is_macos=is_mac,
        macos_version=(macos or "14.5") if is_mac else None,
        apple_silicon=(arch == "arm64") if is_mac else None,
        rosetta=rosetta if is_mac else None,
        mps_capable=(arch == "arm64" and not rosetta) if is_mac else None,
    )
    tag = "cp" + python.replace(".", "")
    return HostReport(
        system=SystemReport(os=os),
        cpu=CpuReport(
            arch=arch,
            machine=arch,
            libc=libc if os == "linux" else None,
            libc_version=glibc if os == "linux" and libc == "glibc" else None,
        ),
        python=PythonReport(
            version=f"{python}.1",
            implementation="cpython",
            interpreter_tag=tag,
            abi_tags=(tag, "abi3", "none"),
            platform_tags=(),
            free_threaded=free_threaded,
        ),
        nvidia=nvidia,
        amd=amd,
        intel=intel,
        apple=apple,
    )
