"""The real wheels (through pip's configuration) behind a plain mirror one release behind the
catalog: lock for an H100, sync that lock here, auto on this CPU machine, sync a uv lock."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers.hosts import need_uv
from realmirror import MirrorFiles, RealMirror

from torchenv.agent.env import venv
from torchenv.agent.lock.pylock import PyLock, read_pylock

pytestmark = pytest.mark.e2e

TORCHENV = [sys.executable, "-m", "torchenv.agent"]
H100 = ["--os", "linux", "--arch", "x86_64", "--python", "3.11",
        "--driver", "580.95.05", "--gpu", "9.0"]  # fmt: skip
FAMILY = {"torch", "torchvision", "torchaudio"}
HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache for the module: a wheel is fetched from the mirror once, whichever test first.
    The CUDA set is some 3 GB (and again in uv's cache and the environment): all of it goes
    when the module is done, so no run leaves gigabytes behind."""
    path = tmp_path_factory.mktemp("real")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def env_for(mirror: RealMirror, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHENV_", "UV_", "PIP_"))}
    env.update(
        TORCHENV_TORCH_INDEX_URL=mirror.torch_index_url,
        TORCHENV_INDEX_URL=mirror.index_url,
        TORCHENV_CACHE_DIR=str(work / "cache"),
        TORCHENV_USER_CONFIG=str(work / "none.toml"),
        TORCHENV_SYSTEM_CONFIG=str(work / "none.toml"),
        UV_CACHE_DIR=str(work / "uv-cache"),
    )
    return env


def torchenv(
    args: list[str], mirror: RealMirror, work: Path, cwd: Path, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [*TORCHENV, *args], env=env_for(mirror, work), cwd=cwd, capture_output=True, text=True,
        check=False, timeout=timeout,
    )  # fmt: skip


def need(files: MirrorFiles, variant: str) -> None:
    reason = files.skip_reason(variant)
    if reason is not None:
        pytest.skip(reason)


def need_python_311() -> None:
    if HERE != "3.11":
        pytest.skip(f"the real wheels here are for CPython 3.11; this interpreter is {HERE}")


@dataclass(frozen=True)
class Locked:
    path: Path
    lock: PyLock
    output: str
    bytes_sent: int  # what the mirror served while locking


@pytest.fixture(scope="module")
def h100_lock(
    real_mirror: RealMirror,
    real_mirror_files: MirrorFiles,
    work: Path,
) -> Locked:
    need(real_mirror_files, "cu130")
    need_uv()
    path = work / "h100" / "pylock.toml"
    real_mirror.reset_counters()
    done = torchenv(["lock", "torch", "torchvision", *H100, "-o", str(path)], real_mirror, work,
                    work / "h100")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return Locked(path, read_pylock(path), done.stdout, real_mirror.bytes_sent())


def test_lock_for_an_h100_pins_the_real_cuda_build_fetching_under_1_percent(
    h100_lock: Locked,
    real_mirror: RealMirror,
    real_mirror_files: MirrorFiles,
) -> None:
    lock = h100_lock.lock
    torch = lock.package("torch")
    assert torch is not None and torch.version == "2.14.1"  # the catalog knows 2.15
    assert torch.index == f"{real_mirror.torch_index_url}/cu130"
    assert lock.tool_torchenv["backend"] == "cu130"
    skipped = f"torch 2.15 is not on {real_mirror.torch_index_url}/cu130; 2.14.1 is"
    assert skipped in lock.tool_torchenv["skipped"] and skipped in h100_lock.output
    vision = lock.package("torchvision")
    assert vision is not None and vision.version == "0.29.1"
    names = set(lock.names)
    runtime = {"nvidia-cudnn-cu13", "nvidia-nccl-cu13", "nvidia-cublas", "nvidia-cuda-runtime"}
    assert runtime <= names and {"cuda-toolkit", "triton", "cuda-bindings"} <= names
    for package in lock.packages:
        if package.name not in FAMILY:  # everything else from the default index only
            assert package.index == real_mirror.index_url, package
            assert package.wheel.url.startswith(real_mirror.url + "/packages/"), package
    decoys = {d.filename for d in real_mirror_files.decoys}
    assert not decoys & {p.wheel.name for p in lock.packages}
    served = {w.filename: w.size for w in real_mirror_files.default}
    served.update({w.filename: w.size for ws in real_mirror_files.torch.values() for w in ws})
    assert all(p.wheel.size is None for p in lock.packages)  # HTML pages list no sizes
    total = sum(served[p.wheel.name or ""] for p in lock.packages)
    assert total > 2_000_000_000  # the CUDA set is some 3 GB
    assert h100_lock.bytes_sent < total / 100, (h100_lock.bytes_sent, total)


@pytest.fixture(scope="module")
def cuda_sync(
    h100_lock: Locked,
    real_mirror: RealMirror,
    work: Path,
) -> dict[str, Any]:
    need_python_311()
    prefix = work / "cuda-env" / ".venv"
    done = torchenv(["sync", str(h100_lock.path), "--force", "--prefix", str(prefix), "--json"],
                    real_mirror, work, work / "cuda-env")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    result["prefix"] = prefix
    return result


def test_sync_force_of_the_cuda_lock_on_this_cpu_machine(cuda_sync: dict[str, Any]) -> None:
    checks = {c["name"]: (c["status"], c["detail"]) for c in cuda_sync["verify"]["checks"]}
    assert cuda_sync["verify"]["ok"], checks
    assert checks["import torch"][0] == "passed"
    # the wheel is version 2.14.1; the build reports its CUDA label at run time
    assert checks["torch version"] == (
        "passed",
        "2.14.1+cu130 (the lock has 2.14.1; +cu130 is the build's label)",
    )
    assert checks["cu130 build"] == ("passed", "torch.version.cuda = '13.0'")
    assert checks["compute on cpu"][0] == "passed"
    gpu = [status for name, (status, _) in checks.items() if "CUDA" in name or "GPU" in name]
    assert gpu and set(gpu) == {"skipped"}  # no NVIDIA GPU on this machine
    code = "import torch; print(torch.__version__, torch.version.cuda)"
    python = venv.python_in(cuda_sync["prefix"])
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                         timeout=300)  # fmt: skip
    assert out.stdout.split() == ["2.14.1+cu130", "13.0"]


