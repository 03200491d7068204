"""The agent speaks the systemd notification protocol to a fake $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import HOSTS
from helpers.daemon import FAKE_AUTO, running_agent, wait_until, write_config

from torchenv.agent.daemon.notify import Notifier, socket_address, watchdog_interval


class FakeManager:
    """A datagram socket that collects what the agent sends, like systemd's notify socket."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)
        self.messages: list[list[str]] = []

    def drain(self) -> list[list[str]]:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.messages
            self.messages.append(data.decode().split("\n"))

    def lines(self) -> list[str]:
        return [line for message in self.drain() for line in message]

    def close(self) -> None:
        self.sock.close()


def _config(tmp: Path) -> Path:
    prefix = tmp / "envs" / "default"
    prefix.parent.mkdir()
    return write_config(
        tmp / "config.toml",
        socket=tmp / "agent.sock",
        state_dir=tmp / "state",
        host_replay=HOSTS / "rtx5090-driver570",
        provisioner=[sys.executable, str(FAKE_AUTO)],
        interval=600,
        watch_interval=0.5,
        environments=[{"name": "default", "prefix": prefix}],
    )


@pytest.mark.parametrize("abstract", [False, True])
def test_ready_status_watchdog_and_stopping(tmp_path: Path, abstract: bool) -> None:
    if abstract:
        name = f"torchenv-test-{uuid.uuid4().hex}"
        manager, notify = FakeManager(b"\0" + name.encode()), "@" + name
    else:
        manager = FakeManager(str(tmp_path / "notify"))
        notify = str(tmp_path / "notify")
    config = _config(tmp_path)
    env = {"NOTIFY_SOCKET": notify, "WATCHDOG_USEC": "200000"}
    try:
        with running_agent(config, tmp_path / "agent.sock", tmp_path / "log", env) as agent:
            wait_until(lambda: "READY=1" in manager.lines(), "READY=1")
            ready = next(m for m in manager.messages if "READY=1" in m)
            assert f"MAINPID={agent.proc.pid}" in ready
            assert any(line.startswith("STATUS=default active") for line in ready)
            # the first reconcile provisioned: a STATUS line said so before READY
            before = manager.messages[: manager.messages.index(ready)]
            assert any(line.startswith("STATUS=provisioning default") for m in before for line in m)
            count = sum(m == ["WATCHDOG=1"] for m in manager.messages)
            wait_until(
                lambda: sum(m == ["WATCHDOG=1"] for m in manager.drain()) > count + 2,
                "watchdog pings",
            )
            assert agent.terminate() == 0
        lines = manager.lines()
        assert "STOPPING=1" in lines
    finally:
        manager.close()


def test_socket_address_and_watchdog_interval() -> None:
    assert socket_address("@name") == b"\0name"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("vsock:2:1234") is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid=5) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4"}, pid=5) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "5"}, pid=5) == 15.0
    assert watchdog_interval({}, pid=5) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid=5) is None


def test_notifier_is_silent_outside_systemd_and_survives_a_gone_manager(tmp_path: Path) -> None:
    assert Notifier({}).send("READY=1") is False
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert gone.enabled and gone.send("READY=1") is False
    assert gone.failures == 1


def test_multiline_values_stay_one_line(tmp_path: Path) -> None:
    manager = FakeManager(str(tmp_path / "n"))
    try:
        Notifier({"NOTIFY_SOCKET": str(tmp_path / "n")}).status("a\nb")
        assert manager.lines() == ["STATUS=a b"]
    finally:
        manager.close()


def test_once_waits_for_a_late_driver_then_marks_done(tmp_path: Path) -> None:
    """Bootstrap: an NVIDIA GPU without its module; the driver appears; --once provisions."""
    import shutil
    import subprocess

    host = tmp_path / "host"
    shutil.copytree(HOSTS / "firstboot-not-loaded", host)
    prefix = tmp_path / "envs" / "default"
    prefix.parent.mkdir()
    config = write_config(
        tmp_path / "config.toml",
        state_dir=tmp_path / "state",
        host_replay=host,
        provisioner=[sys.executable, str(FAKE_AUTO)],
        environments=[{"name": "default", "prefix": prefix}],
    )
    version = host / "root/sys/module/nvidia/version"
    assert not version.exists()
    done = tmp_path / "state" / "bootstrap.done"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torchenv.agent",
            "agent",
            "--config",
            str(config),
            "--once",
            "--wait-driver",
            "120",
            "--mark-done",
            str(done),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(1.0)  # let it start waiting; it must not have provisioned yet
        assert proc.poll() is None and not prefix.exists()
        version.parent.mkdir(parents=True, exist_ok=True)
        version.write_text("580.95.05\n")
        out = proc.communicate(timeout=120)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "waiting up to 120 s" in out
    assert (prefix.resolve() / "backend").read_text() == "cu130"
    assert done.exists()


def test_once_exits_1_and_leaves_no_mark_when_provisioning_fails(tmp_path: Path) -> None:
    import subprocess

    control = tmp_path / "control.json"
    control.write_text('{"fail": "index unreachable"}')
    prefix = tmp_path / "default"
    config = write_config(
        tmp_path / "config.toml",
        state_dir=tmp_path / "state",
        host_replay=HOSTS / "cpu-cloud-vm",
        provisioner=[sys.executable, str(FAKE_AUTO)],
        environments=[{"name": "default", "prefix": prefix}],
    )
    done = tmp_path / "done"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torchenv.agent",
            "agent",
            "--config",
            str(config),
            "--once",
            "--mark-done",
            str(done),
        ],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "FAKE_AUTO_CONTROL": str(control)},
        timeout=120,
    )
    assert result.returncode == 1
    assert "index unreachable" in result.stderr
    assert not done.exists()
