"""Which GPUs NVIDIA_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES leave in sight."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from torchenv.probes.report import NvidiaGpu, NvidiaReport

MigDevices = Mapping[int, Sequence[str]]  # GPU index -> the UUIDs of its MIG devices


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
