"""The driver (TORCHENV_ or uv's variable) and compute capability overrides over the probe."""

from __future__ import annotations

import dataclasses

from torchenv.probes.nvidia.parsers import CC_RE, parse_driver_version
from torchenv.probes.report import NvidiaGpu, NvidiaReport, NvidiaState

ENV_DRIVER = "TORCHENV_CUDA_DRIVER_VERSION"
UV_ENV_DRIVER = "UV_CUDA_DRIVER_VERSION"  # uv's name for the same override; torchenv's wins
ENV_CC = "TORCHENV_GPU_COMPUTE_CAPABILITY"


def apply_overrides(
    report: NvidiaReport,
    *,
    driver: str | None,
    compute_capability: str | None,
    driver_source: str = ENV_DRIVER,
) -> NvidiaReport:
    """The driver override (named by `driver_source`) and TORCHENV_GPU_COMPUTE_CAPABILITY,
    visible as such."""
    if not driver and not compute_capability:
        return report
    reasons = list(report.reasons)
    changed = report
    if driver:
        given = parse_driver_version(driver)
        if given is None:
            reasons.append(
                f"{driver_source}={driver!r} is not a driver version like 580.95.05; ignored"
            )
        else:
            agrees = report.source == "nvml" and report.driver_version == given
            changed = dataclasses.replace(
                changed,
                driver_version=given,
                cuda_driver_version=report.cuda_driver_version if agrees else None,
            )
            reasons.append(
                f"driver version {given} from {driver_source}"
                + ("" if agrees else " (the CUDA level follows from it)")
            )
    if compute_capability:
        changed, notes = _override_cc(changed, compute_capability)
        reasons += notes
    if changed is report:
        return dataclasses.replace(report, reasons=tuple(reasons))
    state = changed.state
    if state != NvidiaState.TEGRA:
        if changed.driver_version:
            state = NvidiaState.OK
        elif changed.gpus and state == NvidiaState.ABSENT:
            state = NvidiaState.NO_DRIVER
            reasons.append(f"{ENV_CC} defines GPUs but no driver is known; set {ENV_DRIVER}")
    if state != report.state:
        reasons.append(f"state {report.state.value} before the overrides")
    return dataclasses.replace(changed, state=state, source="override", reasons=tuple(reasons))


def _override_cc(report: NvidiaReport, value: str) -> tuple[NvidiaReport, list[str]]:
    ccs = [v.strip() for v in value.split(",")]
    bad = [cc for cc in ccs if not CC_RE.fullmatch(cc)]
    if bad or not ccs:
        return report, [
            f"{ENV_CC}={value!r}: {', '.join(map(repr, bad))} is not a compute "
            "capability like 8.6; ignored"
        ]
    gpus = report.gpus
    note = f"compute capabilities {', '.join(ccs)} from {ENV_CC}"
    if len(ccs) == 1 and gpus:
        new = tuple(dataclasses.replace(g, compute_capability=ccs[0]) for g in gpus)
    elif len(ccs) == len(gpus):
        new = tuple(
            dataclasses.replace(g, compute_capability=cc) for g, cc in zip(gpus, ccs, strict=True)
        )
    else:
        if gpus:
            note += f" (replacing the {len(gpus)} GPUs found)"
        new = tuple(
            NvidiaGpu(index=i, name=f"from {ENV_CC}", compute_capability=cc)
            for i, cc in enumerate(ccs)
        )
    return dataclasses.replace(report, gpus=new), [note]
