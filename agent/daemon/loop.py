"""The reconcile loop: probe, compare with what each environment was made for, provision, report."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import signal
import socket
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from torchenv.agent import __version__
from torchenv.agent.base.errors import ConfigError, TorchenvError
from torchenv.agent.daemon import metrics
from torchenv.agent.daemon.config import AgentConfig, EnvironmentSpec
from torchenv.agent.daemon.driverwait import should_wait
from torchenv.agent.daemon.http import (
    MAX_HEAD,
    HttpError,
    Request,
    Response,
    error_response,
    json_response,
    serve_connection,
)
from torchenv.agent.daemon.log import JournalReporter
from torchenv.agent.daemon.notify import Notifier
from torchenv.agent.daemon.outputs import NFD, STATE, TEXTFILE, OutputStatus, after_write
from torchenv.agent.daemon.provision import Provision, child_argv, child_env
from torchenv.agent.daemon.state import (
    Action,
    EnvState,
    EnvStatus,
    LastError,
    after_failure,
    after_success,
    atomic_write,
    decide,
    load_state,
    save_state,
)
from torchenv.probes.report import HostReport

STATE_FILE = "agent-state.json"
ROUTES = {
    "/v1/status": ("GET",),
    "/v1/host": ("GET",),
    "/v1/reconcile": ("POST",),
    "/metrics": ("GET",),
}


def prefix_ready(prefix: Path) -> bool:
    return (prefix / "bin" / "python").exists() or (prefix / "Scripts" / "python.exe").exists()


def probe(replay: Path | None) -> HostReport:
    """The host as the probes see it now (the live machine, or a recorded directory)."""
    from torchenv.probes import LiveIO, ReplayIO, probe_host

    return probe_host(ReplayIO(replay) if replay is not None else LiveIO())


def sentinel(config: AgentConfig) -> tuple[Any, ...]:
    """Cheap facts whose change means the host may have changed: read every few seconds."""
    root = config.host_root
    facts: list[Any] = []
    try:
        facts.append((root / config.driver_version_file.lstrip("/")).read_bytes())
    except OSError:
        facts.append(None)
    try:
        facts.append(tuple(sorted(os.listdir(root / "proc/driver/nvidia/gpus"))))
    except OSError:
        facts.append(None)
    facts.append((root / "dev/kfd").exists())
    if config.host_replay is not None:
        for name in ("manifest.json", "facts.json", "commands.json", "env.json"):
            try:
                facts.append((config.host_replay / name).stat().st_mtime_ns)
            except OSError:
                facts.append(None)
    return tuple(facts)


class Agent:
    """One agent process: the loop, its status, the socket, and the talk with systemd."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        notifier: Notifier | None = None,
        reporter: JournalReporter | None = None,
        prober: Callable[[Path | None], HostReport] = probe,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.log = reporter or JournalReporter()
        self._prober = prober
        self.started = time.time()
        self.ready = False
        self.host: HostReport | None = None
        self.host_error: str | None = None
        self.reconciles = 0
        self.last_reconcile: float | None = None
        self.statuses: dict[str, EnvStatus] = {}
        self._state_path = config.state_dir / STATE_FILE
        self.outputs = {
            name: OutputStatus(name=name, path=str(path))
            for name, path in (
                (STATE, self._state_path),
                (TEXTFILE, config.textfile),
                (NFD, config.nfd_feature_file),
            )
            if path is not None
        }
        for spec in config.environments:
            self.statuses[spec.name] = load_state(
                self._state_path, EnvStatus(name=spec.name, prefix=str(spec.prefix))
            )
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._forced: set[str] = set()
        self._provision: Provision | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe")
        self._files_checked: dict[str, float] = {}  # name -> when its files were last hashed

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, *, once: bool = False, wait_driver: float = 0.0) -> int:
        """Reconcile until SIGTERM (or once). Returns the exit code."""
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self.trigger, None, "SIGHUP")
        self._prepare_dirs()
        server = None if once else await self._serve()
        helpers = [asyncio.create_task(self._keepalive())]
        if not once:
            helpers.append(asyncio.create_task(self._watch()))
            if self.config.nfd_feature_file is not None:
                helpers.append(asyncio.create_task(self._refresh_labels()))
        try:
            if wait_driver > 0:
                await self._wait_for_driver(wait_driver)
            while not self._stopping:
                self._wake.clear()
                forced, self._forced = self._forced, set()
                await self.reconcile(forced)
                self._publish()
                if not self.ready:
                    self.ready = True
                    self.notifier.ready(self.summary())
                else:
                    self.notifier.status(self.summary())
                if once:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._next_delay())
        finally:
            self.notifier.stopping("stopping")
            for task in helpers:
                task.cancel()
            if server is not None:
                server.close()
                with contextlib.suppress(OSError):
                    self.config.socket.unlink()
            self._executor.shutdown(wait=False, cancel_futures=True)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        self.log.info(f"stopped ({self.summary()})")
        if once:
            return 0 if all(s.state is EnvState.ACTIVE for s in self.statuses.values()) else 1
        return 0

    def stop(self, why: str = "") -> None:
        if self._stopping:
            return
        self._stopping = True
        self.log.info(f"stopping on {why}" if why else "stopping")
        self.notifier.send("STOPPING=1")
        if self._provision is not None:
            # kept in self: the loop holds tasks only weakly
            self._stop_task = asyncio.get_running_loop().create_task(
                self._provision.stop(grace=self.config.stop_timeout)
            )
        if self._wake is not None:
            self._wake.set()

    def trigger(self, names: set[str] | None, why: str) -> None:
        """Reconcile now; named (or all) environments skip their back-off."""
        self.log.info(f"reconcile requested ({why})")
        self._forced |= names if names is not None else set(self.statuses)
        if self._wake is not None:
            self._wake.set()

    def _next_delay(self) -> float:
        delay = self.config.interval
        now = time.time()
        for status in self.statuses.values():
            if status.state is EnvState.FAILED and status.next_retry is not None:
                delay = min(delay, status.next_retry - now)
        return max(delay, 0.05)

    async def reconcile(self, forced: set[str]) -> None:
        loop = asyncio.get_running_loop()
        try:
            host = await loop.run_in_executor(self._executor, self._prober, self.config.host_replay)
        except (OSError, ValueError) as exc:
            self.host_error = f"cannot probe the host: {exc}"
            self.log.error(self.host_error)
            return
        self.host, self.host_error = host, None
        self.reconciles += 1
        self.last_reconcile = time.time()
        fingerprint = host.fingerprint()
        for spec in self.config.environments:
            if self._stopping:
                break
            await self._reconcile_one(spec, fingerprint, spec.name in forced)

    async def _reconcile_one(self, spec: EnvironmentSpec, fingerprint: str, forced: bool) -> None:
        status = self.statuses[spec.name]
        desired = await self._desired(spec, status.desired)
        prefix_ok = prefix_ready(spec.prefix)
        damage = None
        if prefix_ok and status.state is EnvState.ACTIVE and self._files_due(spec.name):
            loop = asyncio.get_running_loop()
            damage = await loop.run_in_executor(self._executor, self._check_files, spec)
            prefix_ok = not damage
        action = decide(
            status,
            fingerprint,
            desired,
            prefix_ok=prefix_ok,
            now=time.time(),
            forced=forced or bool(damage),
        )
        if action is Action.KEEP:
            if status.state is not EnvState.ACTIVE:
                self.statuses[spec.name] = replace(
                    status, state=EnvState.ACTIVE, failures=0, failed_for=None, next_retry=None
                )
            return
        if action is Action.WAIT:
            return
        why = (
            "first provision"
            if status.fingerprint is None
            else "the host changed"
            if status.fingerprint != fingerprint
            else "the published locks changed"
            if status.desired != desired
            and (status.desired or "").partition("+")[0] == desired.partition("+")[0]
            else "the desired state changed"
            if status.desired != desired
            else f"files changed since they were installed: {damage}"
            if damage
            else "the environment is missing"
        )
        self.log.info(f"{spec.name}: provisioning into {spec.prefix} ({why})")
        self.statuses[spec.name] = replace(status, state=EnvState.PROVISIONING)
        self.notifier.status(f"provisioning {spec.name} ({why})")
        self._provision = Provision(
            child_argv(self.config, spec),
            child_env(self.config, spec, os.environ),
            cwd=self.config.state_dir,
        )
        try:
            outcome = await self._provision.run(self.config.provision_timeout)
        finally:
            self._provision = None
        now = time.time()
        if outcome.interrupted:
            self.statuses[spec.name] = status
            self.log.warning(f"{spec.name}: {outcome.message}")
        elif outcome.ok:
            self.statuses[spec.name] = after_success(
                status,
                fingerprint=fingerprint,
                desired=desired,
                backend=outcome.backend,
                torch=outcome.torch,
                python=outcome.python,
                now=now,
            )
            self.log.info(f"{spec.name}: active with torch {outcome.torch} ({outcome.backend})")
        else:
            error = LastError(
                message=outcome.message or "the provision failed",
                hint=outcome.hint,
                kind=outcome.kind,
                at=now,
                exit_code=outcome.exit_code,
            )
            new = after_failure(
                status,
                error,
                target=(fingerprint, desired),
                initial=self.config.backoff_initial,
                maximum=self.config.backoff_max,
            )
            self.statuses[spec.name] = new
            kept = f"kept {status.backend}" if status.fingerprint else "nothing active"
            self.log.error(
                f"{spec.name}: {error.message} ({kept}; retry in "
                f"{(new.next_retry or now) - now:.0f} s)"
            )

    def _files_due(self, name: str) -> bool:
        last = self._files_checked.get(name)
        return last is None or time.time() - last >= self.config.integrity_interval

    def _check_files(self, spec: EnvironmentSpec) -> str | None:
        """Hash the environment's files against RECORD (in the executor); what changed, if any.

        Damage is marked in the prefix's state, so the child `auto` rebuilds it and drops the
        damaged distributions from the installer's cache.
        """
        from torchenv.agent.base.errors import TorchenvError
        from torchenv.agent.env import integrity, prefixlock, venv

        self._files_checked[spec.name] = time.time()
        damage = integrity.full_check(spec.prefix)
        if not damage:
            return None
        text = integrity.describe(damage)
        self.log.warning(f"{spec.name}: installed files differ from their wheels: {text}")
        try:
            layout = venv.Layout.for_prefix(spec.prefix)
            with prefixlock.hold(layout.lock_file, reporter=self.log, timeout=60):
                venv.mark_damaged(layout, {d.dist for d in damage})
        except TorchenvError as exc:
            self.log.warning(f"{spec.name}: cannot mark the damage: {exc.message}")
        return text

    async def _desired(self, spec: EnvironmentSpec, previous: str | None) -> str:
        """What the environment was asked to be: its spec, and with a lock source the index
        published there (a new publication re-runs `auto`, which takes the class's lock)."""
        base = spec.digest()
        loop = asyncio.get_running_loop()
        try:
            published = await loop.run_in_executor(self._executor, self._published, spec)
        except TorchenvError as exc:
            self.log.warning(f"{spec.name}: cannot read its lock source: {exc.message}")
            kept = previous is not None and previous.partition("+")[0] == base
            return previous if kept and previous is not None else base
        return base if published is None else f"{base}+{published}"

    def _published(self, spec: EnvironmentSpec) -> str | None:
        """The lock-source index digest the child `auto` would see (its settings, its env)."""
        from torchenv.agent.base.settings import load_settings
        from torchenv.agent.fleet.locksource import index_digest

        env = child_env(self.config, spec, os.environ)
        return index_digest(load_settings(env=env, cwd=self.config.state_dir))

    async def _wait_for_driver(self, timeout: float) -> None:
        root = self.config.host_root
        wake = self._wake or asyncio.Event()
        deadline = time.monotonic() + timeout
        if should_wait(root, self.config.driver_version_file):
            self.log.info(f"an NVIDIA GPU is present; waiting up to {timeout:g} s for its driver")
            self.notifier.status("waiting for the NVIDIA driver")
        while (
            should_wait(root, self.config.driver_version_file)
            and time.monotonic() < deadline
            and not self._stopping
        ):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), 1.0)
        if should_wait(root, self.config.driver_version_file):
            self.log.warning(
                "the NVIDIA driver did not load in time; provisioning for the host "
                "as it is (the agent will follow when the driver appears)"
            )

    # -- helpers running beside the loop ----------------------------------------------------

    async def _keepalive(self) -> None:
        """WATCHDOG=1 at half the watchdog period; longer start timeouts while provisioning."""
        if not self.notifier.enabled:
            return
        period = self.notifier.watchdog or 30.0
        while True:
            if self.notifier.watchdog:
                self.notifier.ping()
            if not self.ready:
                self.notifier.extend_timeout(max(period * 3, 90.0))
            await asyncio.sleep(period)

    async def _watch(self) -> None:
        last = sentinel(self.config)
        while True:
            await asyncio.sleep(self.config.watch_interval)
            now = sentinel(self.config)
            if now != last:
                last = now
                self.log.info("the driver or the GPU set changed; reconciling")
                if self._wake is not None:
                    self._wake.set()

    def _prepare_dirs(self) -> None:
        try:
            self.config.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the state directory {self.config.state_dir}: {exc.strerror or exc}",
                hint="set state-dir in [agent], or run under systemd with StateDirectory=torchenv",
            ) from exc

    def _publish(self) -> None:
        """State file, node_exporter textfile and NFD features; each one's result is kept."""
        self._write(STATE, lambda: save_state(self._state_path, self.statuses))
        if self.config.textfile is not None:
            textfile = self.config.textfile
            self._write(TEXTFILE, lambda: atomic_write(textfile, self.metrics_text()))
        self._write_labels()

    def _write_labels(self) -> None:
        nfd = self.config.nfd_feature_file
        if nfd is None:
            return
        expires = time.time() + self.config.nfd_expiry
        text = metrics.render_nfd(list(self.statuses.values()), expires=expires)
        self._write(NFD, lambda: atomic_write(nfd, text))

    def _write(self, name: str, write: Callable[[], None]) -> None:
        error = None
        try:
            write()
        except OSError as exc:
            error = exc
        before = self.outputs[name]
        self.outputs[name] = after_write(before, now=time.time(), error=error)
        if error is not None and before.error != self.outputs[name].error:
            self.log.warning(f"{self.outputs[name].error} ({self.outputs[name].hint})")
        elif error is None and before.ok is False:
            self.log.info(f"{name} output written again to {before.path}")

    async def _refresh_labels(self) -> None:
        """Rewrite the NFD file well before its expiry, provisioning or not."""
        while True:
            await asyncio.sleep(self.config.nfd_expiry / 4)
            self._write_labels()

    # -- status ------------------------------------------------------------------------------

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

    # -- the socket --------------------------------------------------------------------------

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


def run_agent(
    config: AgentConfig,
    *,
    once: bool = False,
    wait_driver: float = 0.0,
    mark_done: Path | None = None,
) -> int:
    """The `torchenv agent` body: run the loop; TorchenvError leaves for the CLI to render."""
    code = asyncio.run(Agent(config).run(once=once, wait_driver=wait_driver))
    if once and code == 0 and mark_done is not None:
        atomic_write(mark_done, f"{time.time():.0f}\n")
    return code
