"""NVIDIA: driver, CUDA level and GPUs from NVML, falling back to nvidia-smi, sysfs, procfs, PCI."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torchenv.probes.hostio import (
    CommandResult,
    FactUnavailable,
    HostIO,
    list_optional,
    read_optional,
)
from torchenv.probes.report import NvidiaGpu, NvidiaReport, NvidiaState

NVIDIA_VENDOR = "0x10de"
PCI_DEVICES = "/sys/bus/pci/devices"
SYSFS_VERSION = "/sys/module/nvidia/version"
PROCFS_DIR = "/proc/driver/nvidia"
PROCFS_VERSION = "/proc/driver/nvidia/version"
PROCFS_GPUS = "/proc/driver/nvidia/gpus"
WSL_LIB_DIR = "/usr/lib/wsl/lib"
TEGRA_RELEASE = "/etc/nv_tegra_release"
DT_MODEL = "/proc/device-tree/model"
DT_COMPATIBLE = "/proc/device-tree/compatible"

SMI_FIELDS = (
    "index",
    "name",
    "uuid",
    "driver_version",
    "compute_cap",
    "memory.total",
    "mig.mode.current",
)
SMI_QUERY = ("--query-gpu=" + ",".join(SMI_FIELDS), "--format=csv,noheader,nounits")
MODINFO_ARGV = ("modinfo", "-F", "version", "nvidia")

ENV_DRIVER = "TORCHENV_CUDA_DRIVER_VERSION"
ENV_CC = "TORCHENV_GPU_COMPUTE_CAPABILITY"

# NVML init errors that mean "the library is not there" rather than "it answered badly".
NVML_MISSING_ERRORS = frozenset({"LIBRARY_NOT_FOUND", "BINDING_MISSING"})

_DRIVER_RE = re.compile(r"\d{2,4}\.\d{1,3}(?:\.\d{1,3})?")
_CC_RE = re.compile(r"\d{1,2}\.\d")

MigDevices = Mapping[int, Sequence[str]]  # GPU index -> the UUIDs of its MIG devices


# --- NVML: the only code that touches pynvml ----------------------------------------------


def load_pynvml() -> Any:
    """Import the binding (nvidia-ml-py) only when a driver is in sight: it costs ~40 ms."""
    import pynvml

    return pynvml


def nvml_snapshot(nvml: Any) -> dict[str, Any]:
    """Everything torchenv needs from NVML as JSON-able data; errors become values.

    `{"error": NAME, "message": ...}` when NVML cannot start; otherwise driver_version,
    cuda_driver_version (1000*major + 10*minor), devices (each with per-field `errors`)
    and top-level `errors` for the system calls that failed.
    """
    session = _NvmlSession(nvml)
    _, error = session.call("nvmlInit")
    if error is not None:
        return {"error": error, "message": session.last_message}
    try:
        return _read_nvml(session)
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


class _NvmlSession:
    """Calls into a pynvml-like module, turning NVMLError into an error name."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.last_message = ""
        self._names = {
            getattr(nvml, attr): attr.removeprefix("NVML_ERROR_")
            for attr in dir(nvml)
            if attr.startswith("NVML_ERROR_") and isinstance(getattr(nvml, attr), int)
        }

    def call(self, function: str, *args: Any) -> tuple[Any, str | None]:
        fn = getattr(self.nvml, function, None)
        if fn is None:  # the binding is older than the call
            self.last_message = f"the installed nvidia-ml-py has no {function}"
            return None, "FUNCTION_NOT_FOUND"
        try:
            return fn(*args), None
        except self.nvml.NVMLError as exc:
            value = getattr(exc, "value", None)
            self.last_message = str(exc)
            return None, self._names.get(value, f"ERROR_{value}")


def _read_nvml(s: _NvmlSession) -> dict[str, Any]:
    errors: dict[str, str] = {}
    driver, err = s.call("nvmlSystemGetDriverVersion")
    if err:
        errors["driver_version"] = err
    cuda, err = s.call("nvmlSystemGetCudaDriverVersion_v2")
    if err:
        errors["cuda_driver_version"] = err
    count, err = s.call("nvmlDeviceGetCount")
    if err:
        errors["device_count"] = err
    devices = [_read_device(s, i) for i in range(count or 0)]
    return {
        "driver_version": _text(driver),
        "cuda_driver_version": cuda,
        "devices": devices,
        "errors": errors,
    }


