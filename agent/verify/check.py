"""Prove an environment works: run its interpreter on a probe script, then judge the output."""

from __future__ import annotations

import enum
import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchenv.agent.base.errors import VerifyError
from torchenv.backends.vocabulary import Kind, backend_kind, cuda_of, show
from torchenv.probes.report import HostReport, NvidiaState

# Runs inside the environment under test, with only the standard library and torch. Each step
# records its own failure so one broken device never hides the others.
SCRIPT = r"""
import json, sys, time
plan = json.loads(sys.argv[1])
out = {"python": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable}

def timed(fn):
    start = time.perf_counter()
    try:
        value, error = fn(), None
    except BaseException as exc:  # report every failure, including SystemExit from a build
        value, error = None, "%s: %s" % (type(exc).__name__, exc)
    return {"value": value, "error": error, "seconds": round(time.perf_counter() - start, 4)}

def load():
    import torch
    return torch

imp = timed(load)
torch = imp.pop("value")
out["import"] = imp
if torch is not None:
    ver = getattr(torch, "version", None)
    out["torch"] = {
        "version": str(getattr(torch, "__version__", "")),
        "cuda": getattr(ver, "cuda", None),
        "hip": getattr(ver, "hip", None),
        "xpu": getattr(ver, "xpu", None),
        "has_xpu": hasattr(torch, "xpu"),
        "file": getattr(torch, "__file__", None),
    }

    def matmul(device):
        a = torch.ones((64, 64), device=device)
        b = (a @ a).sum().item()
        if b != 64.0 * 64 * 64:
            raise ValueError("64x64 ones matmul summed to %r" % (b,))
        return True

    if getattr(torch, "TEST_DOUBLE", False):  # the index simulator's stand-in has no tensors
        out["cpu"] = {"value": None, "error": None, "seconds": 0.0, "skipped": "test double"}
    else:
        out["cpu"] = timed(lambda: matmul("cpu"))
    kind = plan.get("devices")
    if kind in ("cuda", "rocm"):
        cuda = torch.cuda
        out["available"] = timed(lambda: bool(cuda.is_available()))
        out["count"] = timed(lambda: int(cuda.device_count()))
        out["arch_list"] = timed(lambda: list(cuda.get_arch_list()))
        devices = []
        for i in range(out["count"]["value"] or 0):
            info = timed(lambda: {"name": cuda.get_device_name(i),
                                  "capability": list(cuda.get_device_capability(i))})
            info["compute"] = timed(lambda: matmul("cuda:%d" % i))
            devices.append(info)
        out["devices"] = devices
    elif kind == "xpu":
        xpu = torch.xpu
        out["available"] = timed(lambda: bool(xpu.is_available()))
        out["count"] = timed(lambda: int(xpu.device_count()))
        out["devices"] = [{"compute": timed(lambda: matmul("xpu:%d" % i))}
                          for i in range(out["count"]["value"] or 0)]
    elif kind == "mps":
        out["available"] = timed(lambda: bool(torch.backends.mps.is_available()))
        out["count"] = {"value": 1 if out["available"]["value"] else 0, "error": None,
                        "seconds": 0.0}
        n = out["count"]["value"]
        out["devices"] = [{"compute": timed(lambda: matmul("mps"))}] if n else []
print("\n@@torchenv-verify@@" + json.dumps(out))
"""
MARK = "@@torchenv-verify@@"


class Status(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Check:
    """One verify step's result: its name, status (passed, failed, skipped), detail, time."""

    name: str
    status: Status
    detail: str
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "detail": self.detail,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class Expectation:
    """What the lock says the environment holds."""

    torch_version: str | None  # "2.13.0+cpu"
    backend: str | None  # "cpu", "cu126", "rocm6.4", "xpu", "mps", ...


@dataclass(frozen=True)
class DevicePlan:
    """Which accelerator to exercise, and how many of it the host has."""

    kind: str  # "cuda", "rocm", "xpu", "mps" or "none"
    expected: int  # devices the host shows
    capabilities: tuple[str, ...] = ()  # NVIDIA compute capabilities, "9.0"
    skip_reason: str | None = None  # set when the GPU checks cannot run here


@dataclass(frozen=True)
class VerifyReport:
    """Every verify check, and the environment's Python version; ok unless one failed."""

    checks: tuple[Check, ...]
    python: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.status is not Status.FAILED for c in self.checks)

    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status is Status.FAILED)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "python": self.python, "checks": [c.to_json() for c in self.checks]}


# ---------------------------------------------------------------- planning (pure)


