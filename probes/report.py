"""The HostReport: every fact the probes read about a host, frozen and JSON-serialisable."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

SCHEMA_VERSION = 1

JsonDict = dict[str, Any]


class NvidiaState(str, enum.Enum):
    """What torchenv could establish about the NVIDIA stack."""

    OK = "ok"  # driver loaded and GPUs enumerated (NVML or nvidia-smi)
    ABSENT = "absent"  # no NVIDIA hardware and no driver
    NO_DRIVER = "no-driver"  # NVIDIA hardware on the PCI bus, no driver installed
    NOT_LOADED = "driver-not-loaded"  # driver installed, kernel module not loaded
    NVML_MISSING = "nvml-missing"  # module loaded, NVML unavailable (container w/o utility)
    TEGRA = "tegra"  # Jetson-class board with an integrated GPU
    ERROR = "error"  # a source answered, but not usefully (see reasons)


@dataclass(frozen=True)
class NvidiaGpu:
    """One NVIDIA GPU: its index, name, UUID, compute capability, memory, MIG, PCI bus."""

    index: int
    name: str | None = None
    uuid: str | None = None
    compute_capability: str | None = None  # "9.0"
    memory_total_mib: int | None = None
    mig_mode: bool | None = None
    pci_bus_id: str | None = None


@dataclass(frozen=True)
class NvidiaReport:
    """The NVIDIA stack: its state, driver and CUDA versions, the GPUs, and the source."""

    state: NvidiaState = NvidiaState.ABSENT
    driver_version: str | None = None  # "580.95.05"
    cuda_driver_version: str | None = None  # "13.0": the newest CUDA the driver runs
    gpus: tuple[NvidiaGpu, ...] = ()
    hidden_gpus: int = 0  # enumerated but hidden by *_VISIBLE_DEVICES
    source: str | None = None  # "nvml", "nvidia-smi", "sysfs", "procfs", "modinfo", "override"
    tegra_model: str | None = None
    tegra_release: str | None = None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class AmdGpu:
    """One AMD GPU: its KFD node, gfx target (name and number), device id and name."""

    node: int
    gfx: str  # "gfx942"
    gfx_target_version: int  # 90402
    device_id: str | None = None  # "0x74a1"
    name: str | None = None


@dataclass(frozen=True)
class AmdReport:
    """The AMD stack: whether KFD is there, the ROCm version, the GPUs."""

    kfd_present: bool = False
    rocm_version: str | None = None  # "6.2.4"
    gpus: tuple[AmdGpu, ...] = ()
    source: str | None = None  # "kfd", "override"
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class IntelGpu:
    """One Intel GPU on the PCI bus: its address, device id, name and kernel driver."""

    pci_address: str
    device_id: str  # "0x56a0"
    name: str | None = None
    driver: str | None = None  # "i915", "xe"


@dataclass(frozen=True)
class IntelReport:
    """The Intel GPUs on the PCI bus, and why any could not be read."""

    gpus: tuple[IntelGpu, ...] = ()
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppleReport:
    """macOS and Apple silicon: the version, the chip, Rosetta, whether MPS can run."""

    is_macos: bool = False
    macos_version: str | None = None  # "14.5"
    apple_silicon: bool | None = None
    rosetta: bool | None = None  # the interpreter runs translated (x86_64 on arm64)
    chip: str | None = None  # "Apple M3"
    mps_capable: bool | None = None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class CpuReport:
    """The CPU and libc: architecture, vendor and model, the flags builds care about, cores."""

    arch: str  # normalised: "x86_64", "aarch64", "arm64" (macOS), "ppc64le", ...
    machine: str  # what the OS calls it: "AMD64", "arm64", "x86_64"
    vendor: str | None = None
    model: str | None = None
    flags: tuple[str, ...] = ()  # only the ones that matter for builds
    logical_cores: int | None = None
    libc: str | None = None  # "glibc", "musl", or None off Linux
    libc_version: str | None = None  # "2.36"
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class PythonReport:
    """The Python interpreter: version, implementation, the wheel tags it installs, its venv."""

    version: str  # "3.11.7"
    implementation: str  # "cpython"
    interpreter_tag: str  # "cp311"
    abi_tags: tuple[str, ...]  # ("cp311", "abi3", "none")
    platform_tags: tuple[str, ...]  # ("manylinux_2_36_x86_64", ..., "linux_x86_64")
    free_threaded: bool = False
    executable: str | None = None
    is_virtualenv: bool = False
    prefix: str | None = None
    reasons: tuple[str, ...] = ()

    @property
    def minor(self) -> str:
        """ "3.11" """
        return ".".join(self.version.split(".")[:2])


@dataclass(frozen=True)
class SystemReport:
    """The OS and machine: release, kernel, container, WSL, cloud, memory, disk, boot id."""

    os: str  # "linux", "macos", "windows"
    os_release: str | None = None  # "Debian GNU/Linux 12 (bookworm)", "14.5", "10.0.22631"
    kernel: str | None = None
    container: str | None = None  # "docker", "podman", "kubernetes", "containerd", "lxc"
    wsl: int | None = None  # 1 or 2 under WSL
    cloud: str | None = None  # "aws", "gcp", "azure", "oracle", "alibaba", ...
    memory_total_bytes: int | None = None
    memory_available_bytes: int | None = None
    disk_path: str | None = None
    disk_free_bytes: int | None = None
    boot_id: str | None = None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostReport:
    """One host's facts, section by section, and the overrides given (TORCHENV_*, flags)."""

    system: SystemReport
    cpu: CpuReport
    python: PythonReport
    nvidia: NvidiaReport = field(default_factory=NvidiaReport)
    amd: AmdReport = field(default_factory=AmdReport)
    intel: IntelReport = field(default_factory=IntelReport)
    apple: AppleReport = field(default_factory=AppleReport)
    overrides: Mapping[str, str] = field(default_factory=dict)  # TORCHENV_* variable -> value
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> JsonDict:
        return _to_json(self)  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostReport:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"host report schema {version!r} is not {SCHEMA_VERSION}; "
                "re-run `torchenv probe --json` with this torchenv"
            )
        return _from_json(cls, data)

    def fingerprint(self) -> str:
        """A short hash of the facts that decide which build fits (not memory, disk, ...)."""
        import hashlib

        payload = json.dumps(self.target_facts(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def target_facts(self) -> JsonDict:
        """The facts a lock is made for; two hosts with equal facts take the same build."""
        return {
            "os": self.system.os,
            "arch": self.cpu.arch,
            "libc": [self.cpu.libc, self.cpu.libc_version],
            "python": [
                self.python.implementation,
                self.python.minor,
                self.python.free_threaded,
            ],
            "nvidia": [
                self.nvidia.state.value,
                self.nvidia.cuda_driver_version,
                self.nvidia.driver_version,
                sorted(g.compute_capability or "?" for g in self.nvidia.gpus),
                self.nvidia.tegra_model is not None,
            ],
            "amd": [self.amd.rocm_version, sorted(g.gfx for g in self.amd.gpus)],
            "intel": sorted(g.device_id for g in self.intel.gpus),
            "macos": [self.apple.macos_version, self.apple.apple_silicon, self.apple.rosetta],
        }


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


T = TypeVar("T")


def _from_json(cls: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild a report dataclass; unknown keys are ignored, missing ones take defaults."""
    import typing

    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        kwargs[f.name] = _coerce(hints[f.name], data[f.name])
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    import types
    import typing

    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(inner[0], value) if len(inner) == 1 else value
    if origin is tuple:
        (item, _) = typing.get_args(hint)
        return tuple(_coerce(item, v) for v in value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _from_json(hint, value)
    if origin is not None and origin.__name__ == "Mapping":
        return dict(value)
    return value