def _read_device(s: _NvmlSession, index: int) -> dict[str, Any]:
    errors: dict[str, str] = {}
    device: dict[str, Any] = {"index": index, "errors": errors}
    handle, err = s.call("nvmlDeviceGetHandleByIndex", index)
    if err:
        errors["handle"] = err
        return device

    def get(key: str, function: str, *args: Any) -> Any:
        value, error = s.call(function, handle, *args)
        if error:
            errors[key] = error
        return value

    device["name"] = _text(get("name", "nvmlDeviceGetName"))
    device["uuid"] = _text(get("uuid", "nvmlDeviceGetUUID"))
    cc = get("compute_capability", "nvmlDeviceGetCudaComputeCapability")
    device["compute_capability"] = f"{cc[0]}.{cc[1]}" if cc else None
    memory = get("memory_total_mib", "nvmlDeviceGetMemoryInfo")
    device["memory_total_mib"] = int(memory.total) // (1024 * 1024) if memory else None
    pci = get("pci_bus_id", "nvmlDeviceGetPciInfo")
    device["pci_bus_id"] = _text(pci.busId) if pci else None
    mig, mig_error = s.call("nvmlDeviceGetMigMode", handle)
    if mig_error == "NOT_SUPPORTED":  # a GPU without MIG is not in MIG mode
        device["mig_mode"] = False
    elif mig_error:
        errors["mig_mode"] = mig_error
        device["mig_mode"] = None
    else:
        device["mig_mode"] = bool(mig[0])
    if device["mig_mode"]:
        device["mig_devices"] = _read_mig_devices(s, handle, errors)
    return device


def _read_mig_devices(s: _NvmlSession, handle: Any, errors: dict[str, str]) -> list[str]:
    count, err = s.call("nvmlDeviceGetMaxMigDeviceCount", handle)
    if err:
        errors["mig_devices"] = err
        return []
    uuids = []
    for j in range(count or 0):
        mig, err = s.call("nvmlDeviceGetMigDeviceHandleByIndex", handle, j)
        if err:  # NOT_FOUND: an empty slot
            continue
        uuid, err = s.call("nvmlDeviceGetUUID", mig)
        text = _text(uuid)
        if text is not None:
            uuids.append(text)
    return uuids


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _live_snapshot() -> dict[str, Any]:
    try:
        module = load_pynvml()
    except ImportError as exc:
        return {"error": "BINDING_MISSING", "message": str(exc)}
    return nvml_snapshot(module)


# --- pure parsers --------------------------------------------------------------------------


def parse_driver_version(text: str) -> str | None:
    """/sys/module/nvidia/version or `modinfo -F version nvidia`: "580.95.05"."""
    value = text.strip()
    return value if _DRIVER_RE.fullmatch(value) else None


def parse_procfs_version(text: str) -> str | None:
    """The version in /proc/driver/nvidia/version's NVRM line (proprietary or open module)."""
    for line in text.splitlines():
        if line.startswith("NVRM version:"):
            match = re.search(r"\s(\d{2,4}\.\d{1,3}(?:\.\d{1,3})?)(?:\s|$)", line)
            return match.group(1) if match else None
    return None


