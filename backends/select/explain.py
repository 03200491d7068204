"""The decision over ranked candidates: the pick and its warnings, or why none and what would."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from torchenv.backends.select.host import Host
from torchenv.backends.select.model import Candidate, Flag, Request, Selection, index_url
from torchenv.backends.select.wants import Wants
from torchenv.backends.vocabulary import Dotted, dotted


def decide(
    host: Host, request: Request, ranked: tuple[Candidate, ...], *, wants: Wants, forced: str | None
) -> Selection:
    ok = [c for c in ranked if c.ok]
    accelerated_anywhere = [c for c in ranked if c.accelerated and c.host_ok]
    chosen = ok[0] if ok else None
    reasons: list[str] = []
    if forced is None and chosen is not None and not chosen.accelerated and accelerated_anywhere:
        reasons.append(f"{wants.text()} excludes every accelerated build that runs here")
        chosen = None
    base = Selection(
        ok=False,
        backend=None,
        torch=None,
        index_url=None,
        channel=request.channel,
        platform=host.platform,
        python=host.python_label,
        candidates=ranked,
    )
    if chosen is None:
        if host.platform is None:
            reasons.append("no torch wheels exist for this OS and architecture")
        elif forced is not None and not ranked:
            reasons.append(f"no {request.channel} torch release has {forced} for {host.platform}")
        return _failed(
            base, ranked, accelerated_anywhere, reasons=reasons, host=host, forced=forced
        )
    warnings = list(host.notes)
    warnings += _warnings(chosen, host, forced, ranked)
    skipped = [
        c.unavailable
        for c in ranked
        if c.unavailable is not None and c.request_ok and c.rank < chosen.rank
    ]
    return Selection(
        ok=True,
        backend=chosen.backend,
        torch=chosen.torch,
        index_url=index_url(chosen.backend, request.channel, request, host.platform),
        channel=request.channel,
        platform=host.platform,
        python=host.python_label,
        candidates=ranked,
        reasons=chosen.reasons,
        warnings=tuple(dict.fromkeys(warnings)),
        flags=chosen.flags,
        skipped=tuple(dict.fromkeys(skipped)),
    )


def _failed(
    base: Selection,
    ranked: Sequence[Candidate],
    excluded: Sequence[Candidate],
    *,
    reasons: list[str],
    host: Host,
    forced: str | None,
) -> Selection:
    unlock = [u for c in ranked if c.request_ok for u in c.unlock]
    python = [u for u in unlock if u.startswith("Python ")][:1]
    unlock = [u for u in unlock if not u.startswith("Python ") or u in python]
    if forced is not None and not ranked:
        unlock.append("`torchenv catalog refresh` if the index has it")
    if excluded:
        best = min(excluded, key=lambda c: c.rank)
        unlock.append(f"allow torch {best.torch} ({best.backend} runs here)")
    if not reasons:
        reasons.append("no torch build satisfies the request on this host")
    top = [c for c in ranked if c.request_ok and not c.ok][:1] or list(ranked[:1])
    reasons += [r for c in top if not c.ok for r in c.reasons]
    unlock.sort(key=_unlock_order)
    return replace(
        base,
        reasons=tuple(dict.fromkeys(reasons)),
        unlock=tuple(dict.fromkeys(unlock))[:4],
        warnings=host.notes,
    )


def _unlock_order(hint: str) -> tuple[int, Dotted]:
    """Driver upgrades first, the smallest first; other hints keep their order."""
    match = re.match(r"driver >= ([\d.]+) ", hint)
    return (0, dotted(match[1])) if match else (1, ())


def _warnings(
    chosen: Candidate, host: Host, forced: str | None, ranked: Sequence[Candidate] = ()
) -> list[str]:
    out = []
    missing = [c for c in ranked if c.accelerated and c.unavailable and c.request_ok]
    if Flag.MINOR_VERSION_COMPAT in chosen.flags:
        out.append(
            f"{chosen.backend} runs by CUDA minor-version compatibility: kernels run, but "
            "PTX JIT and some newer CUDA features need a newer driver"
        )
    if Flag.PTX_ONLY in chosen.flags:
        out.append(
            f"no torch build ships SASS for every GPU: {chosen.backend} runs through PTX "
            "JIT, compiling kernels on first use (slow; cached afterwards)"
        )
    if Flag.CC_UNKNOWN in chosen.flags:
        out.append(
            "GPU compute capability unknown: chose by driver only; pass --gpu MAJOR.MINOR "
            "(or give the probe NVML) to check the build has code for the GPU"
        )
    if Flag.INFERRED in chosen.flags:
        out.append(
            f"torch {chosen.torch} {chosen.backend} rests on inferred catalog rows; "
            "`torchenv verify` will prove it"
        )
    if forced is not None:
        out += [
            r.removeprefix("ignored for --backend: ")
            for r in chosen.reasons
            if r.startswith("ignored for --backend: ")
        ]
    elif not chosen.accelerated and missing:
        out.append(
            "the index holds no accelerated build this host runs ("
            + "; ".join(dict.fromkeys(c.unavailable or "" for c in missing[:3]))
            + "); using CPU"
        )
    elif not chosen.accelerated and host.nvidia.present and not host.nvidia.blocked:
        out.append("no CUDA build runs on this host: " + _gpu_story(host))
    elif not chosen.accelerated and host.amd_gfx:
        out.append(f"no ROCm build has code for {', '.join(host.amd_gfx)}; using CPU")
    return out


def _gpu_story(host: Host) -> str:
    """Which backends carry SASS for each GPU on its own (mixed GPUs explain themselves here)."""
    parts = [
        f"{gpu.label} needs {', '.join(gpu.sass_in) or 'a build no release has'}"
        for gpu in host.nvidia.gpus
        if gpu.cc is not None
    ]
    return "; ".join(parts) or "see the candidates"
