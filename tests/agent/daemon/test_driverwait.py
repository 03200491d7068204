"""First boot: the agent waits for the NVIDIA driver where the NVIDIA probe sees a GPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import HOSTS

from torchenv.agent.daemon.config import DRIVER_VERSION_FILE
from torchenv.agent.daemon.driverwait import nvidia_gpu_present, should_wait
from torchenv.probes import ReplayIO
from torchenv.probes.nvidia import pci_gpus


def test_waits_for_the_module_of_a_gpu_on_the_bus(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(HOSTS / "firstboot-not-loaded/root", root)
    assert should_wait(root, DRIVER_VERSION_FILE)
    version = root / DRIVER_VERSION_FILE.lstrip("/")
    version.parent.mkdir(parents=True)
    version.write_text("580.95.05\n")
    assert not should_wait(root, DRIVER_VERSION_FILE)


@pytest.mark.parametrize(
    ("vendor", "klass", "gpu"),
    [
        ("0x10de\n", "0x030000\n", True),  # VGA controller
        ("0x10de\n", "0x030200\n", True),  # 3D controller (data-centre GPUs)
        ("0x10DE\n", "0x030200\n", True),  # the probe reads the vendor in either case
        ("0x10de\n", "0x040300\n", False),  # the GPU's audio function
        ("0x1002\n", "0x030000\n", False),  # AMD
    ],
)
def test_the_wait_and_the_probe_agree_on_what_an_nvidia_gpu_is(
    vendor: str, klass: str, gpu: bool, tmp_path: Path
) -> None:
    device = tmp_path / "root/sys/bus/pci/devices/0000:41:00.0"
    device.mkdir(parents=True)
    (device / "vendor").write_text(vendor)
    (device / "class").write_text(klass)
    (device / "device").write_text("0x2330\n")
    assert nvidia_gpu_present(tmp_path / "root") is gpu
    assert bool(pci_gpus(ReplayIO(tmp_path))) is gpu
    assert should_wait(tmp_path / "root", DRIVER_VERSION_FILE) is gpu


def test_no_pci_bus_is_no_wait(tmp_path: Path) -> None:
    assert not nvidia_gpu_present(tmp_path)
    assert not should_wait(tmp_path, DRIVER_VERSION_FILE)
