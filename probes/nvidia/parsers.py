"""Pure parsers of what the NVIDIA stack prints: nvidia-smi, procfs, sysfs, modinfo, Tegra."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from typing import Any

from torchenv.probes.report import NvidiaGpu

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


_DRIVER_RE = re.compile(r"\d{2,4}\.\d{1,3}(?:\.\d{1,3})?")
CC_RE = re.compile(r"\d{1,2}\.\d")


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
            compute_capability=cc if cc and CC_RE.fullmatch(cc) else None,
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