def device_kind(backend: str | None) -> str:
    """The devices a build drives ("cuda", "rocm", "xpu", "mps"), or "none" (CPU, unknown)."""
    kind = backend_kind(backend) if backend is not None else None
    return "none" if kind is None or kind is Kind.CPU else kind.value


def plan_devices(host: HostReport, backend: str | None, *, devices_here: bool) -> DevicePlan:
    """The GPU checks for this host and build; skipped (with why) when they cannot run."""
    kind = device_kind(backend)
    counts = {
        "cuda": len(host.nvidia.gpus) if host.nvidia.state is NvidiaState.OK else 0,
        "rocm": len(host.amd.gpus),
        "xpu": len(host.intel.gpus),
        "mps": 1 if host.apple.mps_capable else 0,
    }
    caps = tuple(g.compute_capability or "?" for g in host.nvidia.gpus) if kind == "cuda" else ()
    if kind == "none":
        return DevicePlan(
            "none", 0, skip_reason=f"the {backend or 'installed'} build has no GPU support"
        )
    if counts[kind] == 0:
        return DevicePlan(kind, 0, skip_reason=f"the host has no {kind.upper()} device")
    if not devices_here:
        return DevicePlan(
            kind,
            counts[kind],
            caps,
            skip_reason="the host was described or replayed; its devices are not on this machine",
        )
    return DevicePlan(kind, counts[kind], caps)


# ---------------------------------------------------------------- running (I/O)


