"""The fault suite, kills: SIGKILL at each step of sync, rollback and auto, through the seam.

A row names the command and the fault point (TORCHENV_FAULT=<point>:kill). Before the kill
the prefix has an active environment B and a previous one A. After it: the environment the
prefix points at verifies, the rollback target is the one the step implies (the state is
recoverable from disk), the next run succeeds, and no debris is left.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.faults import HOST, TORCHENV, real_lock, run
from helpers.locks import PY
from indexsim import IndexSim, Knobs, Site

from torchenv.agent.base.reporter import RecordingReporter
from torchenv.agent.env import sync, venv
from torchenv.agent.lock.pylock import read_lock_file
from torchenv.agent.pipeline.stages import verifier_for

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Kill:
    command: str  # "sync" or "rollback"
    point: str
    switched: bool  # did the kill come after the prefix's rename?


ROWS = [
    Kill("sync", "download", switched=False),
    Kill("sync", "install", switched=False),
    Kill("sync", "write-state.json", switched=False),  # while writing the intent
    Kill("sync", "intent", switched=False),
    Kill("sync", "switch", switched=False),  # the new symlink made, not yet renamed
    Kill("sync", "switched", switched=True),  # renamed; the state not yet written
    Kill("rollback", "write-state.json", switched=False),
    Kill("rollback", "intent", switched=False),
    Kill("rollback", "switch", switched=False),
    Kill("rollback", "switched", switched=True),
]


@dataclass
class Prefix:
    tmp: Path
    prefix: Path
    locks: tuple[Path, Path, Path]
    host_file: Path

    @property
    def layout(self) -> venv.Layout:
        return venv.Layout.for_prefix(self.prefix)

    def sync(self, lock: Path) -> str:
        parsed, raw = read_lock_file(lock)
        return sync.sync(
            parsed, raw, self.prefix, host_facts=HOST.target_facts(),
            cache_dir=self.tmp / "cache", reporter=RecordingReporter(),
            verifier=verifier_for(HOST, parsed, devices_here=False),
        ).env_id  # fmt: skip

    def cli(self, command: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
        args = ["rollback", "--prefix", str(self.prefix)]
        if command == "sync":
            args = ["sync", str(self.locks[2]), "--prefix", str(self.prefix), "--host-report",
                    str(self.host_file)]  # fmt: skip
        return run(args, self.tmp, env={"TORCHENV_FAULT": fault} if fault else None)

    def debris(self) -> list[str]:
        home = self.layout.home
        found = [p.name for p in home.iterdir() if p.name.startswith(".")]
        found += [p.name for p in (self.tmp / "cache").rglob("*.part")]
        return found


@pytest.fixture
def prefix(tmp_path: Path) -> Prefix:
    host_file = tmp_path / "host.json"
    host_file.write_text(json.dumps(HOST.to_json()))
    locks = (
        real_lock(tmp_path / "a"),
        real_lock(tmp_path / "b", torch="2.14.0+cpu"),
        real_lock(tmp_path / "c", torch="2.15.0+cpu"),  # its own torch wheel: downloaded
    )
    return Prefix(tmp_path, tmp_path / ".venv", locks, host_file)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.command}-{r.point}")
def test_a_kill_at_any_step_leaves_a_working_prefix_and_its_way_back(
    prefix: Prefix, row: Kill
) -> None:
    a = prefix.sync(prefix.locks[0])
    b = prefix.sync(prefix.locks[1])
    killed = prefix.cli(row.command, f"{row.point}:kill")
    assert killed.returncode == -9, killed.stderr
    layout = prefix.layout
    active = venv.active_env(layout)
    state = venv.read_state(layout)

    if row.command == "rollback":
        expected = (a, b) if row.switched else (b, a)
    else:
        expected = (active, b) if row.switched else (b, a)
        assert active not in (a, None) and (active != b) == row.switched
    assert (active, state.get("previous")) == expected
    assert venv.python_in(layout.env_dir(expected[1])).exists()  # the way back is there
    checked = run(["verify", "--json", "--prefix", str(prefix.prefix)], prefix.tmp)
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"], checked.stdout

    again = prefix.cli(row.command)  # the same command, not killed this time
    assert again.returncode == 0, again.stderr
    now_active, now_previous = venv.active_env(layout), venv.read_state(layout).get("previous")
    assert now_previous == expected[0]  # what was active before this run
    assert now_active != now_previous
    assert sorted(p.name for p in layout.envs.iterdir()) == sorted([now_active, now_previous])
    assert prefix.debris() == []


def test_a_lost_state_file_keeps_the_way_back(prefix: Prefix) -> None:
    """Without state.json the previous environment is found on disk, not deleted."""
    a = prefix.sync(prefix.locks[0])
    b = prefix.sync(prefix.locks[1])
    prefix.layout.state_file.unlink()
    assert venv.read_state(prefix.layout)["previous"] == a
    done = prefix.cli("rollback")
    assert done.returncode == 0, done.stderr
    assert (venv.active_env(prefix.layout), venv.read_state(prefix.layout)["previous"]) == (a, b)


def test_a_build_cut_short_never_lands_where_the_prefix_points(prefix: Prefix) -> None:
    """The active environment's directory was removed (the prefix still names it): a sync
    killed mid-install leaves its half-built environment under another name, so neither the
    prefix nor the way back names it, and the next sync builds a working one."""
    a = prefix.sync(prefix.locks[0])
    b = prefix.sync(prefix.locks[1])
    layout = prefix.layout
    venv.discard(layout.env_dir(b))
    killed = prefix.cli("sync", "install:kill")
    assert killed.returncode == -9, killed.stderr
    assert (venv.active_env(layout), venv.read_state(layout)["previous"]) == (b, a)
    assert not layout.env_dir(b).exists()  # not rebuilt, half-way, under the prefix
    done = prefix.cli("rollback")
    assert done.returncode == 0, done.stderr
    assert venv.active_env(layout) == a
    again = prefix.cli("sync")
    assert again.returncode == 0, again.stderr
    checked = run(["verify", "--json", "--prefix", str(prefix.prefix)], prefix.tmp)
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"], checked.stdout


# ---------------------------------------------------------------- auto, against the simulator


@pytest.fixture(scope="module")
def sim(indexsim_site: Site) -> Iterator[IndexSim]:
    with IndexSim(indexsim_site, Knobs()) as server:
        yield server


def auto_args(prefix: Path) -> list[str]:
    return ["auto", "torch==2.9.*", "--json", "--prefix", str(prefix), "--os", "linux",
            "--arch", "x86_64", "--python", PY]  # fmt: skip


def sim_env(sim: IndexSim) -> dict[str, str]:
    return {"TORCHENV_TORCH_INDEX_URL": sim.torch_index_url, "TORCHENV_INDEX_URL": sim.pypi_url}


def test_a_kill_while_auto_writes_the_lock_leaves_nothing_half_written(
    sim: IndexSim, tmp_path: Path
) -> None:
    prefix = tmp_path / "env"
    killed = run(auto_args(prefix), tmp_path,
                 env={**sim_env(sim), "TORCHENV_FAULT": "write-pylock.toml:kill"})  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    home = venv.Layout.for_prefix(prefix).home
    assert list(home.glob(".pylock.toml.*.tmp")) and not (home / "pylock.toml").exists()
    again = run(auto_args(prefix), tmp_path, env=sim_env(sim))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["action"] == "synced"
    assert not list(home.glob(".*.tmp"))


def test_three_concurrent_identical_autos_build_once(sim: IndexSim, tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    env = {**sim_env(sim), "TORCHENV_CACHE_DIR": str(tmp_path / "cache"),
           "TORCHENV_USER_CONFIG": str(tmp_path / "none.toml")}  # fmt: skip
    runs = [
        subprocess.Popen(
            [*TORCHENV, *auto_args(prefix)],
            cwd=tmp_path,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=300) for p in runs]
    assert all(p.returncode == 0 for p in runs), [err for _, err in results]
    actions = sorted(json.loads(out)["action"] for out, _ in results)
    assert actions == ["synced", "unchanged", "unchanged"]
    assert len(list(venv.Layout.for_prefix(prefix).envs.iterdir())) == 1
