"""First boot: is an NVIDIA GPU present whose driver has not loaded yet? (sysfs reads only)."""

from __future__ import annotations

from pathlib import Path


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def nvidia_gpu_present(root: Path) -> bool:
    """An NVIDIA GPU on the PCI bus under `root`, as the NVIDIA probe finds them."""
    from torchenv.probes.hostio import LiveIO
    from torchenv.probes.nvidia import pci_gpus

    return bool(pci_gpus(LiveIO(root)))


def driver_loaded(root: Path, version_file: str) -> bool:
    return bool(_read(root / version_file.lstrip("/")))


def should_wait(root: Path, version_file: str) -> bool:
    """Wait only where a driver is expected: an NVIDIA GPU is there and its module is not."""
    return nvidia_gpu_present(root) and not driver_loaded(root, version_file)
