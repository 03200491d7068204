"""`torchenv entrypoint`: provision, then exec CMD so that signals and the exit code are CMD's."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from indexsim import Site

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.daemon import FAKE_AUTO, wait_until

from torchenv.agent.cli.entrypoint import activated_env

TORCHENV = [sys.executable, "-m", "torchenv.agent"]
CMD = """
import json, os, signal, sys, time
def bye(signum, frame):
    sys.exit(40 + signum)
signal.signal(signal.SIGTERM, bye)
signal.signal(signal.SIGINT, bye)
info = {"pid": os.getpid(), "venv": os.environ.get("VIRTUAL_ENV"),
        "path0": os.environ["PATH"].split(os.pathsep)[0], "exe": sys.executable}
open(sys.argv[1] + ".tmp", "w").write(json.dumps(info))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""


Entry = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def entry(tmp_path: Path) -> Iterator[Entry]:
    """`torchenv entrypoint ... -- COMMAND` with the fake provisioner; killed if left running."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        command: list[str], control: dict[str, object] | None = None
    ) -> subprocess.Popen[bytes]:
        (tmp_path / "control.json").write_text(json.dumps(control or {}))
        proc = subprocess.Popen(
            [*TORCHENV, "entrypoint", "--prefix", str(tmp_path / "env"),
             "--provisioner", f"{sys.executable} {FAKE_AUTO}",
             "--auto-args", f"--replay {HOSTS / 'cpu-cloud-vm'}", "--", *command],
            env={**os.environ, "FAKE_AUTO_CONTROL": str(tmp_path / "control.json")},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)  # reaps it and closes its pipes


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_reach_the_command_and_its_exit_code_is_ours(
    tmp_path: Path, entry: Entry, sig: int
) -> None:
    script = tmp_path / "cmd.py"
    script.write_text(CMD)
    info_file = tmp_path / "info.json"
    proc = entry(["python", str(script), str(info_file)])
    info = json.loads(wait_until(lambda: info_file.exists() and info_file.read_text(), "CMD"))
    assert info["pid"] == proc.pid  # exec'd: CMD is the entrypoint's process, not a child
    assert info["venv"] == str(tmp_path / "env")
    assert info["path0"] == str(tmp_path / "env" / "bin")
    assert Path(info["exe"]).parent == tmp_path / "env" / "bin"  # `python` is the env's
    proc.send_signal(sig)
    assert proc.wait(60) == 40 + sig


@pytest.mark.parametrize("code", [0, 3, 77])
def test_exit_code_passes_through(entry: Entry, code: int) -> None:
    proc = entry(["python", "-c", f"import sys; sys.exit({code})"])
    assert proc.wait(60) == code


def test_a_failed_provision_does_not_run_the_command(tmp_path: Path, entry: Entry) -> None:
    marker = tmp_path / "ran"
    proc = entry(["touch", str(marker)], control={"fail": "no build for this host"})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"no build for this host" in err and b"fake hint" in err
    assert not marker.exists()


def test_a_missing_command_is_127_and_no_command_is_an_error(entry: Entry) -> None:
    proc = entry(["no-such-command-torchenv"])
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 127 and b"no-such-command-torchenv" in err
    empty = entry([])
    _, err = empty.communicate(timeout=60)
    assert empty.returncode == 1 and b"no command" in err


def test_activated_env_puts_the_env_first_and_drops_pythonhome() -> None:
    env = activated_env(Path("/opt/env"), {"PATH": "/usr/bin:/bin", "PYTHONHOME": "/x", "A": "1"})
    assert env["PATH"] == "/opt/env/bin:/usr/bin:/bin"
    assert env["VIRTUAL_ENV"] == "/opt/env" and "PYTHONHOME" not in env and env["A"] == "1"
    assert activated_env(Path("/e"), {})["PATH"] == "/e/bin"


@pytest.mark.e2e
def test_with_the_real_auto_second_start_is_the_no_op_path(
    tmp_path: Path, indexsim_site: Site
) -> None:
    from indexsim import IndexSim, Knobs

    site = indexsim_site
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    with IndexSim(site, Knobs()) as sim:
        env = {**os.environ, "TORCHENV_TORCH_INDEX_URL": sim.torch_index_url,
               "TORCHENV_INDEX_URL": sim.pypi_url, "TORCHENV_CACHE_DIR": str(tmp_path / "c"),
               "TORCHENV_USER_CONFIG": str(tmp_path / "none.toml")}  # fmt: skip
        env.pop("TORCHENV_FAULT", None)
        code = "import torch, sys; print(torch.__version__); sys.exit(5)"
        (tmp_path / "requirements.txt").write_text("torch==2.9.*\n")
        argv = [*TORCHENV, "entrypoint", "--prefix", str(tmp_path / "env"), "-r",
                "requirements.txt",
                "--auto-args", f"--replay {HOSTS / 'cpu-cloud-vm'} --python {py}", "--",
                "python", "-c", code]  # fmt: skip
        first = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                               cwd=tmp_path, timeout=300)  # fmt: skip
        assert first.returncode == 5, first.stderr
        assert first.stdout.strip() == "2.9.0+cpu"
        asked = len(sim.requests())
        second = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                                cwd=tmp_path, timeout=300)  # fmt: skip
        assert second.returncode == 5 and second.stdout.strip() == "2.9.0+cpu"
        assert len(sim.requests()) == asked  # already right: no index traffic
