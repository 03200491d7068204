"""The names of torch backends: their kinds, index directories, local labels and the family."""

from __future__ import annotations

import enum
import re

Dotted = tuple[int, ...]

# Projects the PyTorch index builds per backend; everything else comes from the default index.
FAMILY = frozenset(
    {
        "torch",
        "torchvision",
        "torchaudio",
        "torchcodec",
        "torchao",
        "torchdata",
        "torchtext",
        "torchrec",
        "fbgemm-gpu",
        "xformers",
        "pytorch-triton",
        "pytorch-triton-rocm",
        "pytorch-triton-xpu",
    }
)
# Family members whose local label names the backend (+cu126, +cpu, ...); triton's is a git hash.
LABELLED = FAMILY - {"pytorch-triton", "pytorch-triton-rocm", "pytorch-triton-xpu"}
# Family members whose versions the catalog records for each release (selection judges these).
CATALOGUED = ("torch", "torchvision", "torchaudio")
# Release channels: releases, release candidates (…/whl/test) and nightlies (…/whl/nightly).
CHANNELS = ("stable", "test", "nightly")


class Kind(str, enum.Enum):
    CPU = "cpu"
    CUDA = "cuda"
    ROCM = "rocm"
    XPU = "xpu"
    MPS = "mps"


def dotted(text: str) -> Dotted:
    """ "580.65.06" -> (580, 65, 6); raises ValueError on anything else."""
    return tuple(int(part) for part in text.strip().split("."))


def show(version: Dotted) -> str:
    return ".".join(str(p) for p in version)


def backend_kind(backend: str) -> Kind | None:
    if backend in ("cpu", "xpu", "mps"):
        return Kind(backend)
    if re.fullmatch(r"cu\d{2,3}", backend):
        return Kind.CUDA
    if re.fullmatch(r"rocm\d+(\.\d+){1,2}", backend):
        return Kind.ROCM
    return None


def cuda_of(backend: str) -> Dotted:
    """ "cu130" -> (13, 0), "cu118" -> (11, 8)."""
    digits = backend[2:]
    return (int(digits[:-1]), int(digits[-1]))


def rocm_of(backend: str) -> Dotted:
    return dotted(backend[4:])


def backend_order(backend: str) -> Dotted:
    """A key that orders backends of one kind oldest to newest."""
    kind = backend_kind(backend)
    if kind is Kind.CUDA:
        return cuda_of(backend)
    if kind is Kind.ROCM:
        return rocm_of(backend)
    return ()


# --- the PyTorch index ----------------------------------------------------------------------


def variant_of(backend: str) -> str:
    """The PyTorch index directory for a backend; Apple's MPS builds are the cpu index's."""
    return "cpu" if backend_kind(backend) is Kind.MPS else backend


def label_ok(name: str, local: str | None, variant: str) -> bool:
    """A labelled family member must carry the variant's label, or none (macOS, some aarch64);
    a ROCm label may be written without its dots (+rocm62 for rocm6.2)."""
    return name not in LABELLED or local in (None, variant.replace(".", ""), variant)


def torch_index_url(base: str, channel: str, variant: str) -> str:
    """ "…/whl/cu126" for a release, "…/whl/nightly/cu126" for a nightly or test build."""
    parts = [base.rstrip("/")]
    if channel in ("nightly", "test"):
        parts.append(channel)
    parts.append(variant)
    return "/".join(parts)


def family_index_url(
    backend: str, channel: str, *, macos: bool, torch_index: str, default_index: str
) -> str:
    """Where a backend's torch family comes from. Apple's builds (MPS, and CPU on macOS) are
    PyPI's unlabelled wheels: stable ones come from the default index, nightly and test ones
    from the PyTorch index's cpu directory."""
    on_pypi = backend == "mps" or macos
    if on_pypi and channel == "stable":
        return default_index
    return torch_index_url(torch_index, channel, "cpu" if on_pypi else variant_of(backend))
