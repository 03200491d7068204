"""NVIDIA: driver, CUDA level and GPUs from NVML, falling back to nvidia-smi, sysfs, procfs, PCI."""

from __future__ import annotations

from torchenv.probes.nvidia.fallbacks import MODINFO_ARGV, pci_gpus
from torchenv.probes.nvidia.nvml import (
    live_snapshot,
    load_pynvml,
    nvml_snapshot,
    report_from_snapshot,
)
from torchenv.probes.nvidia.parsers import (
    SMI_QUERY,
    cuda_level,
    normalise_bus_id,
    parse_driver_version,
    parse_gpu_information,
    parse_procfs_version,
    parse_smi_query,
    parse_smi_versions,
    parse_tegra_release,
)
from torchenv.probes.nvidia.probe import probe
from torchenv.probes.nvidia.visibility import apply_visibility

__all__ = [
    "MODINFO_ARGV",
    "SMI_QUERY",
    "apply_visibility",
    "cuda_level",
    "live_snapshot",
    "load_pynvml",
    "normalise_bus_id",
    "nvml_snapshot",
    "parse_driver_version",
    "parse_gpu_information",
    "parse_procfs_version",
    "parse_smi_query",
    "parse_smi_versions",
    "parse_tegra_release",
    "pci_gpus",
    "probe",
    "report_from_snapshot",
]
