"""Intel GPUs for the xpu builds: display-class PCI devices with Intel's vendor id."""

from __future__ import annotations

from torchenv.probes.hostio import HostIO, list_optional, read_optional
from torchenv.probes.report import IntelGpu, IntelReport

PCI_DEVICES = "/sys/bus/pci/devices"
INTEL_VENDOR = 0x8086
DISPLAY_CLASS = 0x03  # PCI base class "display controller"
DEVICE_NAMES = {  # PCI device id -> name (the pci.ids database)
    0x56A0: "Intel Arc A770",
    0x56A1: "Intel Arc A750",
    0x56A5: "Intel Arc A380",
    0xE20B: "Intel Arc B580",
    0xE20C: "Intel Arc B570",
    0x0BD5: "Intel Data Center GPU Max 1550",
    0x0BDA: "Intel Data Center GPU Max 1100",
}


def parse_hex(text: str | None) -> int | None:
    """A sysfs id file ("0x030000\\n") -> 0x030000; None when absent or malformed."""
    if text is None:
        return None
    try:
        return int(text.strip(), 16)
    except ValueError:
        return None


def is_display(pci_class: int) -> bool:
    return pci_class >> 16 == DISPLAY_CLASS


def parse_uevent_driver(text: str | None) -> str | None:
    """The DRIVER= line of a PCI device's uevent file (i915, xe), if bound."""
    for line in (text or "").splitlines():
        key, _, value = line.partition("=")
        if key == "DRIVER" and value.strip():
            return value.strip()
    return None


def _device(io: HostIO, address: str) -> tuple[IntelGpu | None, list[str]]:
    base = f"{PCI_DEVICES}/{address}"
    text, reason = read_optional(io, f"{base}/class")
    pci_class = parse_hex(text)
    if pci_class is None or not is_display(pci_class):
        return None, [reason] if reason else []
    vendor_text, reason = read_optional(io, f"{base}/vendor")
    if parse_hex(vendor_text) != INTEL_VENDOR:
        return None, [reason] if reason else []
    device_text, reason = read_optional(io, f"{base}/device")
    device = parse_hex(device_text)
    if device is None:
        return None, [reason or f"{base}/device: not a PCI device id"]
    uevent, _ = read_optional(io, f"{base}/uevent")
    gpu = IntelGpu(
        pci_address=address,
        device_id=f"0x{device:04x}",
        name=DEVICE_NAMES.get(device),
        driver=parse_uevent_driver(uevent),
    )
    return gpu, []


def probe(io: HostIO, *, os_name: str) -> IntelReport:
    """Read the Intel section from the PCI bus (Linux; elsewhere the section stays empty)."""
    if os_name != "linux":
        return IntelReport()
    addresses, reason = list_optional(io, PCI_DEVICES)
    gpus: list[IntelGpu] = []
    reasons: list[str] = [reason] if reason else []
    for address in addresses:
        gpu, more = _device(io, address)
        reasons += more
        if gpu is not None:
            gpus.append(gpu)
    return IntelReport(gpus=tuple(gpus), reasons=tuple(reasons))
