"""First boot: is an NVIDIA GPU present whose driver has not loaded yet? (sysfs reads only)."""

from __future__ import annotations

import os
from pathlib import Path

NVIDIA_VENDOR = "0x10de"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def nvidia_gpu_present(root: Path) -> bool:
    """A PCI display controller (class 0x03xxxx) from NVIDIA under root/sys/bus/pci/devices."""
    devices = root / "sys/bus/pci/devices"
    try:
        names = os.listdir(devices)
    except OSError:
        return False
    for name in names:
        vendor = _read(devices / name / "vendor")
        klass = _read(devices / name / "class") or ""
        if vendor == NVIDIA_VENDOR and klass.startswith("0x03"):
            return True
    return False


def driver_loaded(root: Path, version_file: str) -> bool:
    return bool(_read(root / version_file.lstrip("/")))


def should_wait(root: Path, version_file: str) -> bool:
    """Wait only where a driver is expected: an NVIDIA GPU is there and its module is not."""
    return nvidia_gpu_present(root) and not driver_loaded(root, version_file)
