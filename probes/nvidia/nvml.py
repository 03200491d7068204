"""NVML, the only importer of pynvml: a snapshot of what torchenv needs, errors as values."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from torchenv.probes.nvidia.parsers import (
    CC_RE,
    cuda_level,
    normalise_bus_id,
    parse_driver_version,
)
from torchenv.probes.report import NvidiaGpu, NvidiaReport, NvidiaState

# NVML init errors that mean "the library is not there" rather than "it answered badly".
NVML_MISSING_ERRORS = frozenset({"LIBRARY_NOT_FOUND", "BINDING_MISSING"})


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


def live_snapshot() -> dict[str, Any]:
    try:
        module = load_pynvml()
    except ImportError as exc:
        return {"error": "BINDING_MISSING", "message": str(exc)}
    return nvml_snapshot(module)


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
        compute_capability=cc if isinstance(cc, str) and CC_RE.fullmatch(cc) else None,
        memory_total_mib=memory if isinstance(memory, int) else None,
        mig_mode=mig if isinstance(mig, bool) else None,
        pci_bus_id=normalise_bus_id(raw.get("pci_bus_id") or ""),
    )
    return gpu, notes
