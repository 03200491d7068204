"""The reconcile loop: probe, compare with what each environment was made for, provision, report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from torchenv.agent.base.errors import TorchenvError
from torchenv.agent.daemon.config import AgentConfig, EnvironmentSpec
from torchenv.agent.daemon.drift import DriftChecks
from torchenv.agent.daemon.driverwait import should_wait
from torchenv.agent.daemon.log import JournalReporter
from torchenv.agent.daemon.notify import Notifier
from torchenv.agent.daemon.outputs import NFD, STATE, TEXTFILE, OutputStatus
from torchenv.agent.daemon.provision import Provision, child_argv, child_env
from torchenv.agent.daemon.server import StatusServer
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
)
from torchenv.agent.daemon.writer import OutputWriter
from torchenv.probes.report import HostReport

STATE_FILE = "agent-state.json"


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


class Daemon(DriftChecks, OutputWriter, StatusServer):
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

    # -- status ------------------------------------------------------------------------------

    # -- the socket --------------------------------------------------------------------------


def run_agent(
    config: AgentConfig,
    *,
    once: bool = False,
    wait_driver: float = 0.0,
    mark_done: Path | None = None,
) -> int:
    """The `torchenv agent` body: run the loop; TorchenvError leaves for the CLI to render."""
    code = asyncio.run(Daemon(config).run(once=once, wait_driver=wait_driver))
    if once and code == 0 and mark_done is not None:
        atomic_write(mark_done, f"{time.time():.0f}\n")
    return code
