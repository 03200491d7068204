"""The status socket: binding it (mode, group, a stale socket), routing, status and metrics."""

from __future__ import annotations

import asyncio
import grp
import os
import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchenv.agent import __version__
from torchenv.agent.base.errors import ConfigError
from torchenv.agent.daemon import metrics
from torchenv.agent.daemon.http import (
    MAX_HEAD,
    HttpError,
    Request,
    Response,
    error_response,
    json_response,
    serve_connection,
)

if TYPE_CHECKING:
    from torchenv.agent.daemon.config import AgentConfig
    from torchenv.agent.daemon.log import JournalReporter
    from torchenv.agent.daemon.outputs import OutputStatus
    from torchenv.agent.daemon.provision import Provision
    from torchenv.agent.daemon.state import EnvStatus
    from torchenv.probes.report import HostReport

ROUTES = {
    "/v1/status": ("GET",),
    "/v1/host": ("GET",),
    "/v1/reconcile": ("POST",),
    "/metrics": ("GET",),
}


def _group_id(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(
            f"socket-group {group!r} does not exist",
            hint=f"create it (groupadd --system {group}) or change socket-group",
        ) from None


def bind_socket(path: Path, group: str | None) -> socket.socket:
    """A listening Unix socket at `path`, mode 0660 and owned by `group`."""
    gid = _group_id(group) if group is not None else None
    sock = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o660)
        if gid is not None:
            os.chown(path, -1, gid)
        sock.listen(16)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise ConfigError(
            f"cannot listen on {path}: {exc.strerror or exc}",
            hint="set socket in [agent] to a writable path, or run under systemd "
            "with RuntimeDirectory=torchenv",
        ) from exc
    return sock


def _remove_stale(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(
            f"{path} exists and is not a socket", hint="remove it or choose another socket path"
        )
    probe_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe_sock.connect(str(path))
    except OSError:
        path.unlink()  # left by an agent that died
        return
    finally:
        probe_sock.close()
    raise ConfigError(
        f"another agent is listening on {path}",
        hint="stop it first (systemctl stop torchenv-agent)",
    )


class StatusServer:
    """The agent's side of the status socket: routing requests, status JSON and metrics."""

    statuses: dict[str, EnvStatus]
    config: AgentConfig
    started: float
    ready: bool
    _stopping: bool
    _provision: Provision | None
    reconciles: int
    last_reconcile: float | None
    host: HostReport | None
    host_error: str | None
    outputs: dict[str, OutputStatus]
    log: JournalReporter

    if TYPE_CHECKING:

        def trigger(self, names: set[str] | None, why: str) -> None: ...

    def summary(self) -> str:
        parts = [
            f"{s.name} {s.state.value}" + (f" {s.backend}" if s.backend else "")
            for s in self.statuses.values()
        ]
        return "; ".join(parts)

    def status_json(self) -> dict[str, Any]:
        specs = {spec.name: spec for spec in self.config.environments}
        return {
            "agent": {
                "version": __version__,
                "pid": os.getpid(),
                "started": self.started,
                "ready": self.ready,
                "stopping": self._stopping,
                "reconciling": self._provision is not None,
                "reconciles": self.reconciles,
                "last_reconcile": self.last_reconcile,
                "host_fingerprint": self.host.fingerprint() if self.host else None,
                "host_error": self.host_error,
                "host_replay": str(self.config.host_replay) if self.config.host_replay else None,
                "config": str(self.config.source) if self.config.source else None,
            },
            "environments": [
                {**s.to_json(), "desired": specs[name].to_json()}
                for name, s in self.statuses.items()
            ],
            "outputs": [o.to_json() for o in self.outputs.values()],
        }

    def metrics_text(self) -> str:
        return metrics.render_metrics(
            list(self.statuses.values()),
            version=__version__,
            started=self.started,
            fingerprint=self.host.fingerprint() if self.host else None,
            reconciles=self.reconciles,
            ready=self.ready,
            outputs=list(self.outputs.values()),
        )

    async def handle(self, request: Request) -> Response:
        methods = ROUTES.get(request.path)
        if methods is None:
            raise HttpError(404, f"no resource {request.path}; try /v1/status")
        if request.method not in methods:
            return Response(
                405,
                error_response(405, f"use {methods[0]}").body,
                headers={"Allow": ", ".join(methods)},
            )
        if request.path == "/v1/status":
            return json_response(200, self.status_json())
        if request.path == "/v1/host":
            if self.host is None:
                return error_response(503, self.host_error or "the host was not probed yet")
            return json_response(200, self.host.to_json())
        if request.path == "/metrics":
            return Response(
                200,
                self.metrics_text().encode(),
                content_type="text/plain; version=0.0.4; charset=utf-8",
            )
        return self._reconcile_request(request)

    def _reconcile_request(self, request: Request) -> Response:
        body = request.json()
        if body is not None and not isinstance(body, dict):
            raise HttpError(
                400, 'the body must be a JSON object such as {"environment": "default"}'
            )
        name = (body or {}).get("environment")
        if name is not None and not isinstance(name, str):
            raise HttpError(
                400,
                'environment must be the name of one environment, e.g. {"environment": "default"}',
            )
        if name is not None and name not in self.statuses:
            raise HttpError(404, f"no environment {name!r}")
        if self._stopping:
            return error_response(503, "the agent is stopping")
        self.trigger({name} if name else None, "POST /v1/reconcile")
        return json_response(
            202, {"accepted": True, "environments": [name] if name else list(self.statuses)}
        )

    async def _serve(self) -> asyncio.AbstractServer:
        sock = bind_socket(self.config.socket, self.config.socket_group)

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await serve_connection(reader, writer, self.handle, on_error=self.log.error)

        server = await asyncio.start_unix_server(connection, sock=sock, limit=MAX_HEAD)
        self.log.info(f"listening on {self.config.socket}")
        return server
