"""Shared helpers for the agent's tests: configs, recorded-host edits, a real agent process."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from torchenv.agent.daemon.client import request

T = TypeVar("T")
FAKE_AUTO = Path(__file__).resolve().parent / "fake_auto.py"
DEADLINE = 60.0


def wait_until(check: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Poll until `check` returns something truthy (a deadline, not a timing assertion)."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def upgraded_host(
    source: Path,
    target: Path,
    *,
    driver: str = "580.95.05",
    cuda: int = 13000,
    add_gpu: bool = True,
) -> Path:
    """A copy of a recorded host after a driver upgrade (and with one more GPU)."""
    shutil.copytree(source, target, symlinks=True)
    for rel in ("root/sys/module/nvidia/version",):
        (target / rel).write_text(driver + "\n")
    proc = target / "root/proc/driver/nvidia/version"
    if proc.exists():
        text = proc.read_text()
        old = (source / "root/sys/module/nvidia/version").read_text().strip()
        proc.write_text(text.replace(old, driver))
    facts = json.loads((target / "facts.json").read_text())
    nvml = facts.get("nvml")
    if isinstance(nvml, dict):
        nvml["driver_version"] = driver
        nvml["cuda_driver_version"] = cuda
        if add_gpu and nvml.get("devices"):
            extra = copy.deepcopy(nvml["devices"][0])
            extra["index"] = len(nvml["devices"])
            extra["uuid"] = "GPU-00000000-0000-0000-0000-added0000001"
            extra["pci_bus_id"] = "00000000:99:00.0"
            nvml["devices"].append(extra)
    (target / "facts.json").write_text(json.dumps(facts, indent=1))
    return target


def point(link: Path, target: Path) -> None:
    """Atomically make `link` a symlink to `target` (switching the replayed host)."""
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def write_config(path: Path, *, environments: list[dict[str, Any]], **agent: Any) -> Path:
    """A TOML agent configuration (values are str, number, bool or list of str)."""

    def value(v: Any) -> str:
        return (
            json.dumps([str(x) for x in v])
            if isinstance(v, list)
            else json.dumps(str(v) if isinstance(v, Path) else v)
        )

    lines = ["[agent]"] + [f"{k.replace('_', '-')} = {value(v)}" for k, v in agent.items()]
    for env in environments:
        lines += ["", "[[environment]]"] + [f"{k} = {value(v)}" for k, v in env.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class AgentProcess:
    """`torchenv agent --config FILE` as a real child process."""

    def __init__(
        self, config: Path, socket_path: Path, log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.socket = socket_path
        self.log = log
        self._log_fh = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "torchenv.agent", "agent", "--config", str(config)],
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            env={**os.environ, **(env or {})},
        )

    def get(self, target: str) -> Any:
        code, body = request(self.socket, "GET", target)
        assert code == 200, (code, body)
        return body

    def post(self, target: str, body: Any = None) -> tuple[int, Any]:
        return request(self.socket, "POST", target, body=body)

    def env_status(self, name: str = "default") -> dict[str, Any]:
        status = self.get("/v1/status")
        return next(e for e in status["environments"] if e["name"] == name)

    def wait_answering(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the agent exited: {self.log.read_text()}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket))
                return True
            except OSError:
                return False

        wait_until(up, "the agent's socket")

    def wait_state(self, state: str, name: str = "default", **fields: Any) -> dict[str, Any]:
        def match() -> dict[str, Any] | None:
            env = self.env_status(name)
            ok = env["state"] == state and all(env.get(k) == v for k, v in fields.items())
            return env if ok else None

        try:
            return wait_until(match, f"{name} {state} {fields}")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; last {self.env_status(name)}; log:\n{self.text()}"
            ) from None

    def terminate(self, timeout: float = DEADLINE) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._log_fh.close()
        return code

    def close(self) -> None:
        """However the test ended: SIGTERM first, so that the agent stops its provision's
        process group (a SIGKILLed agent would orphan it), then SIGKILL if it lingers."""
        try:
            self.terminate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        finally:
            self._log_fh.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running_agent(
    config: Path, socket_path: Path, log: Path, env: dict[str, str] | None = None
) -> Iterator[AgentProcess]:
    agent = AgentProcess(config, socket_path, log, env)
    try:
        agent.wait_answering()
        yield agent
    finally:
        agent.close()
