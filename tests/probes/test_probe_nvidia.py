"""The NVIDIA probe: recorded hosts, parsers, the NVML seam, failures, visibility, overrides."""

from __future__ import annotations

import ctypes.util
import json
import shutil
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import HOSTS

from torchenv.probes import nvidia
from torchenv.probes.hostio import CommandResult, LiveIO, OverlayEnvIO, ReplayIO
from torchenv.probes.report import NvidiaGpu, NvidiaReport, NvidiaState


def probe_dir(
    directory: Path,
    *,
    os_name: str = "linux",
    container: str | None = None,
    env: dict[str, str | None] | None = None,
    timeout: float = 5.0,
) -> NvidiaReport:
    io: Any = ReplayIO(directory)
    if env:
        io = OverlayEnvIO(io, env)
    return nvidia.probe(io, os_name=os_name, container=container, command_timeout=timeout)


def copy_host(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(HOSTS / name, target)
    return target


def edit_json(path: Path, default: Any, change: Callable[[Any], Any]) -> None:
    data = json.loads(path.read_text()) if path.exists() else default
    path.write_text(json.dumps(change(data)))


def set_fact(host: Path, name: str, value: Any) -> None:
    edit_json(host / "facts.json", {}, lambda d: {**d, name: value})


def set_command(host: Path, argv: Sequence[str], **result: Any) -> None:
    entry = {
        "argv": list(argv),
        "returncode": 0,
        "stdout": "",
        "stderr": "",
        "error": None,
        **result,
    }
    edit_json(
        host / "commands.json", [], lambda d: [e for e in d if e["argv"] != list(argv)] + [entry]
    )


def recorded_uuids(name: str) -> list[str]:
    facts = json.loads((HOSTS / name / "facts.json").read_text())
    return [d["uuid"] for d in facts["nvml"]["devices"]]


SMI_ARGV = ["nvidia-smi", *nvidia.SMI_QUERY]


# --- every recorded host -----------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    state: NvidiaState
    driver: str | None = None
    cuda: str | None = None
    ccs: tuple[str | None, ...] = ()
    mig: tuple[bool | None, ...] | None = None
    hidden: int = 0
    source: str | None = None
    container: str | None = None
    os_name: str = "linux"
    reason: str | None = None  # a substring one of the reasons must hold


HOST_TABLE = {
    "h100-driver580": Expect(
        NvidiaState.OK, "580.95.05", "13.0", ("9.0",) * 8, (False,) * 8, source="nvml"
    ),
    "gtx1080ti-driver580": Expect(
        NvidiaState.OK, "580.95.05", "13.0", ("6.1",), (False,), source="nvml"
    ),
    "rtx5090-driver570": Expect(
        NvidiaState.OK, "570.133.07", "12.8", ("12.0",), (False,), source="nvml"
    ),
    # CUDA_VISIBLE_DEVICES names a MIG device of GPU 0: GPU 1 is hidden
    "a100-mig": Expect(
        NvidiaState.OK, "570.172.08", "12.8", ("8.0",), (True,), hidden=1, source="nvml"
    ),
    "gh200-aarch64": Expect(NvidiaState.OK, "580.95.05", "13.0", ("9.0",), (False,), source="nvml"),
    "wsl2-rtx4090": Expect(NvidiaState.OK, "581.57", "13.0", ("8.9",), (False,), source="nvml"),
    "jetson-orin": Expect(NvidiaState.TEGRA, source="tegra"),
    "container-no-nvml": Expect(
        NvidiaState.NVML_MISSING,
        "580.95.05",
        None,
        (None,),
        source="sysfs",
        container="docker",
        reason="NVIDIA_DRIVER_CAPABILITIES",
    ),
    "firstboot-not-loaded": Expect(
        NvidiaState.NOT_LOADED, "580.95.05", None, (None,), source="modinfo", reason="not loaded"
    ),
    "cpu-cloud-vm": Expect(NvidiaState.ABSENT),
    "amd-mi300x": Expect(NvidiaState.ABSENT),
    "amd-rx7900": Expect(NvidiaState.ABSENT),
    "intel-arc": Expect(NvidiaState.ABSENT),
    "mac-m3": Expect(NvidiaState.ABSENT, os_name="macos"),
    "mac-intel": Expect(NvidiaState.ABSENT, os_name="macos"),
}


@pytest.mark.parametrize("name", sorted(HOST_TABLE))
def test_recorded_host(name: str) -> None:
    want = HOST_TABLE[name]
    report = probe_dir(HOSTS / name, os_name=want.os_name, container=want.container)
    assert report.state == want.state
    assert report.driver_version == want.driver
    assert report.cuda_driver_version == want.cuda
    assert tuple(g.compute_capability for g in report.gpus) == want.ccs
    if want.mig is not None:
        assert tuple(g.mig_mode for g in report.gpus) == want.mig
    assert report.hidden_gpus == want.hidden
    assert report.source == want.source
    if want.reason:
        assert any(want.reason in r for r in report.reasons), report.reasons
    if want.state in (NvidiaState.OK, NvidiaState.ABSENT):
        assert report.reasons == () or name == "a100-mig"


def test_the_issue_hosts_are_recorded() -> None:
    assert set(HOST_TABLE) <= {p.name for p in HOSTS.iterdir() if p.is_dir()}


@pytest.mark.parametrize("name", sorted(p.name for p in HOSTS.iterdir() if p.is_dir()))
def test_every_recorded_host_gives_a_consistent_report(name: str) -> None:
    facts = json.loads((HOSTS / name / "facts.json").read_text())
    os_name = {"Darwin": "macos", "Windows": "windows"}.get(facts["platform"]["system"], "linux")
    report = probe_dir(HOSTS / name, os_name=os_name)
    if report.state == NvidiaState.OK:
        assert report.driver_version is not None
    if report.state == NvidiaState.ABSENT:
        assert report.gpus == () and report.driver_version is None


def test_h100_gpus_in_full() -> None:
    report = probe_dir(HOSTS / "h100-driver580")
    first = report.gpus[0]
    assert first == NvidiaGpu(
        index=0,
        name="NVIDIA H100 80GB HBM3",
        uuid=recorded_uuids("h100-driver580")[0],
        compute_capability="9.0",
        memory_total_mib=81559,
        mig_mode=False,
        pci_bus_id="0000:53:00.0",
    )
    assert [g.index for g in report.gpus] == list(range(8))


def test_jetson_records_board_and_release_not_the_display_driver() -> None:
    report = probe_dir(HOSTS / "jetson-orin")
    assert report.tegra_model == "NVIDIA Jetson AGX Orin Developer Kit"
    assert report.tegra_release == "36.4.0"
    assert report.driver_version is None and report.gpus == ()


def test_container_lists_gpus_from_procfs() -> None:
    report = probe_dir(HOSTS / "container-no-nvml", container="docker")
    (gpu,) = report.gpus
    assert gpu.name == "NVIDIA A10G"
    assert gpu.pci_bus_id == "0000:00:1e.0"
    assert gpu.uuid is not None and gpu.uuid.startswith("GPU-")
    assert any("TORCHENV_GPU_COMPUTE_CAPABILITY" in r for r in report.reasons)


def test_firstboot_counts_only_display_class_devices(tmp_path: Path) -> None:
    host = copy_host(tmp_path, "firstboot-not-loaded")
    audio = host / "root/sys/bus/pci/devices/0000:01:00.1"
    audio.mkdir(parents=True)
    (audio / "vendor").write_text("0x10de\n")
    (audio / "class").write_text("0x040300\n")
    report = probe_dir(host)
    assert len(report.gpus) == 1
    assert report.gpus[0].name == "NVIDIA PCI device 0x26b9"


def test_pci_device_without_any_driver_is_no_driver(tmp_path: Path) -> None:
    host = copy_host(tmp_path, "firstboot-not-loaded")
    set_command(
        host, nvidia.MODINFO_ARGV, returncode=1, stderr="modinfo: ERROR: Module nvidia not found.\n"
    )
    report = probe_dir(host)
    assert report.state == NvidiaState.NO_DRIVER
    assert report.driver_version is None
    assert len(report.gpus) == 1 and report.source == "pci"


class CountingIO(ReplayIO):
    """A replay that counts what the probe asked for beyond files."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.facts: list[str] = []
        self.commands: list[Sequence[str]] = []

    def fact(self, name: str, compute: Callable[[], Any]) -> Any:
        self.facts.append(name)
        return super().fact(name, compute)

    def run(self, argv: Sequence[str], timeout: float = 5.0) -> CommandResult:
        self.commands.append(list(argv))
        return super().run(argv, timeout)


@pytest.mark.parametrize("name", ["cpu-cloud-vm", "intel-arc", "amd-mi300x"])
def test_no_nvidia_evidence_means_no_nvml_and_no_commands(name: str) -> None:
    io = CountingIO(HOSTS / name)
    assert nvidia.probe(io, os_name="linux", container=None).state == NvidiaState.ABSENT
    assert io.facts == [] and io.commands == []


def test_nvml_working_means_no_nvidia_smi() -> None:
    io = CountingIO(HOSTS / "h100-driver580")
    nvidia.probe(io, os_name="linux", container=None)
    assert io.facts == ["nvml"] and io.commands == []


# --- parsers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("580.95.05\n", "580.95.05"),
        ("570.133.07", "570.133.07"),
        ("581.57\n", "581.57"),
        ("540.4.0\n", "540.4.0"),
        ("", None),
        ("garbage\x00\x01", None),
        ("580.95.05 extra", None),
        ("5.10", None),
    ],
)
def test_parse_driver_version(text: str, want: str | None) -> None:
    assert nvidia.parse_driver_version(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.54.03  Tue Jun  6 22:20:39 UTC "
            "2023\nGCC version:  gcc version 11.3.0 (Ubuntu 11.3.0-1ubuntu1~22.04.1)\n",
            "535.54.03",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  565.57.01  Release Build  "
            "(dvs-builder@U16-A24-9-2)  Thu Oct 10 12:15:00 UTC 2024\nGCC version:  gcc version "
            "13.3.0 (Ubuntu 13.3.0-6ubuntu2~24.04)\n",
            "565.57.01",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.95.05  Release Build  "
            "(dvs-builder@U22-I3-AE18-23-3)  Tue Sep 23 09:55:41 UTC 2025\n",
            "580.95.05",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  555.58  Release Build  "
            "(portage@localhost)\n",
            "555.58",
        ),
        ("GCC version:  gcc version 12.2.0\n", None),
        ("NVRM version: unknown\n", None),
    ],
)
def test_parse_procfs_version(text: str, want: str | None) -> None:
    assert nvidia.parse_procfs_version(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 100\nGPU UUID: \t "
            "GPU-e3f822b9-8c5f-95a5-b379-8dfdeefd7758\nVideo BIOS: \t 96.00.99.00.01\nBus Type: \t "
            "PCIe\nBus Location: \t 0000:53:00.0\nDevice Minor: \t 0\n",
            {
                "name": "NVIDIA H100 80GB HBM3",
                "uuid": "GPU-e3f822b9-8c5f-95a5-b379-8dfdeefd7758",
                "pci_bus_id": "0000:53:00.0",
            },
        ),
        (
            "Model:           GeForce GTX 650\nGPU UUID:        GPU-????????-????-????-????-"
            "????????????\nBus Location:    0000:04:00.0\n",
            {"name": "GeForce GTX 650", "uuid": None, "pci_bus_id": "0000:04:00.0"},
        ),
        ("", {"name": None, "uuid": None, "pci_bus_id": None}),
    ],
)
def test_parse_gpu_information(text: str, want: dict[str, str | None]) -> None:
    assert nvidia.parse_gpu_information(text) == want


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("00000000:01:00.0", "0000:01:00.0"),
        ("00000009:01:00.0", "0009:01:00.0"),
        ("0000:B9:00.0", "0000:b9:00.0"),
        ("01:00.0", None),
        ("", None),
    ],
)
def test_normalise_bus_id(value: str, want: str | None) -> None:
    assert nvidia.normalise_bus_id(value) == want


@pytest.mark.parametrize(
    ("stdout", "want", "problems"),
    [
        (
            "0, NVIDIA H100 80GB HBM3, GPU-aaaa, 580.95.05, 9.0, 81559, Disabled\n"
            "1, NVIDIA H100 80GB HBM3, GPU-bbbb, 580.95.05, 9.0, 81559, Enabled\n",
            [
                (0, "NVIDIA H100 80GB HBM3", "GPU-aaaa", "580.95.05", "9.0", 81559, False),
                (1, "NVIDIA H100 80GB HBM3", "GPU-bbbb", "580.95.05", "9.0", 81559, True),
            ],
            0,
        ),
        (
            "0, NVIDIA GeForce GTX 1080 Ti, GPU-cccc, 580.95.05, 6.1, 11264, [N/A]\n",
            [(0, "NVIDIA GeForce GTX 1080 Ti", "GPU-cccc", "580.95.05", "6.1", 11264, None)],
            0,
        ),
        (
            "0, NVIDIA GeForce RTX 5090, GPU-dddd, 570.133.07, [Not Supported], [N/A], [N/A]\n",
            [(0, "NVIDIA GeForce RTX 5090", "GPU-dddd", "570.133.07", None, None, None)],
            0,
        ),
        (
            '0, "Quadro, odd name", GPU-eeee, 580.95.05, 7.5, 8192, [N/A]\n',
            [(0, "Quadro, odd name", "GPU-eeee", "580.95.05", "7.5", 8192, None)],
            0,
        ),
        ("No devices were found\n", [], 1),
        ("x, NVIDIA A100, GPU-ffff, 580.95.05, 8.0, 40960, Disabled\n", [], 1),
        ("", [], 0),
    ],
)
def test_parse_smi_query(stdout: str, want: list[tuple[Any, ...]], problems: int) -> None:
    rows, notes = nvidia.parse_smi_query(stdout)
    got = [
        (
            r.gpu.index,
            r.gpu.name,
            r.gpu.uuid,
            r.driver_version,
            r.gpu.compute_capability,
            r.gpu.memory_total_mib,
            r.gpu.mig_mode,
        )
        for r in rows
    ]
    assert got == want
    assert len(notes) == problems


SMI_HEADER_OLD = """Tue Jan 21 10:00:00 2025
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.40.07              Driver Version: 550.40.07      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""
SMI_HEADER_NEW = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 610.43.02              KMD Version: 610.43.02     CUDA UMD Version: 13.3     |
+-----------------------------------------+------------------------+----------------------+
"""
SMI_VERSION = """NVIDIA-SMI version  : 580.95.05
NVML version        : 580.95
DRIVER version      : 580.95.05
CUDA Version        : 13.0
"""


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (SMI_VERSION, ("580.95.05", "13.0")),
        (SMI_HEADER_OLD, ("550.40.07", "12.4")),
        (SMI_HEADER_NEW, ("610.43.02", "13.3")),
        (
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
            (None, None),
        ),
    ],
)
def test_parse_smi_versions(text: str, want: tuple[str | None, str | None]) -> None:
    assert nvidia.parse_smi_versions(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, "
            "DATE: Fri Sep 13 04:36:44 UTC 2024\n# KERNEL_VARIANT: oot\n",
            "36.4.0",
        ),
        (
            "# R35 (release), REVISION: 5.0, GCID: 35550185, BOARD: t186ref, EABI: aarch64, "
            "DATE: Tue Feb 20 18:26:37 UTC 2024\n",
            "35.5.0",
        ),
        (
            "# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref, EABI: aarch64\n",
            "32.7.4",
        ),
        ("TARGET_USERSPACE_LIB_DIR=nvidia\n", None),
    ],
)
def test_parse_tegra_release(text: str, want: str | None) -> None:
    assert nvidia.parse_tegra_release(text) == want


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (13000, "13.0"),
        (12080, "12.8"),
        (12090, "12.9"),
        (11040, "11.4"),
        (0, None),
        (None, None),
        ("13000", None),
        (True, None),
    ],
)
def test_cuda_level(value: Any, want: str | None) -> None:
    assert nvidia.cuda_level(value) == want


# --- the NVML seam: a fake module implementing the pynvml calls nvml_snapshot makes -------------


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


@dataclass
class FakeGpu:
    name: str
    uuid: str
    cc: tuple[int, int]
    memory_mib: int
    bus: str
    mig: int | None = 0  # None: MIG not supported
    migs: list[str] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)  # pynvml function -> error code


@dataclass
class FakeMig:
    uuid: str
    fail: dict[str, int] = field(default_factory=dict)


class FakeNvml:
    """The pynvml functions nvml_snapshot calls, answering from data."""

    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_NO_PERMISSION = 4
    NVML_ERROR_NOT_FOUND = 6
    NVML_ERROR_DRIVER_NOT_LOADED = 9
    NVML_ERROR_LIBRARY_NOT_FOUND = 12
    NVML_ERROR_FUNCTION_NOT_FOUND = 13
    NVML_ERROR_GPU_IS_LOST = 15
    NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
    NVMLError = FakeNVMLError

    def __init__(
        self,
        gpus: list[FakeGpu],
        *,
        driver: str | bytes = "580.95.05",
        cuda: int = 13000,
        fail: dict[str, int] | None = None,
    ) -> None:
        self.gpus = gpus
        self.driver = driver
        self.cuda = cuda
        self.fail = fail or {}
        self.calls: list[str] = []

    def _enter(self, function: str, handle: FakeGpu | FakeMig | None = None) -> None:
        self.calls.append(function)
        code = self.fail.get(function) or (handle.fail.get(function) if handle else None)
        if code:
            raise FakeNVMLError(code)

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion_v2")
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._enter("nvmlDeviceGetHandleByIndex", self.gpus[index])
        return self.gpus[index]

    def nvmlDeviceGetName(self, h: FakeGpu) -> bytes:
        self._enter("nvmlDeviceGetName", h)
        return h.name.encode()

    def nvmlDeviceGetUUID(self, h: FakeGpu | FakeMig) -> str:
        self._enter("nvmlDeviceGetUUID", h)
        return h.uuid

    def nvmlDeviceGetCudaComputeCapability(self, h: FakeGpu) -> tuple[int, int]:
        self._enter("nvmlDeviceGetCudaComputeCapability", h)
        return h.cc

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> SimpleNamespace:
        self._enter("nvmlDeviceGetMemoryInfo", h)
        return SimpleNamespace(total=h.memory_mib * 1024 * 1024, used=0, free=0)

    def nvmlDeviceGetPciInfo(self, h: FakeGpu) -> SimpleNamespace:
        self._enter("nvmlDeviceGetPciInfo", h)
        return SimpleNamespace(busId=h.bus.encode())

    def nvmlDeviceGetMigMode(self, h: FakeGpu) -> list[int]:
        self._enter("nvmlDeviceGetMigMode", h)
        if h.mig is None:
            raise FakeNVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return [h.mig, h.mig]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: FakeGpu) -> int:
        self._enter("nvmlDeviceGetMaxMigDeviceCount", h)
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: FakeGpu, j: int) -> FakeMig:
        self._enter("nvmlDeviceGetMigDeviceHandleByIndex", h)
        if j >= len(h.migs):
            raise FakeNVMLError(self.NVML_ERROR_NOT_FOUND)
        return FakeMig(h.migs[j])


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(
            "NVIDIA A100-SXM4-80GB",
            "GPU-11111111-2222-3333-4444-555555555555",
            (8, 0),
            81920,
            "00000000:07:00.0",
            mig=1,
            migs=[
                "MIG-aaaaaaaa-0000-0000-0000-000000000000",
                "MIG-bbbbbbbb-0000-0000-0000-000000000000",
            ],
        ),
        FakeGpu(
            "NVIDIA GeForce RTX 3090",
            "GPU-66666666-7777-8888-9999-000000000000",
            (8, 6),
            24576,
            "00000000:41:00.0",
            mig=None,
        ),
    ]


def test_snapshot_reads_every_field() -> None:
    fake = FakeNvml(two_gpus())
    snap = nvidia.nvml_snapshot(fake)
    assert json.loads(json.dumps(snap)) == snap
    assert snap["driver_version"] == "580.95.05"
    assert snap["cuda_driver_version"] == 13000
    assert snap["errors"] == {}
    a100, rtx = snap["devices"]
    assert a100 == {
        "index": 0,
        "errors": {},
        "name": "NVIDIA A100-SXM4-80GB",
        "uuid": "GPU-11111111-2222-3333-4444-555555555555",
        "compute_capability": "8.0",
        "memory_total_mib": 81920,
        "pci_bus_id": "00000000:07:00.0",
        "mig_mode": True,
        "mig_devices": [
            "MIG-aaaaaaaa-0000-0000-0000-000000000000",
            "MIG-bbbbbbbb-0000-0000-0000-000000000000",
        ],
    }
    assert rtx["mig_mode"] is False and rtx["compute_capability"] == "8.6"
    assert "mig_devices" not in rtx
    assert fake.calls.count("nvmlInit") == 1 and fake.calls[-1] == "nvmlShutdown"


def test_snapshot_cuda_v2_missing_from_driver() -> None:
    fake = FakeNvml(two_gpus(), fail={"nvmlSystemGetCudaDriverVersion_v2": 13})
    snap = nvidia.nvml_snapshot(fake)
    assert snap["cuda_driver_version"] is None
    assert snap["errors"] == {"cuda_driver_version": "FUNCTION_NOT_FOUND"}
    assert len(snap["devices"]) == 2
    assert fake.calls[-1] == "nvmlShutdown"
    report, _ = nvidia.report_from_snapshot(snap)
    assert report.cuda_driver_version is None
    assert any("binding is newer than the driver" in r for r in report.reasons)


def test_snapshot_binding_older_than_the_call() -> None:
    class OldBinding(FakeNvml):
        nvmlSystemGetCudaDriverVersion_v2 = None  # type: ignore[assignment]

    snap = nvidia.nvml_snapshot(OldBinding(two_gpus()))
    assert snap["errors"] == {"cuda_driver_version": "FUNCTION_NOT_FOUND"}


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (12, "LIBRARY_NOT_FOUND"),
        (9, "DRIVER_NOT_LOADED"),
        (4, "NO_PERMISSION"),
        (18, "LIB_RM_VERSION_MISMATCH"),
        (999, "ERROR_999"),
    ],
)
def test_snapshot_init_failure(code: int, name: str) -> None:
    fake = FakeNvml(two_gpus(), fail={"nvmlInit": code})
    snap = nvidia.nvml_snapshot(fake)
    assert snap["error"] == name
    assert "nvmlShutdown" not in fake.calls


def test_snapshot_keeps_a_device_that_fails() -> None:
    gpus = two_gpus()
    gpus[0].fail = {"nvmlDeviceGetHandleByIndex": 15}
    gpus[1].fail = {"nvmlDeviceGetCudaComputeCapability": 4, "nvmlDeviceGetMemoryInfo": 3}
    snap = nvidia.nvml_snapshot(FakeNvml(gpus))
    lost, partial = snap["devices"]
    assert lost == {"index": 0, "errors": {"handle": "GPU_IS_LOST"}}
    assert partial["errors"] == {
        "compute_capability": "NO_PERMISSION",
        "memory_total_mib": "NOT_SUPPORTED",
    }
    assert partial["name"] == "NVIDIA GeForce RTX 3090"
    report, _ = nvidia.report_from_snapshot(snap)
    assert [g.index for g in report.gpus] == [0, 1]
    assert report.gpus[0] == NvidiaGpu(index=0)
    assert report.gpus[1].compute_capability is None and report.gpus[1].name
    assert any("GPU 0" in r and "GPU_IS_LOST" in r for r in report.reasons)
    assert any("GPU 1" in r and "NO_PERMISSION" in r for r in report.reasons)


def test_snapshot_to_report_through_a_recorded_host(tmp_path: Path) -> None:
    host = copy_host(tmp_path, "h100-driver580")
    set_fact(host, "nvml", nvidia.nvml_snapshot(FakeNvml(two_gpus(), driver=b"580.95.05")))
    report = probe_dir(host)
    assert report.state == NvidiaState.OK
    assert [g.compute_capability for g in report.gpus] == ["8.0", "8.6"]
    assert [g.pci_bus_id for g in report.gpus] == ["0000:07:00.0", "0000:41:00.0"]
    assert report.gpus[0].mig_mode is True


def test_real_binding_without_a_driver_says_library_not_found() -> None:
    if ctypes.util.find_library("nvidia-ml"):
        pytest.skip("this machine has libnvidia-ml")
    assert nvidia.nvml_snapshot(nvidia.load_pynvml())["error"] == "LIBRARY_NOT_FOUND"


def test_missing_binding_is_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    snap = nvidia.live_snapshot()
    assert snap["error"] == "BINDING_MISSING"


# --- failure modes -----------------------------------------------------------------------------


def test_corrupt_sysfs_falls_back_to_procfs(tmp_path: Path) -> None:
    host = copy_host(tmp_path, "container-no-nvml")
    (host / "root/sys/module/nvidia/version").write_text("\x00\x07garbage\n")
    report = probe_dir(host, container="docker")
    assert report.state == NvidiaState.NVML_MISSING
    assert report.driver_version == "580.95.05" and report.source == "procfs"
    assert any("/sys/module/nvidia/version" in r for r in report.reasons)


def test_corrupt_sysfs_and_procfs_is_an_error(tmp_path: Path) -> None:
    host = copy_host(tmp_path, "container-no-nvml")
    (host / "root/sys/module/nvidia/version").write_text("???\n")
    (host / "root/proc/driver/nvidia/version").write_text("NVRM version: broken\n")
    report = probe_dir(host, container="docker")
    assert report.state == NvidiaState.ERROR
    assert report.driver_version is None
    assert any("version cannot be read" in r for r in report.reasons)


def test_unreadable_files_become_reasons(tmp_path: Path) -> None:
    host = copy_host(tmp_path, "container-no-nvml")
    (host / "manifest.json").write_text(
        json.dumps(
            {
                "errors": {
                    "/sys/module/nvidia/version": "PermissionError: Permission denied",
                    "/proc/driver/nvidia/gpus": "PermissionError: Permission denied",
                }
            }
        )
    )
    report = probe_dir(host, container="docker")
    assert report.driver_version == "580.95.05"  # from procfs
    assert report.gpus[0].name == "NVIDIA PCI device 0x2237"  # from the PCI bus instead
    assert sum("PermissionError" in r for r in report.reasons) == 2


def test_unreadable_pci_bus_on_first_boot(tmp_path: Path) -> None:
    host = copy_host(tmp_path, "firstboot-not-loaded")
    (host / "manifest.json").write_text(
        json.dumps({"errors": {"/sys/bus/pci/devices": "PermissionError: Permission denied"}})
    )
    report = probe_dir(host)
    assert report.state == NvidiaState.ABSENT
    assert any("/sys/bus/pci/devices" in r for r in report.reasons)


def test_nvml_missing_but_nvidia_smi_answers(tmp_path: Path) -> None:
    host = copy_host(tmp_path, "h100-driver580")
    set_fact(host, "nvml", {"error": "LIBRARY_NOT_FOUND", "message": "not found"})
    report = probe_dir(host)
    assert report.state == NvidiaState.OK and report.source == "nvidia-smi"
    assert report.driver_version == "580.95.05" and report.cuda_driver_version == "13.0"
    assert [g.compute_capability for g in report.gpus] == ["9.0"] * 8
    assert [g.uuid for g in report.gpus] == recorded_uuids("h100-driver580")


def test_nvml_not_recorded_falls_back(tmp_path: Path) -> None:
    host = copy_host(tmp_path, "h100-driver580")
    edit_json(host / "facts.json", {}, lambda d: {k: v for k, v in d.items() if k != "nvml"})
    report = probe_dir(host)
    assert report.source == "nvidia-smi"
    assert any("nvml was not recorded" in r for r in report.reasons)


def test_binding_newer_than_driver_takes_cuda_from_nvidia_smi(tmp_path: Path) -> None:
    host = copy_host(tmp_path, "h100-driver580")
    snap = nvidia.nvml_snapshot(
        FakeNvml(two_gpus(), fail={"nvmlSystemGetCudaDriverVersion_v2": 13})
    )
    set_fact(host, "nvml", snap)
    report = probe_dir(host)
    assert report.source == "nvml"
    assert report.cuda_driver_version == "13.0"
    assert any("CUDA level 13.0 from nvidia-smi" in r for r in report.reasons)


def test_nvidia_smi_disagreeing_with_nvml_is_noted(tmp_path: Path) -> None:
    host = copy_host(tmp_path, "h100-driver580")
    snap = json.loads((host / "facts.json").read_text())["nvml"]
    snap["devices"][0]["compute_capability"] = None
    snap["devices"][0]["errors"] = {"compute_capability": "UNKNOWN"}
    snap["devices"][1]["compute_capability"] = "8.0"  # NVML says 8.0, nvidia-smi 9.0
    set_fact(host, "nvml", snap)
    rows = "".join(
        f"{i}, NVIDIA H100 80GB HBM3, {u}, 575.51.03, 9.0, 81559, Disabled\n"
        for i, u in enumerate(recorded_uuids("h100-driver580"))
    )
    set_command(host, SMI_ARGV, stdout=rows)
    report = probe_dir(host)
    assert report.driver_version == "580.95.05"  # NVML's
    assert report.gpus[0].compute_capability == "9.0"  # filled from nvidia-smi
    assert report.gpus[1].compute_capability == "8.0"  # NVML kept
    assert any("compute capability 9.0 but NVML 8.0" in r for r in report.reasons)
    assert any("driver version 575.51.03 but NVML 580.95.05" in r for r in report.reasons)


def test_driver_upgraded_without_reboot(tmp_path: Path) -> None:
    host = copy_host(tmp_path, "h100-driver580")
    set_fact(host, "nvml", {"error": "LIB_RM_VERSION_MISMATCH", "message": "mismatch"})
    set_command(
        host,
        SMI_ARGV,
        returncode=18,
        stdout="Failed to initialize NVML: Driver/library version mismatch\n",
    )
    report = probe_dir(host)
    assert report.state == NvidiaState.ERROR
    assert report.driver_version == "580.95.05" and report.source == "sysfs"
    assert len(report.gpus) == 8 and report.gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert any("reboot" in r for r in report.reasons)
    assert any("version mismatch" in r for r in report.reasons)


def test_nvml_driver_differs_from_loaded_module(tmp_path: Path) -> None:
    host = copy_host(tmp_path, "h100-driver580")
    (host / "root/sys/module/nvidia/version").write_text("580.82.07\n")
    report = probe_dir(host)
    assert report.state == NvidiaState.OK and report.driver_version == "580.95.05"
    assert any("580.82.07" in r and "reboot" in r for r in report.reasons)


class FactsLiveIO(LiveIO):
    """The live seam over a temporary tree, with NVML's answer given (no driver here)."""

    def __init__(self, root: Path, path: str, nvml: dict[str, Any]) -> None:
        super().__init__(root=root, env={}, path=path)
        self._nvml = nvml

    def fact(self, name: str, compute: Callable[[], Any]) -> Any:
        return self._nvml if name == "nvml" else compute()


def test_hanging_nvidia_smi_is_a_reason(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sys/module/nvidia").mkdir(parents=True)
    (root / "sys/module/nvidia/version").write_text("580.95.05\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    script = bin_dir / "nvidia-smi"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec sleep 30\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    io = FactsLiveIO(root, str(bin_dir), {"error": "UNKNOWN", "message": "stuck"})
    report = nvidia.probe(io, os_name="linux", container=None, command_timeout=0.3)
    assert report.state == NvidiaState.ERROR
    assert report.driver_version == "580.95.05"
    assert any("nvidia-smi: no answer within 0.3 s" in r for r in report.reasons)
    assert len(calls.read_text().splitlines()) == 1  # asked once, not once per fallback


def test_failing_nvidia_smi_output_is_quoted(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sys/module/nvidia").mkdir(parents=True)
    (root / "sys/module/nvidia/version").write_text("580.95.05\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate "
        'with the NVIDIA driver."\nexit 9\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    io = FactsLiveIO(root, str(bin_dir), {"error": "LIBRARY_NOT_FOUND"})
    report = nvidia.probe(io, os_name="linux", container=None, command_timeout=5)
    assert report.state == NvidiaState.NVML_MISSING
    assert any("exit 9: NVIDIA-SMI has failed" in r for r in report.reasons)


def test_device_node_alone_without_gpus_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    (root / "dev/nvidiactl").write_text("")
    io = FactsLiveIO(root, str(tmp_path), {"error": "DRIVER_NOT_LOADED"})
    report = nvidia.probe(io, os_name="linux", container=None)
    assert report.state == NvidiaState.ERROR
    assert any("DRIVER_NOT_LOADED" in r for r in report.reasons)


def test_windows(tmp_path: Path) -> None:
    host = tmp_path / "win"
    (host / "root").mkdir(parents=True)
    (host / "manifest.json").write_text(json.dumps({"exists": ["C:/Windows/System32/nvml.dll"]}))
    (host / "env.json").write_text(json.dumps({"SystemRoot": "C:/Windows"}))
    set_fact(host, "nvml", nvidia.nvml_snapshot(FakeNvml(two_gpus()[1:], driver="581.57")))
    report = probe_dir(host, os_name="windows")
    assert report.state == NvidiaState.OK and report.driver_version == "581.57"
    assert [g.compute_capability for g in report.gpus] == ["8.6"]
    (host / "manifest.json").write_text(json.dumps({}))
    assert probe_dir(host, os_name="windows").state == NvidiaState.ABSENT


# --- visibility ----------------------------------------------------------------------------------

H100_UUIDS = recorded_uuids("h100-driver580")


@pytest.mark.parametrize(
    ("env", "container", "visible", "note"),
    [
        ({"NVIDIA_VISIBLE_DEVICES": "all"}, None, list(range(8)), None),
        ({"NVIDIA_VISIBLE_DEVICES": "none"}, "docker", [], "no GPU is visible"),
        ({"NVIDIA_VISIBLE_DEVICES": "void"}, "docker", [], "no GPU is visible"),
        ({"NVIDIA_VISIBLE_DEVICES": ""}, "docker", [], "no GPU is visible"),
        ({"NVIDIA_VISIBLE_DEVICES": "0,3"}, None, [0, 3], "outside a container"),
        ({"NVIDIA_VISIBLE_DEVICES": "0,3"}, "docker", list(range(8)), "applied by the container"),
        ({"NVIDIA_VISIBLE_DEVICES": H100_UUIDS[5]}, "docker", [5], None),
        ({"NVIDIA_VISIBLE_DEVICES": f"{H100_UUIDS[6]},{H100_UUIDS[2]}"}, "docker", [6, 2], None),
        ({"NVIDIA_VISIBLE_DEVICES": "GPU-00000000-dead"}, "docker", [], "names no GPU"),
        ({"CUDA_VISIBLE_DEVICES": ""}, None, [], "CUDA sees no GPU"),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, None, [], "stops at '-1'"),
        ({"CUDA_VISIBLE_DEVICES": "1,0"}, None, [1, 0], None),
        ({"CUDA_VISIBLE_DEVICES": "2,x,3"}, None, [2], "stops at 'x'"),
        ({"CUDA_VISIBLE_DEVICES": "2, 9, 3"}, None, [2], "stops at '9'"),
        ({"CUDA_VISIBLE_DEVICES": H100_UUIDS[4][:12]}, None, [4], None),
        ({"CUDA_VISIBLE_DEVICES": H100_UUIDS[4].upper()}, None, [4], None),
        ({"CUDA_VISIBLE_DEVICES": "GPU-"}, None, [], "stops at 'GPU-'"),
        ({"CUDA_VISIBLE_DEVICES": "1,1"}, None, [1], "twice"),
        ({"NVIDIA_VISIBLE_DEVICES": "2,3,4", "CUDA_VISIBLE_DEVICES": "1"}, None, [3], None),
    ],
)
def test_visibility(
    env: dict[str, str], container: str | None, visible: list[int], note: str | None
) -> None:
    report = probe_dir(HOSTS / "h100-driver580", container=container, env=dict(env))
    assert [g.index for g in report.gpus] == visible
    assert report.hidden_gpus == 8 - len(visible)
    if note:
        assert any(note in r for r in report.reasons), report.reasons


@pytest.mark.parametrize(
    ("cuda_visible", "visible"),
    [("legacy", [0]), ("mig1", [0]), ("gpu1", [1]), ("MIG-ffffffff", [])],
)
def test_visibility_mig(cuda_visible: str, visible: list[int]) -> None:
    facts = json.loads((HOSTS / "a100-mig" / "facts.json").read_text())["nvml"]["devices"]
    value = {
        "legacy": f"MIG-{facts[0]['uuid']}/1/0",
        "mig1": facts[0]["mig_devices"][1],
        "gpu1": facts[1]["uuid"],
    }.get(cuda_visible, cuda_visible)
    report = probe_dir(HOSTS / "a100-mig", env={"CUDA_VISIBLE_DEVICES": value})
    assert [g.index for g in report.gpus] == visible


def test_mixed_gpus_by_index_warn_about_cuda_order() -> None:
    gpus = (NvidiaGpu(0, name="NVIDIA GeForce RTX 3090"), NvidiaGpu(1, name="NVIDIA T400"))
    base = NvidiaReport(state=NvidiaState.OK, gpus=gpus)
    warned = nvidia.apply_visibility(
        base, nvidia_visible=None, cuda_visible="1", in_container=False
    )
    assert any("fastest first" in r for r in warned.reasons)
    ordered = nvidia.apply_visibility(
        base, nvidia_visible=None, cuda_visible="1", in_container=False, device_order="PCI_BUS_ID"
    )
    assert ordered.reasons == () and [g.index for g in ordered.gpus] == [1]


# --- overrides ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Override:
    host: str
    env: dict[str, str]
    state: NvidiaState
    driver: str | None
    cuda: str | None
    ccs: tuple[str | None, ...]
    source: str | None
    container: str | None = None


OVERRIDES = {
    "older-driver": Override(
        "h100-driver580",
        {"TORCHENV_CUDA_DRIVER_VERSION": "575.51.03"},
        NvidiaState.OK,
        "575.51.03",
        None,
        ("9.0",) * 8,
        "override",
    ),
    "same-driver-keeps-cuda": Override(
        "h100-driver580",
        {"TORCHENV_CUDA_DRIVER_VERSION": "580.95.05"},
        NvidiaState.OK,
        "580.95.05",
        "13.0",
        ("9.0",) * 8,
        "override",
    ),
    "bad-driver-ignored": Override(
        "h100-driver580",
        {"TORCHENV_CUDA_DRIVER_VERSION": "latest"},
        NvidiaState.OK,
        "580.95.05",
        "13.0",
        ("9.0",) * 8,
        "nvml",
    ),
    "cc-fills-container": Override(
        "container-no-nvml",
        {"TORCHENV_GPU_COMPUTE_CAPABILITY": "8.6"},
        NvidiaState.OK,
        "580.95.05",
        None,
        ("8.6",),
        "override",
        "docker",
    ),
    "cc-per-gpu": Override(
        "a100-mig",
        {"TORCHENV_GPU_COMPUTE_CAPABILITY": "9.0", "CUDA_VISIBLE_DEVICES": "0,1"},
        NvidiaState.OK,
        "570.172.08",
        "12.8",
        ("9.0", "9.0"),
        "override",
    ),
    "cc-count-differs": Override(
        "h100-driver580",
        {"TORCHENV_GPU_COMPUTE_CAPABILITY": "8.0,8.6"},
        NvidiaState.OK,
        "580.95.05",
        "13.0",
        ("8.0", "8.6"),
        "override",
    ),
    "cc-bad-ignored": Override(
        "h100-driver580",
        {"TORCHENV_GPU_COMPUTE_CAPABILITY": "sm_90"},
        NvidiaState.OK,
        "580.95.05",
        "13.0",
        ("9.0",) * 8,
        "nvml",
    ),
    "describe-another-machine": Override(
        "cpu-cloud-vm",
        {
            "TORCHENV_GPU_COMPUTE_CAPABILITY": "8.6,9.0",
            "TORCHENV_CUDA_DRIVER_VERSION": "570.133.07",
        },
        NvidiaState.OK,
        "570.133.07",
        None,
        ("8.6", "9.0"),
        "override",
    ),
    "cc-without-driver": Override(
        "cpu-cloud-vm",
        {"TORCHENV_GPU_COMPUTE_CAPABILITY": "8.6"},
        NvidiaState.NO_DRIVER,
        None,
        None,
        ("8.6",),
        "override",
    ),
    "driver-on-first-boot": Override(
        "firstboot-not-loaded",
        {"TORCHENV_GPU_COMPUTE_CAPABILITY": "8.9"},
        NvidiaState.OK,
        "580.95.05",
        None,
        ("8.9",),
        "override",
    ),
}


@pytest.mark.parametrize("case", sorted(OVERRIDES))
def test_overrides(case: str) -> None:
    o = OVERRIDES[case]
    report = probe_dir(HOSTS / o.host, container=o.container, env=dict(o.env))
    assert report.state == o.state
    assert report.driver_version == o.driver
    assert report.cuda_driver_version == o.cuda
    assert tuple(g.compute_capability for g in report.gpus) == o.ccs
    assert report.source == o.source
    for name in o.env:
        if name.startswith("TORCHENV_"):
            assert any(name in r for r in report.reasons), report.reasons


def test_overrides_leave_tegra_a_tegra() -> None:
    report = probe_dir(HOSTS / "jetson-orin", env={"TORCHENV_CUDA_DRIVER_VERSION": "540.4.0"})
    assert report.state == NvidiaState.TEGRA and report.source == "override"


def test_probe_host_carries_the_nvidia_section() -> None:
    from torchenv.probes import probe_host

    report = probe_host(ReplayIO(HOSTS / "container-no-nvml"))
    assert report.system.container == "docker"
    assert report.nvidia.state == NvidiaState.NVML_MISSING
    # the host's OS and container reach the NVIDIA probe (the container hint is in its reasons)
    assert report.nvidia == probe_dir(HOSTS / "container-no-nvml", container="docker")
    assert report.nvidia != probe_dir(HOSTS / "container-no-nvml", container=None)
