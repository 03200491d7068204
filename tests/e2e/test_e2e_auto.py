"""`torchenv auto` end to end against the loopback index simulator, and with a real torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.locks import PY
from helpers.realtorch import real_torch_catalog
from indexsim import IndexSim, Knobs, Site, build_site
from packaging.utils import parse_wheel_filename

from torchenv.agent.env import venv
from torchenv.agent.lock.pylock import read_pylock

pytestmark = pytest.mark.e2e

TORCHENV = [sys.executable, "-m", "torchenv.agent"]


def auto(args: list[str], cwd: Path, sim: IndexSim, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "TORCHENV_TORCH_INDEX_URL": sim.torch_index_url,
        "TORCHENV_INDEX_URL": sim.pypi_url,
        "TORCHENV_CACHE_DIR": str(cwd / "cache"),
        "TORCHENV_USER_CONFIG": str(cwd / "no-config.toml"),
        **env,
    }
    full.pop("TORCHENV_FAULT", None)
    return subprocess.run(
        [*TORCHENV, "auto", "--json", *args], cwd=cwd, env=full, capture_output=True, text=True,
        check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def sim(indexsim_site: Site) -> Iterator[IndexSim]:
    with IndexSim(indexsim_site, Knobs()) as server:
        yield server


def stand_in_build(prefix: Path) -> dict[str, object]:
    code = (
        "import json, torch; "
        "print(json.dumps({'v': torch.__version__, 'cuda': torch.version.cuda}))"
    )
    out = subprocess.run([str(venv.python_in(prefix)), "-c", code], capture_output=True,
                         text=True, check=True)  # fmt: skip
    data: dict[str, object] = json.loads(out.stdout)
    return data


def test_h100_and_cpu_hosts_get_different_correct_environments(
    tmp_path: Path, sim: IndexSim
) -> None:
    results = {}
    for host in ("h100-driver580", "cpu-cloud-vm"):
        prefix = tmp_path / host / ".venv"
        args = ["torch==2.9.*", "--replay", str(HOSTS / host), "--python", PY,
                "--prefix", str(prefix)]  # fmt: skip
        done = auto(args, tmp_path, sim)
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout)
        lock = read_pylock(Path(result["lock"]))
        assert lock.tool_torchenv["target"]["os"] == "linux"
        assert result["verify"]["ok"]
        results[host] = (result, lock, stand_in_build(prefix))

    gpu, gpu_lock, gpu_build = results["h100-driver580"]
    cpu, cpu_lock, cpu_build = results["cpu-cloud-vm"]
    assert gpu["backend"].startswith("cu") and cpu["backend"] == "cpu"
    assert gpu_build["cuda"] is not None and str(gpu_build["v"]).endswith("+" + gpu["backend"])
    assert cpu_build == {"v": "2.9.0+cpu", "cuda": None}
    assert gpu_lock.tool_torchenv["fingerprint"] != cpu_lock.tool_torchenv["fingerprint"]
    checks = {c["name"]: c["status"] for c in gpu["verify"]["checks"]}
    assert checks["CUDA devices"] == "skipped"  # replayed: the H100s are not on this machine

    # the same again: nothing to do, and the index is not asked anything
    before = len(sim.requests())
    again = auto(["torch==2.9.*", "--replay", str(HOSTS / "cpu-cloud-vm"), "--python", PY,
                  "--prefix", str(tmp_path / "cpu-cloud-vm" / ".venv")], tmp_path, sim)  # fmt: skip
    assert again.returncode == 0 and json.loads(again.stdout)["action"] == "unchanged"
    assert len(sim.requests()) == before


# ---------------------------------------------------------------- a real torch


@pytest.mark.skipif(sys.platform != "linux", reason="the local CPU torch wheel is for Linux")
def test_real_cpu_torch_through_the_simulator(tmp_path: Path) -> None:
    found = real_torch_catalog()
    if found is None:
        pytest.skip("the pip configuration offers no CPU torch wheel for this interpreter")
    catalog, paths = found
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    for filename, path in paths.items():
        (site_dir / filename).symlink_to(path)
    site = build_site(catalog, site_dir)
    torch_version = next(parse_wheel_filename(f)[1].public for f in paths if f.startswith("torch-"))
    with IndexSim(site, Knobs()) as server:
        project = tmp_path / "proj"
        project.mkdir()
        (project / "pyproject.toml").write_text(
            f'[project]\nname = "p"\nversion = "0"\ndependencies = ["torch=={torch_version}"]\n'
        )
        done = auto([], project, server)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    checks = {c["name"]: c["status"] for c in result["verify"]["checks"]}
    assert checks["import torch"] == "passed" and checks["compute on cpu"] == "passed"
    assert checks["cpu build"] == "passed" and checks["GPU devices"] == "skipped"
    assert (project / "pylock.toml").is_file() and (project / ".venv").is_symlink()
