"""The agent as a real process on a temporary socket, provisioning through the fake seam."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import HOSTS
from helpers.daemon import (
    FAKE_AUTO,
    AgentProcess,
    point,
    running_agent,
    upgraded_host,
    wait_until,
    write_config,
)

BASE_HOST = HOSTS / "rtx5090-driver570"


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.host_link = tmp / "host"
        point(self.host_link, BASE_HOST)
        self.upgraded = upgraded_host(BASE_HOST, tmp / "host-580")
        self.prefix = tmp / "envs" / "default"
        self.prefix.parent.mkdir()
        self.socket = tmp / "run" / "agent.sock"
        self.control = tmp / "control.json"
        self.control.write_text("{}")
        self.textfile = tmp / "metrics" / "torchenv.prom"
        self.nfd = tmp / "nfd" / "torchenv"
        self.config = write_config(
            tmp / "config.toml",
            socket=self.socket,
            state_dir=tmp / "state",
            host_replay=self.host_link,
            provisioner=[sys.executable, str(FAKE_AUTO)],
            interval=600,
            watch_interval=0.2,
            backoff_initial=600,
            stop_timeout=5,
            textfile=self.textfile,
            nfd_feature_file=self.nfd,
            environments=[
                {
                    "name": "default",
                    "prefix": self.prefix,
                    "requirements": ["torch"],
                    "channel": "stable",
                }
            ],
        )
        self.env = {"FAKE_AUTO_CONTROL": str(self.control)}

    def control_with(self, **values: Any) -> None:
        self.control.write_text(json.dumps(values))

    def active_backend(self) -> str:
        return (self.prefix.resolve() / "backend").read_text()

    def agent(self) -> Any:
        return running_agent(self.config, self.socket, self.tmp / "agent.log", self.env)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def test_status_host_and_metrics_answer(setup: Setup) -> None:
    with setup.agent() as agent:
        env = agent.wait_state("active", backend="cu128")
        assert env["torch"] == "2.11.0+cu128"
        assert env["last_verify"] is not None and env["last_error"] is None
        status = agent.get("/v1/status")
        host = agent.get("/v1/host")
        assert host["nvidia"]["driver_version"] == "570.133.07"
        assert status["agent"]["ready"] is True
        from torchenv.probes.report import HostReport

        assert status["agent"]["host_fingerprint"] == HostReport.from_json(host).fingerprint()
        metrics = agent.get("/metrics")
        assert 'torchenv_environment_state{environment="default",state="active"} 1' in metrics
        assert 'backend="cu128"' in metrics
        assert setup.textfile.read_text().startswith("# HELP")
        assert "torchenv.io/backend=cu128" in setup.nfd.read_text().splitlines()
        assert agent.terminate() == 0
    assert not setup.socket.exists()


def test_host_switch_reprovisions_and_status_shows_new_backend(setup: Setup) -> None:
    with setup.agent() as agent:
        first = agent.wait_state("active", backend="cu128")
        point(setup.host_link, setup.upgraded)  # driver 570 -> 580, one more GPU
        second = agent.wait_state("active", backend="cu130")
        assert second["fingerprint"] != first["fingerprint"]
        assert setup.active_backend() == "cu130"
        assert len(agent.get("/v1/host")["nvidia"]["gpus"]) == 2
        assert "torchenv.io/backend=cu130" in setup.nfd.read_text()
        assert second["provisions"] == {"ok": 2, "failed": 0}
        assert agent.terminate() == 0


def test_restart_keeps_what_was_provisioned(setup: Setup) -> None:
    with setup.agent() as agent:
        agent.wait_state("active", backend="cu128")
        assert agent.terminate() == 0
    setup.control_with(fail="must not be called")
    with setup.agent() as agent:
        env = agent.wait_state("active", backend="cu128")
        # nothing ran (the state matched): the count is the first run's, kept across the restart
        assert env["provisions"] == {"ok": 1, "failed": 0}
        assert agent.terminate() == 0


def test_failing_provision_keeps_old_env_and_reports(setup: Setup) -> None:
    with setup.agent() as agent:
        agent.wait_state("active", backend="cu128")
        old_target = setup.prefix.resolve()
        setup.control_with(fail="no torch build serves this host")
        point(setup.host_link, setup.upgraded)
        env = agent.wait_state("failed")
        assert env["last_error"]["message"] == "no torch build serves this host"
        assert env["last_error"]["hint"] == "fake hint"
        assert env["backend"] == "cu128"  # the active environment is still the old one
        assert setup.prefix.resolve() == old_target
        assert env["failures"] == 1 and env["next_retry"] > env["last_error"]["at"]
        # back-off: the loop does not retry on its own for 600 s; an explicit request does
        setup.control_with()
        code, body = agent.post("/v1/reconcile")
        assert code == 202 and body["accepted"] is True
        env = agent.wait_state("active", backend="cu130")
        assert env["provisions"] == {"ok": 2, "failed": 1}
        assert agent.terminate() == 0


def test_sigterm_during_provision_keeps_old_env(setup: Setup) -> None:
    with setup.agent() as agent:
        agent.wait_state("active", backend="cu128")
        old_target = setup.prefix.resolve()
        marker = setup.tmp / "hanging"
        setup.control_with(hang=str(marker))
        point(setup.host_link, setup.upgraded)
        wait_until(marker.exists, "the provision to start")
        assert agent.env_status()["state"] == "provisioning"
        child = int(wait_until(marker.read_text, "the child's pid"))
        assert agent.terminate() == 0
        assert not _alive(child)
    assert setup.prefix.resolve() == old_target
    assert setup.active_backend() == "cu128"
    state = json.loads((setup.tmp / "state" / "agent-state.json").read_text())
    assert state["environments"]["default"]["backend"] == "cu128"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[1][0] != "Z"


def _raw(path: Path, payload: bytes, *, shut: bool = True) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(path))
        s.sendall(payload)
        if shut:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status_line(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /v1/status HTTP/2.0\r\n\r\n", 505),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"DELETE /v1/status HTTP/1.1\r\n\r\n", 405),
        (b"GET /v1/reconcile HTTP/1.1\r\n\r\n", 405),
        (b"POST /v1/reconcile HTTP/1.1\r\nContent-Length: 5\r\n\r\n[1,2]", 400),
        (b"POST /v1/reconcile HTTP/1.1\r\nContent-Length: 3\r\n\r\n{x}", 400),
        (b"POST /v1/reconcile HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort", 400),
        (b"POST /v1/reconcile HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"POST /v1/reconcile HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST /v1/reconcile HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b'POST /v1/reconcile HTTP/1.1\r\nContent-Length: 21\r\n\r\n{"environment":"zzz"}', 404),
        (b"GET /v1/status HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"GET /v1/status HTTP/1.1\r\nX: " + b"a" * 10000 + b"\r\n\r\n", 431),
        (b"GET /v1/status HTTP/1.1\r\n\xff\xfe: x\r\n\r\n", 400),
        (b"GET /v1/sta", 400),
    ],
)
def test_malformed_requests_get_4xx_and_the_loop_continues(
    setup: Setup, payload: bytes, status: int
) -> None:
    with setup.agent() as agent:
        agent.wait_state("active", backend="cu128")
        answer = _raw(setup.socket, payload)
        assert _status_line(answer) == status
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["message"]
        # the loop still works: it answers and follows a host change
        point(setup.host_link, setup.upgraded)
        agent.wait_state("active", backend="cu130")
        assert agent.terminate() == 0


def test_a_silent_client_times_out_without_blocking_others(setup: Setup) -> None:
    with setup.agent() as agent:
        agent.wait_state("active")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
            idle.connect(str(setup.socket))
            idle.sendall(b"GET /v1/status HTTP/1.1\r\n")  # never finishes the head
            assert agent.get("/v1/status")["agent"]["ready"] is True  # others are served
            idle.settimeout(30)
            answer = idle.recv(65536)
        assert _status_line(answer) == 408
        assert agent.terminate() == 0


def test_sighup_and_post_trigger_a_reconcile(setup: Setup) -> None:
    import signal

    with setup.agent() as agent:
        agent.wait_state("active")
        before = agent.get("/v1/status")["agent"]["reconciles"]
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: agent.get("/v1/status")["agent"]["reconciles"] > before, "SIGHUP")
        before = agent.get("/v1/status")["agent"]["reconciles"]
        code, _ = agent.post("/v1/reconcile", {"environment": "default"})
        assert code == 202
        wait_until(lambda: agent.get("/v1/status")["agent"]["reconciles"] > before, "POST")
        assert agent.terminate() == 0


def test_second_agent_on_the_same_socket_is_refused(setup: Setup) -> None:
    with setup.agent() as agent:
        agent.wait_state("active")
        second = AgentProcess(setup.config, setup.socket, setup.tmp / "second.log", setup.env)
        try:
            assert second.proc.wait(60) == 1
        finally:
            second.close()
        assert "another agent is listening" in second.text()
        assert agent.get("/v1/status")["agent"]["ready"] is True
        assert agent.terminate() == 0


def test_status_command_text_json_check_and_unreachable(setup: Setup) -> None:
    import subprocess

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "torchenv.agent", "status", "--socket", str(setup.socket),
             *args], capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip

    with setup.agent() as agent:
        agent.wait_state("active", backend="cu128")
        text = status()
        assert text.returncode == 0, text.stderr
        assert "default: active  torch 2.11.0+cu128 (cu128)" in text.stdout
        as_json = json.loads(status("--json").stdout)
        assert as_json["environments"][0]["backend"] == "cu128"
        assert status("--check").returncode == 0
        setup.control_with(fail="broken on purpose")
        point(setup.host_link, setup.upgraded)
        agent.wait_state("failed")
        failed = status("--check")
        assert failed.returncode == 1 and "broken on purpose" in failed.stdout
        assert agent.terminate() == 0
    gone = status()
    assert gone.returncode == 1
    assert "cannot reach the agent" in gone.stderr and "systemctl status" in gone.stderr
    assert json.loads(status("--json").stdout)["error"] == "agent"