def parse_gpu_information(text: str) -> dict[str, str | None]:
    """/proc/driver/nvidia/gpus/<pci>/information -> model, uuid, bus (None when unknown)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    uuid = fields.get("GPU UUID") or None
    if uuid is not None and "?" in uuid:  # the driver masks it until the GPU is initialised
        uuid = None
    return {
        "name": fields.get("Model") or None,
        "uuid": uuid,
        "pci_bus_id": normalise_bus_id(fields.get("Bus Location") or ""),
    }


def normalise_bus_id(value: str) -> str | None:
    """ "00000000:01:00.0" (NVML) or "0000:01:00.0" (sysfs) -> "0000:01:00.0"."""
    match = re.fullmatch(
        r"([0-9a-fA-F]{1,8}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])", value.strip()
    )
    if not match:
        return None
    domain, bus, dev, fn = match.groups()
    return f"{int(domain, 16):04x}:{bus.lower()}:{dev.lower()}.{fn}"


@dataclass(frozen=True)
class SmiRow:
    """One line of `nvidia-smi --query-gpu=...` (see SMI_FIELDS)."""

    gpu: NvidiaGpu
    driver_version: str | None


def parse_smi_query(stdout: str) -> tuple[list[SmiRow], list[str]]:
    """The CSV of SMI_QUERY (noheader, nounits); `[N/A]`/`[Not Supported]` become None."""
    rows: list[SmiRow] = []
    problems: list[str] = []
    for record in csv.reader(stdout.splitlines(), skipinitialspace=True):
        if not record or not "".join(record).strip():
            continue
        if len(record) != len(SMI_FIELDS):
            problems.append(f"nvidia-smi: unexpected line {', '.join(record)[:120]!r}")
            continue
        index, name, uuid, driver, cc, memory, mig = (_smi_value(v) for v in record)
        if index is None or not index.isdigit():
            problems.append(f"nvidia-smi: unexpected GPU index {record[0]!r}")
            continue
        gpu = NvidiaGpu(
            index=int(index),
            name=name,
            uuid=uuid,
            compute_capability=cc if cc and _CC_RE.fullmatch(cc) else None,
            memory_total_mib=int(memory) if memory and memory.isdigit() else None,
            mig_mode={"enabled": True, "disabled": False}.get((mig or "").lower()),
        )
        rows.append(SmiRow(gpu, parse_driver_version(driver) if driver else None))
    return rows, problems


def _smi_value(value: str) -> str | None:
    value = value.strip()
    if not value or (value.startswith("[") and value.endswith("]")) or value == "N/A":
        return None
    return value


def parse_smi_versions(text: str) -> tuple[str | None, str | None]:
    """(driver, CUDA) from `nvidia-smi --version` or the `nvidia-smi` header, old and new names
    ("DRIVER version"/"Driver Version"/"KMD Version", "CUDA Version"/"CUDA UMD Version")."""
    driver = re.search(r"(?:DRIVER|KMD) version\s*:\s*(\d[\d.]*\d)", text, re.IGNORECASE)
    cuda = re.search(r"CUDA (?:UMD )?Version\s*:\s*(\d+\.\d+)", text, re.IGNORECASE)
    return (
        parse_driver_version(driver.group(1)) if driver else None,
        cuda.group(1) if cuda else None,
    )


def parse_tegra_release(text: str) -> str | None:
    """/etc/nv_tegra_release "# R36 (release), REVISION: 4.0, ..." -> "36.4.0"."""
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+(?:\.\d+)*)", text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def cuda_level(value: Any) -> str | None:
    """NVML's 1000*major + 10*minor (13000) -> "13.0"."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return None
    return f"{value // 1000}.{value % 1000 // 10}"


# --- visibility ------------------------------------------------------------------------------


def apply_visibility(
    report: NvidiaReport,
    *,
    nvidia_visible: str | None,
    cuda_visible: str | None,
    in_container: bool,
    mig_devices: MigDevices | None = None,
    device_order: str | None = None,
) -> NvidiaReport:
    """Hide the GPUs that NVIDIA_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES leave out."""
    if not report.gpus or (nvidia_visible is None and cuda_visible is None):
        return report
    migs = mig_devices or {}
    gpus = list(report.gpus)
    reasons: list[str] = []
    if nvidia_visible is not None:
        gpus, notes = _nvidia_visible(gpus, nvidia_visible, in_container, migs)
        reasons += notes
    if cuda_visible is not None:
        gpus, notes = _cuda_visible(gpus, cuda_visible, migs)
        reasons += notes
        uses_index = any(t.strip().lstrip("-").isdigit() for t in cuda_visible.split(","))
        if uses_index and len({g.name for g in report.gpus}) > 1 and device_order != "PCI_BUS_ID":
            reasons.append(
                "CUDA_VISIBLE_DEVICES uses indices on mixed GPUs: CUDA numbers them "
                "fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID; PCI order assumed"
            )
    hidden = len(report.gpus) - len(gpus)
    return dataclasses.replace(
        report,
        gpus=tuple(gpus),
        hidden_gpus=report.hidden_gpus + hidden,
        reasons=report.reasons + tuple(reasons),
    )