def run_script(python: Path, plan: DevicePlan, *, timeout: float = 300.0) -> dict[str, Any]:
    """Run the probe script in the environment; returns its parsed JSON output."""
    argv = [
        str(python),
        "-I",
        "-c",
        SCRIPT,
        json.dumps({"devices": plan.kind if plan.skip_reason is None else "none"}),
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VerifyError(
            f"cannot run {python}: {exc}",
            hint="the environment is broken; run `torchenv sync` or `torchenv auto` again",
            details={"python": str(python)},
        ) from exc
    return parse_output(done.stdout, done.stderr, done.returncode)


def parse_output(stdout: str, stderr: str = "", returncode: int = 0) -> dict[str, Any]:
    """The script's JSON, from the line after its marker; VerifyError when there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            try:
                data = json.loads(line[len(MARK) :])
            except ValueError:
                break
            if isinstance(data, dict):
                return data
    tail = (stderr.strip().splitlines() or ["no output"])[-1]
    raise VerifyError(
        f"the environment's interpreter did not finish the check (exit {returncode}): {tail}",
        hint="the environment is broken; run `torchenv sync` or `torchenv auto` again",
        details={"returncode": returncode, "stderr": stderr[-2000:]},
    )


# ---------------------------------------------------------------- judging (pure)


def _step(output: Mapping[str, Any], key: str) -> tuple[Any, str | None, float | None]:
    step = output.get(key)
    if not isinstance(step, Mapping):
        return None, f"{key} was not checked", None
    return step.get("value"), step.get("error"), step.get("seconds")


def version_check(found: str, expected: str, backend: str | None) -> Check:
    """torch's run-time version against the lock's: equal public versions, and a local label that
    is the lock's or names the locked backend (the cu130 wheel of 2.14.1 runs as 2.14.1+cu130)."""
    from packaging.version import InvalidVersion, Version

    name = "torch version"
    try:
        have, want = Version(found), Version(expected)
    except InvalidVersion:
        if found == expected:
            return Check(name, Status.PASSED, found)
        return Check(name, Status.FAILED, f"{found}, but the lock has {expected}")
    if have.public != want.public:
        return Check(name, Status.FAILED, f"{found}, but the lock has {expected}")
    label = have.local
    if label is None or label == want.local:
        return Check(name, Status.PASSED, found)
    wanted = want.local or backend
    names_a_build = backend_kind(label) is not None
    if want.local is None and (not names_a_build or wanted is None or label == wanted):
        return Check(
            name, Status.PASSED, f"{found} (the lock has {expected}; +{label} is the build's label)"
        )
    return Check(
        name,
        Status.FAILED,
        f"{found}, but the lock has {expected}: expected "
        + (f"+{wanted}" if wanted else "no label")
        + f" for the {backend or 'locked'} build",
    )


def check_build(torch: Mapping[str, Any], expect: Expectation) -> list[Check]:
    found = str(torch.get("version") or "")
    if expect.torch_version is None:
        checks = [Check("torch version", Status.SKIPPED, f"{found} (no version locked)")]
    else:
        checks = [version_check(found, expect.torch_version, expect.backend)]
    cuda, hip = torch.get("cuda"), torch.get("hip")
    kind, backend = device_kind(expect.backend), expect.backend or ""
    if kind == "cuda":
        want = show(cuda_of(backend))
        ok = cuda == want and not hip
        detail = f"torch.version.cuda = {cuda!r}" + ("" if ok else f", expected {want!r}")
    elif kind == "rocm":
        want = backend[4:]
        ok = isinstance(hip, str) and hip.startswith(want) and not cuda
        detail = f"torch.version.hip = {hip!r}" + ("" if ok else f", expected {want}.*")
    elif kind == "xpu":
        ok = bool(torch.get("has_xpu")) and not cuda and not hip
        detail = f"torch.xpu present: {bool(torch.get('has_xpu'))}, cuda {cuda!r}, hip {hip!r}"
    elif backend == "cpu":
        ok = not cuda and not hip
        detail = f"torch.version.cuda = {cuda!r}, hip = {hip!r}" + (
            "" if ok else " (expected a CPU-only build)"
        )
    else:
        checks.append(
            Check(
                "build", Status.SKIPPED, f"the {backend or 'unknown'} build has no label to compare"
            )
        )
        return checks
    checks.append(Check(f"{backend} build", Status.PASSED if ok else Status.FAILED, detail))
    return checks


def _covers(arch_list: list[str], capability: str) -> bool:
    """sm_XY runs on X.z for z >= Y; compute_XY (PTX) runs on anything at least X.Y."""
    try:
        major, minor = (int(p) for p in capability.split("."))
    except ValueError:
        return False
    for arch in arch_list:
        match = re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", arch)
        if not match:
            continue
        a_major, a_minor = int(match[2]), int(match[3])
        if match[1] == "sm" and a_major == major and a_minor <= minor:
            return True
        if match[1] == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def check_devices(output: Mapping[str, Any], plan: DevicePlan) -> list[Check]:
    label = "GPU" if plan.kind == "none" else plan.kind.upper()
    if plan.skip_reason is not None:
        return [Check(f"{label} devices", Status.SKIPPED, plan.skip_reason)]
    count, error, seconds = _step(output, "count")
    checks = [
        Check(
            f"{label} device count",
            Status.PASSED if count == plan.expected else Status.FAILED,
            error or f"{count} visible, the host shows {plan.expected}",
            seconds,
        )
    ]
    if plan.kind == "cuda":
        arch, error, seconds = _step(output, "arch_list")
        arch = list(arch or [])
        missing = [c for c in plan.capabilities if not _covers(arch, c)]
        checks.append(
            Check(
                "CUDA arch list",
                Status.FAILED if error or missing else Status.PASSED,
                error
                or (
                    f"{' '.join(arch)} does not cover compute capability {', '.join(missing)}"
                    if missing
                    else " ".join(arch)
                ),
                seconds,
            )
        )
    devices = output.get("devices")
    for index, device in enumerate(devices if isinstance(devices, list) else []):
        compute = device.get("compute", {}) if isinstance(device, Mapping) else {}
        ok = compute.get("value") is True
        checks.append(
            Check(
                f"compute on {plan.kind}:{index}",
                Status.PASSED if ok else Status.FAILED,
                "64x64 matmul" if ok else str(compute.get("error")),
                compute.get("seconds"),
            )
        )
    return checks


def judge(output: Mapping[str, Any], expect: Expectation, plan: DevicePlan) -> VerifyReport:
    """The verdict over the script's output: a pure function, each check with its reason."""
    python = output.get("python") if isinstance(output.get("python"), str) else None
    _, error, seconds = _step(output, "import")
    torch = output.get("torch")
    if error or not isinstance(torch, Mapping):
        return VerifyReport(
            (Check("import torch", Status.FAILED, error or "no torch", seconds),), python
        )
    checks = [Check("import torch", Status.PASSED, str(torch.get("file") or ""), seconds)]
    checks += check_build(torch, expect)
    ok, error, seconds = _step(output, "cpu")
    skipped = (
        output.get("cpu", {}).get("skipped") if isinstance(output.get("cpu"), Mapping) else None
    )
    if skipped:
        checks.append(Check("compute on cpu", Status.SKIPPED, f"torch is a {skipped}"))
        return VerifyReport((*checks, *check_devices(output, plan)), python)
    checks.append(
        Check(
            "compute on cpu",
            Status.PASSED if ok is True else Status.FAILED,
            "64x64 matmul" if ok is True else str(error),
            seconds,
        )
    )
    checks += check_devices(output, plan)
    return VerifyReport(tuple(checks), python)


def verify_env(python: Path, expect: Expectation, plan: DevicePlan) -> VerifyReport:
    """Run the script in the environment at `python` and judge what it printed."""
    return judge(run_script(python, plan), expect, plan)
