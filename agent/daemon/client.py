"""The status socket's client: one HTTP request over a Unix socket, and a plain-text rendering."""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path
from typing import Any

from torchenv.agent.base.errors import TorchenvError


class AgentUnreachable(TorchenvError):
    kind = "agent"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request(
    path: Path, method: str, target: str, body: Any = None, timeout: float = 10.0
) -> tuple[int, Any]:
    """(status, decoded JSON or text) from the agent at `path`. Raises AgentUnreachable."""
    connection = _UnixConnection(path, timeout)
    payload = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    try:
        connection.request(method, target, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    except PermissionError as exc:
        raise AgentUnreachable(
            f"no permission to connect to {path}",
            hint="join the socket's group (socket-group in the agent's configuration), or use sudo",
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise AgentUnreachable(
            f"cannot reach the agent at {path}: {exc}",
            hint="is it running? `systemctl status torchenv-agent`; or pass --socket PATH",
        ) from exc
    finally:
        connection.close()
    if response.headers.get_content_type() != "application/json":
        return response.status, raw.decode("utf-8", "replace")
    try:
        return response.status, json.loads(raw)
    except ValueError as exc:
        raise AgentUnreachable(
            f"the answer from {path} is not the JSON it claims to be: {exc}",
            hint="is a torchenv agent listening there? pass --socket PATH",
        ) from exc


def _age(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    seconds = max(0, int(now - timestamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def render_status(status: dict[str, Any], now: float | None = None) -> str:
    """The human view of GET /v1/status."""
    now = time.time() if now is None else now
    agent = status.get("agent", {})
    lines = [
        f"agent {agent.get('version')} (pid {agent.get('pid')}): "
        + ("ready" if agent.get("ready") else "starting")
        + (", provisioning" if agent.get("reconciling") else "")
        + f"; host {agent.get('host_fingerprint') or 'not probed'}"
    ]
    if agent.get("host_error"):
        lines.append(f"  host: {agent['host_error']}")
    for env in status.get("environments", []):
        build = f"torch {env.get('torch')} ({env.get('backend')})" if env.get("backend") else "-"
        lines.append(
            f"{env.get('name')}: {env.get('state')}  {build}  {env.get('prefix')}  "
            f"verified {_age(env.get('last_verify'), now)}"
        )
        error = env.get("last_error")
        if error:
            lines.append(f"  last error ({_age(error.get('at'), now)}): {error.get('message')}")
            if error.get("hint"):
                lines.append(f"  hint: {error['hint']}")
    for output in failed_outputs(status):
        lines.append(
            f"output {output.get('name')}: FAILED ({_age(output.get('last_attempt'), now)}): "
            f"{output.get('error')}; last written {_age(output.get('last_success'), now)}"
        )
        if output.get("hint"):
            lines.append(f"  hint: {output['hint']}")
    return "\n".join(lines)


def failed_outputs(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The output files (state, textfile, NFD labels) whose last write failed."""
    return [o for o in status.get("outputs", []) if isinstance(o, dict) and o.get("ok") is False]