def _nvidia_visible(
    gpus: list[NvidiaGpu], value: str, in_container: bool, migs: MigDevices
) -> tuple[list[NvidiaGpu], list[str]]:
    word = value.strip().lower()
    if word == "all":
        return gpus, []
    if word in ("none", "void", ""):
        shown = word or repr(value)
        return [], [f"NVIDIA_VISIBLE_DEVICES={shown}: no GPU is visible"]
    tokens = [t.strip() for t in value.split(",") if t.strip()]
    if in_container and any(t.isdigit() for t in tokens):
        return gpus, [
            f"NVIDIA_VISIBLE_DEVICES={value}: indices were applied by the container "
            "runtime already; not applied again"
        ]
    notes = (
        []
        if in_container
        else [
            f"NVIDIA_VISIBLE_DEVICES={value} applied outside a container (it limits only what a "
            "container started with it sees)"
        ]
    )
    keep: list[NvidiaGpu] = []
    for token in tokens:
        match = _match_token(gpus, token, migs, exact=True)
        if match is None:
            notes.append(f"NVIDIA_VISIBLE_DEVICES: {token!r} names no GPU here")
        elif match not in keep:
            keep.append(match)
    return keep, notes


def _cuda_visible(
    gpus: list[NvidiaGpu], value: str, migs: MigDevices
) -> tuple[list[NvidiaGpu], list[str]]:
    if not value.strip():
        return [], ["CUDA_VISIBLE_DEVICES is empty: CUDA sees no GPU"]
    keep: list[NvidiaGpu] = []
    notes: list[str] = []
    for token in (t.strip() for t in value.split(",")):
        match = _match_token(gpus, token, migs, exact=False)
        if match is None:
            notes.append(
                f"CUDA_VISIBLE_DEVICES={value}: CUDA stops at {token!r} "
                "and ignores it and every entry after it"
            )
            break
        if match in keep:
            notes.append(f"CUDA_VISIBLE_DEVICES names GPU {match.index} twice")
        else:
            keep.append(match)
    return keep, notes


def _match_token(
    gpus: list[NvidiaGpu], token: str, migs: MigDevices, *, exact: bool
) -> NvidiaGpu | None:
    """The GPU an entry names: an index into `gpus`, a GPU UUID (or, for CUDA, a unique
    prefix of one), or a MIG device (its parent GPU)."""
    if re.fullmatch(r"-?\d+", token):
        position = int(token)
        return gpus[position] if 0 <= position < len(gpus) else None
    lowered = token.lower()
    if lowered.startswith("mig-gpu-"):  # legacy MIG-GPU-<uuid>/<gi>/<ci>
        parent = lowered[len("mig-") :].split("/")[0]
        return _unique(g for g in gpus if (g.uuid or "").lower() == parent)
    if lowered.startswith("mig-"):
        return _unique(
            g for g in gpus if any(_uuid_matches(m, lowered, exact) for m in migs.get(g.index, ()))
        )
    if lowered.startswith("gpu-"):
        return _unique(g for g in gpus if _uuid_matches(g.uuid or "", lowered, exact))
    return None


def _uuid_matches(uuid: str, wanted: str, exact: bool) -> bool:
    uuid = uuid.lower()
    return uuid == wanted if exact else bool(uuid) and uuid.startswith(wanted)


def _unique(candidates: Any) -> NvidiaGpu | None:
    found = list(candidates)
    return found[0] if len(found) == 1 else None


# --- overrides -------------------------------------------------------------------------------


