"""The backend vocabulary: one rule for backend names, index directories and local labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.hosts import linux_host, mac_host

from torchenv.agent.base.settings import load_settings
from torchenv.agent.lock.inputs import family_index
from torchenv.agent.verify import check as verify
from torchenv.agent.verify.check import DevicePlan, Expectation, Status
from torchenv.backends import vocabulary
from torchenv.backends.select import Request, index_url
from torchenv.backends.vocabulary import Kind, backend_kind, label_ok, variant_of

# Every CUDA variant the PyTorch index has used is cu + the CUDA version's digits (cu92 for
# 9.2 in torch 1.x, cu118, cu132); ROCm variants are rocm + a dotted version.
NAMES = [
    ("cpu", Kind.CPU),
    ("xpu", Kind.XPU),
    ("mps", Kind.MPS),
    ("cu92", Kind.CUDA),
    ("cu118", Kind.CUDA),
    ("cu132", Kind.CUDA),
    ("rocm6.4", Kind.ROCM),
    ("rocm6.2.4", Kind.ROCM),
    ("cu9", None),
    ("cu1300", None),
    ("cuda", None),
    ("rocm", None),
    ("rocm6", None),
    ("rocm64", None),
    ("rocmx", None),
    ("gitabc123", None),
    ("CPU", None),
]


@pytest.mark.parametrize(("name", "kind"), NAMES)
def test_one_rule_names_the_backends_for_selection_and_verify(name: str, kind: Kind | None) -> None:
    assert backend_kind(name) is kind
    devices = "none" if kind in (None, Kind.CPU) else kind.value
    assert verify.device_kind(name) == devices


def test_verify_knows_a_two_digit_cuda_label_as_a_build() -> None:
    """torch 1.7.1+cu92 is another build than the locked cu101, not a label to ignore."""
    report = verify.judge(
        {
            "python": "3.8.10",
            "import": {"value": None, "error": None, "seconds": 0.01},
            "torch": {"version": "1.7.1+cu92", "cuda": "9.2", "hip": None, "has_xpu": False},
            "cpu": {"value": True, "error": None, "seconds": 0.01},
        },
        Expectation("1.7.1", "cu101"),
        DevicePlan("none", 0, skip_reason="replayed"),
    )
    checks = {c.name: c for c in report.checks}
    assert checks["torch version"].status is Status.FAILED
    assert "expected +cu101" in checks["torch version"].detail
    assert checks["cu101 build"].detail == "torch.version.cuda = '9.2', expected '10.1'"


def test_variant_of_names_the_index_directory() -> None:
    assert [variant_of(b) for b in ("mps", "cpu", "cu126", "rocm6.2.4", "xpu")] == [
        "cpu",
        "cpu",
        "cu126",
        "rocm6.2.4",
        "xpu",
    ]
    # a name that is no backend is not quietly turned into the CPU build's directory
    assert variant_of("tpu") == "tpu"


@pytest.mark.parametrize(
    ("name", "local", "variant", "ok"),
    [
        ("torch", "cu126", "cu126", True),
        ("torch", None, "cu126", True),  # macOS and some aarch64 wheels carry no label
        ("torch", "cpu", "cu126", False),
        ("torchvision", "rocm6.2", "rocm6.2", True),
        ("torchvision", "rocm62", "rocm6.2", True),
        ("torchvision", "rocm6.3", "rocm6.2", False),
        ("pytorch-triton", "gitabc123", "cu126", True),  # triton's label is a git hash
    ],
)
def test_label_ok(name: str, local: str | None, variant: str, ok: bool) -> None:
    assert label_ok(name, local, variant) is ok


def test_the_catalogued_members_are_family_members() -> None:
    assert set(vocabulary.CATALOGUED) <= vocabulary.LABELLED <= vocabulary.FAMILY


@dataclass(frozen=True)
class Chosen:
    backend: str
    channel: str


@pytest.mark.parametrize(
    ("backend", "channel", "mac", "url"),
    [
        ("cu126", "stable", False, "https://mirror.example/whl/cu126"),
        ("cu126", "nightly", False, "https://mirror.example/whl/nightly/cu126"),
        ("rocm6.4", "test", False, "https://mirror.example/whl/test/rocm6.4"),
        ("cpu", "stable", False, "https://mirror.example/whl/cpu"),
        ("mps", "stable", True, "https://pypi.example/simple"),
        ("cpu", "stable", True, "https://pypi.example/simple"),
        ("mps", "nightly", True, "https://mirror.example/whl/nightly/cpu"),
        ("cpu", "test", True, "https://mirror.example/whl/test/cpu"),
    ],
)
def test_select_and_lock_share_the_index_url_rule(
    backend: str, channel: str, mac: bool, url: str, tmp_path: Path
) -> None:
    request = Request(
        torch_index_url="https://mirror.example/whl/",
        default_index_url="https://pypi.example/simple",
    )
    platform = "macos-arm64" if mac else "linux-x86_64"
    assert index_url(backend, channel, request, platform) == url
    settings = load_settings(
        {"torch-index-url": request.torch_index_url, "index-url": request.default_index_url},
        env={},
        cwd=tmp_path,
        user_config=tmp_path / "none.toml",
        system_config=tmp_path / "none.toml",
    )
    host = mac_host() if mac else linux_host()
    assert family_index(Chosen(backend, channel), host, settings) == url
