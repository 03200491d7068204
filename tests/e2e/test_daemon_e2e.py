"""The agent with the real `torchenv auto` as its child, against the loopback index simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import HOSTS
from helpers.daemon import point, running_agent, upgraded_host, wait_until, write_config
from indexsim import Fault, IndexSim, Knobs, Site

from torchenv.agent.env import venv

pytestmark = pytest.mark.e2e
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture(scope="module")
def sim(indexsim_site: Site) -> Iterator[IndexSim]:
    with IndexSim(indexsim_site, Knobs()) as server:
        yield server


@pytest.fixture
def knobs(sim: IndexSim) -> Iterator[Knobs]:
    yield sim.knobs
    sim.knobs.faults.clear()
    sim.knobs.latency = 0.0


class Real:
    def __init__(
        self, tmp: Path, sim: IndexSim, requirements: tuple[str, ...] = ("torch==2.9.*",)
    ) -> None:
        self.tmp = tmp
        self.host_link = tmp / "host"
        # The base host is an H100 on driver 570 (CUDA 12.8: cu128); the upgrade to driver 580
        # (CUDA 13.0) with a second GPU takes cu130.
        base = upgraded_host(HOSTS / "h100-driver580", tmp / "host-570", driver="570.172.08",
                             cuda=12080, add_gpu=False)  # fmt: skip
        point(self.host_link, base)
        self.upgraded = upgraded_host(base, tmp / "host-580")
        self.prefix = tmp / "envs" / "default"
        self.prefix.parent.mkdir()
        self.socket = tmp / "agent.sock"
        self.config = write_config(
            tmp / "config.toml", socket=self.socket, state_dir=tmp / "state",
            host_replay=self.host_link, auto_args=["--python", PY], interval=600,
            watch_interval=0.2, backoff_initial=600, stop_timeout=10,
            environments=[{"name": "default", "prefix": self.prefix,
                           "requirements": list(requirements)}],
        )  # fmt: skip
        self.env = {
            "TORCHENV_TORCH_INDEX_URL": sim.torch_index_url,
            "TORCHENV_INDEX_URL": sim.pypi_url,
            "TORCHENV_CACHE_DIR": str(tmp / "cache"),
            "TORCHENV_USER_CONFIG": str(tmp / "no-user-config.toml"),
            "TORCHENV_FAULT": "",
        }

    def agent(self) -> Any:
        return running_agent(self.config, self.socket, self.tmp / "agent.log", self.env)

    def build(self) -> dict[str, Any]:
        """What the active environment's torch says it is."""
        code = "import json, torch; print(json.dumps([torch.__version__, torch.version.cuda]))"
        out = subprocess.run([str(venv.python_in(self.prefix)), "-c", code], check=True,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        version, cuda = json.loads(out.stdout)
        return {"torch": version, "cuda": cuda, "env": os.readlink(self.prefix)}


@pytest.fixture
def real(tmp_path: Path, sim: IndexSim) -> Real:
    return Real(tmp_path, sim)


def test_driver_upgrade_and_new_gpu_reprovision_with_real_auto(real: Real, knobs: Knobs) -> None:
    with real.agent() as agent:
        first = agent.wait_state("active")
        assert first["backend"] == "cu128"  # driver 570 runs CUDA 12.8 at most
        before = real.build()
        assert before["torch"].endswith("+cu128") and first["torch"] == before["torch"]
        point(real.host_link, real.upgraded)  # driver 580 (CUDA 13.0) and a second GPU
        second = agent.wait_state("active", backend="cu130")
        after = real.build()
        assert after["torch"].endswith("+cu130") and after["env"] != before["env"]
        assert second["fingerprint"] != first["fingerprint"]
        assert agent.terminate() == 0


def test_the_agent_takes_the_newest_release_the_index_holds(tmp_path: Path, sim: IndexSim) -> None:
    """No version asked: the catalog's newest (2.15) is not on the index; its 2.9 is taken."""
    real = Real(tmp_path, sim, requirements=("torch",))
    with real.agent() as agent:
        state = agent.wait_state("active")
        assert state["backend"] == "cu128"
        assert real.build()["torch"] == "2.9.0+cu128"
        assert agent.terminate() == 0


def test_index_failure_keeps_the_old_env_and_reports(real: Real, knobs: Knobs) -> None:
    with real.agent() as agent:
        agent.wait_state("active", backend="cu128")
        before = real.build()
        knobs.faults.append(Fault("status", "*", times=-1, status=503))
        point(real.host_link, real.upgraded)
        failed = agent.wait_state("failed")
        assert failed["last_error"]["message"]
        assert failed["last_error"]["exit_code"] == 1
        assert failed["backend"] == "cu128"
        assert real.build() == before  # the old environment is untouched and still works
        knobs.faults.clear()
        code, _ = agent.post("/v1/reconcile")
        assert code == 202
        agent.wait_state("active", backend="cu130")
        assert agent.terminate() == 0


def test_sigterm_mid_provision_leaves_the_old_env(real: Real, knobs: Knobs, sim: IndexSim) -> None:
    with real.agent() as agent:
        agent.wait_state("active", backend="cu128")
        before = real.build()
        knobs.latency = 0.5  # every index answer is slow: the provision takes a while
        seen = len(sim.requests())
        point(real.host_link, real.upgraded)
        agent.wait_state("provisioning")
        wait_until(lambda: len(sim.requests()) > seen, "the child to reach the index")
        assert agent.terminate() == 0
    assert real.build() == before
    state = json.loads((real.tmp / "state" / "agent-state.json").read_text())
    assert state["environments"]["default"]["backend"] == "cu128"
    # a restarted agent finishes the job
    knobs.latency = 0.0
    with real.agent() as agent:
        agent.wait_state("active", backend="cu130")
        assert real.build()["torch"].endswith("+cu130")
        assert agent.terminate() == 0