def apply_overrides(
    report: NvidiaReport, *, driver: str | None, compute_capability: str | None
) -> NvidiaReport:
    """TORCHENV_CUDA_DRIVER_VERSION and TORCHENV_GPU_COMPUTE_CAPABILITY, visible as such."""
    if not driver and not compute_capability:
        return report
    reasons = list(report.reasons)
    changed = report
    if driver:
        given = parse_driver_version(driver)
        if given is None:
            reasons.append(
                f"{ENV_DRIVER}={driver!r} is not a driver version like 580.95.05; ignored"
            )
        else:
            agrees = report.source == "nvml" and report.driver_version == given
            changed = dataclasses.replace(
                changed,
                driver_version=given,
                cuda_driver_version=report.cuda_driver_version if agrees else None,
            )
            reasons.append(
                f"driver version {given} from {ENV_DRIVER}"
                + ("" if agrees else " (the CUDA level follows from it)")
            )
    if compute_capability:
        changed, notes = _override_cc(changed, compute_capability)
        reasons += notes
    if changed is report:
        return dataclasses.replace(report, reasons=tuple(reasons))
    state = changed.state
    if state != NvidiaState.TEGRA:
        if changed.driver_version:
            state = NvidiaState.OK
        elif changed.gpus and state == NvidiaState.ABSENT:
            state = NvidiaState.NO_DRIVER
            reasons.append(f"{ENV_CC} defines GPUs but no driver is known; set {ENV_DRIVER}")
    if state != report.state:
        reasons.append(f"state {report.state.value} before the overrides")
    return dataclasses.replace(changed, state=state, source="override", reasons=tuple(reasons))


def _override_cc(report: NvidiaReport, value: str) -> tuple[NvidiaReport, list[str]]:
    ccs = [v.strip() for v in value.split(",")]
    bad = [cc for cc in ccs if not _CC_RE.fullmatch(cc)]
    if bad or not ccs:
        return report, [
            f"{ENV_CC}={value!r}: {', '.join(map(repr, bad))} is not a compute "
            "capability like 8.6; ignored"
        ]
    gpus = report.gpus
    note = f"compute capabilities {', '.join(ccs)} from {ENV_CC}"
    if len(ccs) == 1 and gpus:
        new = tuple(dataclasses.replace(g, compute_capability=ccs[0]) for g in gpus)
    elif len(ccs) == len(gpus):
        new = tuple(
            dataclasses.replace(g, compute_capability=cc) for g, cc in zip(gpus, ccs, strict=True)
        )
    else:
        if gpus:
            note += f" (replacing the {len(gpus)} GPUs found)"
        new = tuple(
            NvidiaGpu(index=i, name=f"from {ENV_CC}", compute_capability=cc)
            for i, cc in enumerate(ccs)
        )
    return dataclasses.replace(report, gpus=new), [note]


# --- NVML answers as a report ---------------------------------------------------------------

NVML_HINTS = {
    "LIBRARY_NOT_FOUND": "libnvidia-ml.so.1 is not installed",
    "DRIVER_NOT_LOADED": "the NVIDIA kernel module is not loaded",
    "NO_PERMISSION": "no permission to open /dev/nvidia*",
    "FUNCTION_NOT_FOUND": "the nvidia-ml-py binding does not match the driver",
    "LIB_RM_VERSION_MISMATCH": "the driver's libraries and the loaded kernel module differ "
    "(upgraded without a reboot? reboot or reload the module)",
    "BINDING_MISSING": "the nvidia-ml-py package is not installed (pip install nvidia-ml-py)",
}
CONTAINER_NVML_HINT = (
    "libnvidia-ml is not mounted: the container lacks the `utility` driver "
    "capability (NVIDIA_DRIVER_CAPABILITIES=compute,utility)"
)
CC_HINT = (
    "compute capability unknown: set TORCHENV_GPU_COMPUTE_CAPABILITY (e.g. 8.6,9.0)"
    " or make NVML available"
)


def nvml_error_reason(error: str, message: str = "", *, in_container: bool = False) -> str:
    """One line for an NVML init failure, saying what it most likely means."""
    if error == "LIBRARY_NOT_FOUND" and in_container:
        hint = CONTAINER_NVML_HINT
    else:
        hint = NVML_HINTS.get(error, message or "see the driver's logs")
    return f"NVML: {error}: {hint}"