def test_auto_torch_builds_a_verified_env_with_the_real_cpu_torch(
    real_mirror: RealMirror,
    real_mirror_files: MirrorFiles,
    work: Path,
) -> None:
    need(real_mirror_files, "cpu")
    need_python_311()
    need_uv()
    project = work / "auto"
    done = torchenv(["auto", "torch", "--prefix", str(project / ".venv"), "--json"],
                    real_mirror, work, project)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert (result["torch"], result["backend"]) == ("2.13.0+cpu", "cpu")
    assert result["verify"]["ok"]
    checks = {c["name"]: c["status"] for c in result["verify"]["checks"]}
    assert checks["compute on cpu"] == "passed" and checks["cpu build"] == "passed"
    assert (
        f"torch 2.15 is not on {real_mirror.torch_index_url}/cpu; 2.13.0+cpu is"
        in (result["skipped"])
    )


UV_PROJECT = """\
[project]
name = "uses-uv"
version = "0"
requires-python = ">=3.11"
dependencies = ["torch==2.13.0", "numpy"]

[tool.uv.sources]
torch = {{ index = "pytorch-cpu" }}

[[tool.uv.index]]
name = "pytorch-cpu"
url = "{url}/cpu"
explicit = true
"""


def test_sync_of_a_lock_uv_wrote(
    real_mirror: RealMirror,
    real_mirror_files: MirrorFiles,
    work: Path,
) -> None:
    need(real_mirror_files, "cpu")
    need_python_311()
    uv = need_uv()
    project = work / "uv"
    project.mkdir()
    (project / "pyproject.toml").write_text(UV_PROJECT.format(url=real_mirror.torch_index_url))
    compiled = subprocess.run(
        [uv, "pip", "compile", "pyproject.toml", "-o", "pylock.toml", "--no-config",
         "--index-url", real_mirror.index_url, "--python-version", "3.11",
         "--python-platform", "x86_64-manylinux_2_28", "--quiet"],
        cwd=project, env=env_for(real_mirror, work), capture_output=True, text=True,
        check=False, timeout=300,
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr
    written = read_pylock(project / "pylock.toml")
    assert written.created_by == "uv" and written.tool_torchenv == {}
    assert all(p.index is None for p in written.packages)  # uv writes no index
    done = torchenv(["sync", "pylock.toml", "--prefix", str(project / ".venv"), "--json"],
                    real_mirror, work, project)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["verify"]["ok"]
    assert {p["name"]: p["version"] for p in result["packages"]}["torch"] == "2.13.0+cpu"
    checks = {c["name"]: c["status"] for c in result["verify"]["checks"]}
    assert checks["cpu build"] == "passed"  # the backend came from torch's +cpu label
    assert any("created by uv" in n and "could not be checked" in n for n in result["notes"])
