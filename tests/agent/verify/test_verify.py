"""verify: the pure verdict over recorded script output, the device plan, and a real run."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.locks import cpu_host

from torchenv.agent.base.errors import VerifyError
from torchenv.agent.verify import check as verify
from torchenv.agent.verify.check import DevicePlan, Expectation, Status
from torchenv.probes.report import NvidiaGpu, NvidiaReport, NvidiaState


def step(value: Any, error: str | None = None) -> dict[str, Any]:
    return {"value": value, "error": error, "seconds": 0.01}


def output(
    *, version: str = "2.9.0+cu128", cuda: str | None = "12.8", hip: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "python": "3.11.7",
        "import": step(None),
        "torch": {"version": version, "cuda": cuda, "hip": hip, "xpu": None, "has_xpu": False},
        "cpu": step(True),
        **extra,
    }


def statuses(report: verify.VerifyReport) -> dict[str, str]:
    return {c.name: c.status.value for c in report.checks}


H100 = DevicePlan("cuda", 1, ("9.0",))
CPU_PLAN = DevicePlan("none", 0, skip_reason="the cpu build has no GPU support")


@pytest.mark.parametrize(
    ("case", "out", "expect", "plan", "want"),
    [
        (
            "cuda build on an H100",
            output(count=step(1), arch_list=step(["sm_80", "sm_90"]),
                   devices=[{"compute": step(True)}]),
            Expectation("2.9.0+cu128", "cu128"), H100,
            {"cu128 build": "passed", "CUDA device count": "passed",
             "CUDA arch list": "passed", "compute on cuda:0": "passed"},
        ),
        (
            "arch list misses a Blackwell GPU",
            output(count=step(1), arch_list=step(["sm_80", "sm_90"]),
                   devices=[{"compute": step(None, "RuntimeError: no kernel image")}]),
            Expectation("2.9.0+cu128", "cu128"), DevicePlan("cuda", 1, ("12.0",)),
            {"CUDA arch list": "failed", "compute on cuda:0": "failed"},
        ),
        (
            "PTX covers a newer GPU",
            output(count=step(1), arch_list=step(["sm_90", "compute_90"]),
                   devices=[{"compute": step(True)}]),
            Expectation("2.9.0+cu128", "cu128"), DevicePlan("cuda", 1, ("10.0",)),
            {"CUDA arch list": "passed"},
        ),
        (
            "Ada runs sm_86 code",
            output(count=step(1), arch_list=step(["sm_86"]), devices=[{"compute": step(True)}]),
            Expectation("2.9.0+cu128", "cu128"), DevicePlan("cuda", 1, ("8.9",)),
            {"CUDA arch list": "passed"},
        ),
        (
            "fewer devices visible than the host has",
            output(count=step(1), arch_list=step(["sm_90"]), devices=[{"compute": step(True)}]),
            Expectation("2.9.0+cu128", "cu128"), DevicePlan("cuda", 2, ("9.0", "9.0")),
            {"CUDA device count": "failed"},
        ),
        (
            "a CPU build where CUDA was locked",
            output(version="2.9.0+cpu", cuda=None),
            Expectation("2.9.0+cu128", "cu128"), H100,
            {"torch version": "failed", "cu128 build": "failed"},
        ),
        (
            "cpu build on a CPU host skips the GPU checks",
            output(version="2.13.0+cpu", cuda=None),
            Expectation("2.13.0+cpu", "cpu"), CPU_PLAN,
            {"cpu build": "passed", "compute on cpu": "passed", "GPU devices": "skipped"},
        ),
        (
            "rocm build",
            output(version="2.9.0+rocm6.4", cuda=None, hip="6.4.43483",
                   count=step(1), arch_list=step(["gfx942"]), devices=[{"compute": step(True)}]),
            Expectation("2.9.0+rocm6.4", "rocm6.4"), DevicePlan("rocm", 1),
            {"rocm6.4 build": "passed", "ROCM device count": "passed"},
        ),
        (
            "cpu compute broken",
            output(version="2.13.0+cpu", cuda=None, cpu=step(None, "ValueError: sum 3")),
            Expectation("2.13.0+cpu", "cpu"), CPU_PLAN,
            {"compute on cpu": "failed"},
        ),
    ],
)  # fmt: skip
def test_judge(
    case: str, out: dict[str, Any], expect: Expectation, plan: DevicePlan, want: dict[str, str]
) -> None:
    got = statuses(verify.judge(out, expect, plan))
    assert {k: got.get(k) for k in want} == want, case
    assert verify.judge(out, expect, plan).ok == ("failed" not in want.values()), case


@pytest.mark.parametrize(
    ("found", "cuda", "locked", "backend", "ok", "detail"),
    [
        # the real CUDA 13 torch 2.14.1 wheel: version 2.14.1, reports 2.14.1+cu130 at run time
        ("2.14.1+cu130", "13.0", "2.14.1", "cu130", True, "+cu130 is the build's label"),
        ("2.14.1+cu130", "13.0", "2.14.1+cu130", "cu130", True, "2.14.1+cu130"),
        ("2.14.1", "13.0", "2.14.1", "cu130", True, "2.14.1"),
        ("2.14.1+cu126", "12.6", "2.14.1", "cu130", False, "expected +cu130 for the cu130 build"),
        ("2.14.1+cpu", None, "2.14.1", "cu130", False, "expected +cu130"),
        ("2.14.1+cu130", "13.0", "2.14.1+cpu", "cpu", False, "expected +cpu"),
        ("2.14.0+cu130", "13.0", "2.14.1", "cu130", False, "but the lock has 2.14.1"),
        ("2.9.0+rocm6.4", None, "2.9.0", "rocm6.4", True, "+rocm6.4 is the build's label"),
        ("2.14.1+gitabc123", "13.0", "2.14.1", "cu130", True, "the build's label"),
    ],
)
def test_version_compares_public_versions_and_the_label_against_the_locked_backend(  # noqa: PLR0917
    found: str, cuda: str | None, locked: str, backend: str, ok: bool, detail: str
) -> None:
    report = verify.judge(
        output(version=found, cuda=cuda, hip="6.4.1" if backend.startswith("rocm") else None),
        Expectation(locked, backend),
        DevicePlan("none", 0, skip_reason="replayed"),
    )
    check = next(c for c in report.checks if c.name == "torch version")
    assert (check.status is Status.PASSED) == ok, check
    assert detail in check.detail


def test_a_build_that_contradicts_the_lock_says_what_was_expected() -> None:
    report = verify.judge(
        output(version="2.14.1+cu126", cuda="12.6"), Expectation("2.14.1", "cu130"), H100
    )
    assert not report.ok
    failed = {c.name: c.detail for c in report.failed()}
    assert "expected +cu130" in failed["torch version"]
    assert failed["cu130 build"] == "torch.version.cuda = '12.6', expected '13.0'"


def test_import_failure_is_one_failed_check() -> None:
    out = {"python": "3.11.7", "import": step(None, "ImportError: libcudart.so.12")}
    report = verify.judge(out, Expectation("2.9.0", "cu128"), H100)
    assert not report.ok
    assert [(c.name, c.status) for c in report.checks] == [("import torch", Status.FAILED)]
    assert "libcudart" in report.checks[0].detail


def test_plan_skips_gpu_checks_on_a_cpu_host_and_for_replayed_gpus() -> None:
    host = cpu_host()
    assert verify.plan_devices(host, "cu128", devices_here=True).skip_reason is not None
    gpu_host = dataclasses.replace(
        host,
        nvidia=NvidiaReport(state=NvidiaState.OK, driver_version="580.95.05",
                            gpus=(NvidiaGpu(0, compute_capability="9.0"),)),
    )  # fmt: skip
    here = verify.plan_devices(gpu_host, "cu128", devices_here=True)
    assert (here.kind, here.expected, here.capabilities, here.skip_reason) == (
        "cuda", 1, ("9.0",), None,
    )  # fmt: skip
    replayed = verify.plan_devices(gpu_host, "cu128", devices_here=False)
    assert replayed.skip_reason is not None and "replayed" in replayed.skip_reason
    assert verify.plan_devices(gpu_host, "cpu", devices_here=True).kind == "none"


def test_parse_output_needs_the_marker() -> None:
    with pytest.raises(VerifyError, match="exit 1"):
        verify.parse_output("hello\n", "Traceback...\nSegfault", 1)
    assert verify.parse_output('noise\n@@torchenv-verify@@{"python": "3"}\n') == {"python": "3"}


def test_script_runs_in_an_interpreter_without_torch() -> None:
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("this interpreter has torch")
    report = verify.verify_env(Path(sys.executable), Expectation("2.0", "cpu"), CPU_PLAN)
    assert not report.ok
    assert report.checks[0].name == "import torch"
    assert "ModuleNotFoundError" in report.checks[0].detail