def report_from_snapshot(
    snap: Mapping[str, Any],
) -> tuple[NvidiaReport, dict[int, tuple[str, ...]]]:
    """A successful `nvml_snapshot` as a report (state OK) and the MIG devices per GPU."""
    reasons: list[str] = []
    raw_driver = snap.get("driver_version")
    driver = parse_driver_version(raw_driver) if isinstance(raw_driver, str) else None
    if raw_driver is not None and driver is None:
        reasons.append(f"NVML: driver version {str(raw_driver)[:40]!r} is not a version")
    cuda = cuda_level(snap.get("cuda_driver_version"))
    for key, error in dict(snap.get("errors") or {}).items():
        hint = NVML_HINTS.get(error, "")
        if error == "FUNCTION_NOT_FOUND":
            hint = "the nvidia-ml-py binding is newer than the driver"
        reasons.append(f"NVML: cannot read {key}: {error}" + (f" ({hint})" if hint else ""))
    gpus: list[NvidiaGpu] = []
    migs: dict[int, tuple[str, ...]] = {}
    for raw in snap.get("devices") or ():
        gpu, notes = _gpu_from_snapshot(raw)
        gpus.append(gpu)
        reasons += notes
        if raw.get("mig_devices"):
            migs[gpu.index] = tuple(str(u) for u in raw["mig_devices"])
    report = NvidiaReport(
        state=NvidiaState.OK,
        driver_version=driver,
        cuda_driver_version=cuda,
        gpus=tuple(gpus),
        source="nvml",
        reasons=tuple(reasons),
    )
    return report, migs


def _gpu_from_snapshot(raw: Mapping[str, Any]) -> tuple[NvidiaGpu, list[str]]:
    index = int(raw.get("index", 0))
    notes = [
        f"GPU {index}: NVML cannot read {key}: {error}"
        for key, error in dict(raw.get("errors") or {}).items()
    ]
    cc = raw.get("compute_capability")
    memory = raw.get("memory_total_mib")
    mig = raw.get("mig_mode")
    gpu = NvidiaGpu(
        index=index,
        name=raw.get("name"),
        uuid=raw.get("uuid"),
        compute_capability=cc if isinstance(cc, str) and _CC_RE.fullmatch(cc) else None,
        memory_total_mib=memory if isinstance(memory, int) else None,
        mig_mode=mig if isinstance(mig, bool) else None,
        pci_bus_id=normalise_bus_id(raw.get("pci_bus_id") or ""),
    )
    return gpu, notes


# --- the probe -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    """A detection path's answer before visibility and overrides."""

    report: NvidiaReport
    mig_devices: Mapping[int, tuple[str, ...]] = dataclasses.field(default_factory=dict)


@dataclass
class _Probe:
    """One probe run: the host, its limits, and the reasons gathered on the way."""

    io: HostIO
    timeout: float
    container: str | None
    notes: list[str] = dataclasses.field(default_factory=list)
    smi_dead: bool = False  # nvidia-smi hung or is absent: do not ask it again

    def done(
        self, report: NvidiaReport, migs: Mapping[int, tuple[str, ...]] | None = None
    ) -> _Found:
        return _Found(
            dataclasses.replace(report, reasons=report.reasons + tuple(self.notes)), migs or {}
        )

    def read(self, path: str) -> str | None:
        text, problem = read_optional(self.io, path)
        if problem:
            self.notes.append(problem)
        return text

    def listing(self, path: str) -> list[str]:
        """The directory's entries; [] when it is missing, [] and a reason when unreadable."""
        names, problem = list_optional(self.io, path)
        if problem:
            self.notes.append(problem)
        return names

    def run(self, argv: Sequence[str]) -> CommandResult | None:
        """A command's result when it succeeded; None (and a reason) otherwise."""
        result = self.io.run(argv, self.timeout)
        if result.ok:
            return result
        name = argv[0].rsplit("/", 1)[-1]
        if result.error == "timeout":
            self.notes.append(f"{name}: no answer within {self.timeout:g} s")
        elif result.error == "not-found":
            self.notes.append(f"{name}: not found")
        elif result.error:
            self.notes.append(f"{name}: {result.error}")
        else:
            first = (result.stdout.strip() or result.stderr.strip()).splitlines()[:1]
            self.notes.append(
                f"{name}: exit {result.returncode}" + (f": {first[0][:160]}" if first else "")
            )
        if name == "nvidia-smi" and result.error in ("timeout", "not-found"):
            self.smi_dead = True
        return None


def probe(
    io: HostIO, *, os_name: str, container: str | None, command_timeout: float = 5.0
) -> NvidiaReport:
    """The NVIDIA stack of the host behind `io`. Never raises for a broken source."""
    run = _Probe(io, command_timeout, container)
    if os_name == "linux":
        found = _detect_linux(run)
    elif os_name == "windows":
        found = _detect_windows(run)
    else:
        found = _Found(NvidiaReport())
    report = apply_visibility(
        found.report,
        nvidia_visible=io.getenv("NVIDIA_VISIBLE_DEVICES"),
        cuda_visible=io.getenv("CUDA_VISIBLE_DEVICES"),
        in_container=container is not None,
        mig_devices=found.mig_devices,
        device_order=io.getenv("CUDA_DEVICE_ORDER"),
    )
    return apply_overrides(
        report, driver=io.getenv(ENV_DRIVER), compute_capability=io.getenv(ENV_CC)
    )


def _detect_windows(run: _Probe) -> _Found:
    windir = run.io.getenv("SystemRoot") or "C:/Windows"
    program_files = run.io.getenv("ProgramFiles") or "C:/Program Files"
    dlls = (f"{windir}/System32/nvml.dll", f"{program_files}/NVIDIA Corporation/NVSMI/nvml.dll")
    if not any(run.io.exists(p) for p in dlls):
        return _Found(NvidiaReport())
    found, _ = _from_nvml_or_smi(run, "nvidia-smi", kernel=None)
    return found or run.done(NvidiaReport(state=NvidiaState.ERROR))


def _detect_linux(run: _Probe) -> _Found:
    tegra = _tegra(run)
    if tegra is not None:
        return run.done(tegra)
    io = run.io
    module = io.exists("/sys/module/nvidia") or io.exists(PROCFS_DIR)
    wsl = io.exists(f"{WSL_LIB_DIR}/libnvidia-ml.so.1")
    device_node = io.exists("/dev/nvidiactl")
    if not (module or wsl or device_node):
        return _from_pci(run, evidence=False)
    kernel = _kernel_driver(run) if module else None
    smi = (
        f"{WSL_LIB_DIR}/nvidia-smi"
        if wsl and io.exists(f"{WSL_LIB_DIR}/nvidia-smi")
        else "nvidia-smi"
    )
    found, nvml_error = _from_nvml_or_smi(run, smi, kernel=kernel)
    if found is not None:
        return found
    if module:
        return _from_kernel(run, kernel, nvml_error)
    return _from_pci(run, evidence=True)


def _tegra(run: _Probe) -> NvidiaReport | None:
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


@dataclass(frozen=True)
class _Kernel:
    version: str | None
    source: str  # "sysfs" or "procfs"


def _kernel_driver(run: _Probe) -> _Kernel:
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
            return _Kernel(version, source)
        run.notes.append(f"{path}: no driver version in {text.strip()[:60]!r}")
    return _Kernel(None, "sysfs")


def _nvml(run: _Probe) -> Mapping[str, Any] | None:
    try:
        snap = run.io.fact("nvml", _live_snapshot)
    except FactUnavailable as exc:
        run.notes.append(f"NVML: {exc}")
        return None
    if not isinstance(snap, dict):
        run.notes.append("NVML: the recorded answer is not an object")
        return None
    return snap


def _from_nvml_or_smi(
    run: _Probe, smi: str, *, kernel: _Kernel | None
) -> tuple[_Found | None, str | None]:
    """NVML, then nvidia-smi; (None, NVML's error) when neither enumerates the GPUs."""
    snap = _nvml(run)
    error = None if snap is None else snap.get("error")
    if snap is not None and error is None:
        report, migs = report_from_snapshot(snap)
        report = _fill_from_smi(run, smi, report)
        _check_kernel(run, report.driver_version, kernel)
        return run.done(report, migs), None
    if error is not None:
        run.notes.append(
            nvml_error_reason(
                str(error),
                str(snap.get("message", "")) if snap else "",
                in_container=run.container is not None,
            )
        )
    rows = _smi_rows(run, smi)
    if not rows:
        return None, None if error is None else str(error)
    drivers = {r.driver_version for r in rows if r.driver_version}
    driver = drivers.pop() if len(drivers) == 1 else None
    _, cuda = _smi_versions(run, smi)
    _check_kernel(run, driver, kernel)
    report = NvidiaReport(
        state=NvidiaState.OK,
        driver_version=driver,
        cuda_driver_version=cuda,
        gpus=tuple(r.gpu for r in rows),
        source="nvidia-smi",
    )
    return run.done(report), None


def _smi_rows(run: _Probe, smi: str) -> list[SmiRow]:
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


def _smi_versions(run: _Probe, smi: str) -> tuple[str | None, str | None]:
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


def _fill_from_smi(run: _Probe, smi: str, report: NvidiaReport) -> NvidiaReport:
    """Ask nvidia-smi only for what NVML left unknown; note where the two disagree."""
    missing_cc = any(g.compute_capability is None for g in report.gpus)
    if report.cuda_driver_version is None and not run.smi_dead:
        driver, cuda = _smi_versions(run, smi)
        if cuda is not None:
            run.notes.append(f"CUDA level {cuda} from nvidia-smi")
            report = dataclasses.replace(report, cuda_driver_version=cuda)
        _note_disagreement(run, "driver version", report.driver_version, driver)
    if not missing_cc and report.driver_version is not None:
        return report
    rows = _smi_rows(run, smi)
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


def _note_disagreement(run: _Probe, what: str, nvml: str | None, smi: str | None) -> None:
    if nvml is not None and smi is not None and nvml != smi:
        run.notes.append(f"nvidia-smi reports {what} {smi} but NVML {nvml}; NVML's is used")


def _check_kernel(run: _Probe, driver: str | None, kernel: _Kernel | None) -> None:
    if kernel is None or kernel.version is None or driver is None or kernel.version == driver:
        return
    run.notes.append(
        f"the loaded kernel module is {kernel.version} ({kernel.source}) but the "
        f"driver libraries are {driver}: reboot or reload the module"
    )


def _from_kernel(run: _Probe, kernel: _Kernel | None, nvml_error: str | None) -> _Found:
    """The module is loaded but neither NVML nor nvidia-smi answered."""
    gpus = _procfs_gpus(run) or _pci_gpus(run)
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


def _procfs_gpus(run: _Probe) -> list[NvidiaGpu]:
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


def _pci_gpus(run: _Probe) -> list[NvidiaGpu]:
    """NVIDIA display-class devices (vendor 0x10de, class 0x03xxxx) on the PCI bus."""
    gpus: list[NvidiaGpu] = []
    for address in run.listing(PCI_DEVICES):
        base = f"{PCI_DEVICES}/{address}"
        vendor, _ = read_optional(run.io, f"{base}/vendor")
        if vendor is None or vendor.strip().lower() != NVIDIA_VENDOR:
            continue
        klass, _ = read_optional(run.io, f"{base}/class")
        if klass is None or not klass.strip().lower().startswith("0x03"):
            continue
        device, _ = read_optional(run.io, f"{base}/device")
        name = f"NVIDIA PCI device {device.strip().lower()}" if device else None
        gpus.append(
            NvidiaGpu(index=len(gpus), name=name, pci_bus_id=normalise_bus_id(address) or address)
        )
    return gpus


def _from_pci(run: _Probe, *, evidence: bool) -> _Found:
    """No loaded module: NVIDIA hardware with the driver installed, not installed, or none."""
    gpus = _pci_gpus(run)
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
