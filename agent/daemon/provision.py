"""One provision as a child process (`torchenv auto --json`): its command line, run, and verdict."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from torchenv.agent.daemon.config import AgentConfig, EnvironmentSpec

MAX_OUTPUT = 1 << 20  # bytes of the child's stdout (the JSON summary) kept
STDERR_TAIL = 4000
SELF = (sys.executable, "-m", "torchenv.agent")  # the provisioner when none is given


@dataclass(frozen=True)
class Outcome:
    """How a provision ended: what it installed, the error to report, or that it was stopped."""

    ok: bool
    interrupted: bool = False
    backend: str | None = None
    torch: str | None = None
    python: str | None = None
    message: str | None = None
    hint: str | None = None
    kind: str = "provision"
    exit_code: int | None = None


def provision_argv(
    provisioner: Sequence[str], prefix: Path, requirements: Sequence[str], extra: Sequence[str]
) -> list[str]:
    """`PROVISIONER auto REQS --prefix DIR --json EXTRA` (an empty provisioner: SELF)."""
    return [
        *(provisioner or SELF),
        "auto",
        *requirements,
        "--prefix",
        str(prefix),
        "--json",
        *extra,
    ]


def child_argv(config: AgentConfig, spec: EnvironmentSpec) -> list[str]:
    """`torchenv auto REQS --prefix DIR --json [--replay DIR]` through the provisioner."""
    replay = ["--replay", str(config.host_replay)] if config.host_replay is not None else []
    return provision_argv(
        config.provisioner, spec.prefix, spec.requirements, [*replay, *config.auto_args]
    )


def child_env(
    config: AgentConfig, spec: EnvironmentSpec, base: Mapping[str, str]
) -> dict[str, str]:
    """The agent's environment plus this environment's channel, backend and lock source as
    settings."""
    env = {
        k: v
        for k, v in base.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS")
    }
    env.update(config.extra_env)
    env["TORCHENV_CHANNEL"] = spec.channel
    from torchenv.agent.base.settings import BY_KEY

    for name in BY_KEY["backend"].env_vars:  # UV_TORCH_BACKEND too: the spec decides
        env.pop(name, None)
    if spec.backend != "auto":
        env["TORCHENV_BACKEND"] = spec.backend
    if spec.lock_source is not None:
        env["TORCHENV_LOCK_SOURCE"] = spec.lock_source
    if spec.lock_source_missing is not None:
        env["TORCHENV_LOCK_SOURCE_MISSING"] = spec.lock_source_missing
    return env


def _pick(summary: Mapping[str, Any], *paths: tuple[str, ...]) -> str | None:
    for path in paths:
        value: Any = summary
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    return None


def parse_summary(stdout: bytes) -> dict[str, Any] | None:
    """The JSON object the child printed last (None when it printed none)."""
    text = stdout.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        start = text.rfind("\n{")
        try:
            value = json.loads(text[start + 1 :]) if start >= 0 else None
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def judge(returncode: int, stdout: bytes, stderr: bytes, *, interrupted: bool) -> Outcome:
    """The verdict on a finished child (pure)."""
    if interrupted:
        return Outcome(
            ok=False,
            interrupted=True,
            message="stopped while provisioning; the previous environment was kept",
            exit_code=returncode,
        )
    summary = parse_summary(stdout) or {}
    backend = _pick(
        summary,
        ("backend",),
        ("selection", "backend"),
        ("lock", "backend"),
        ("decision", "backend"),
    )
    torch = _pick(
        summary,
        ("torch",),
        ("torch_version",),
        ("verify", "torch"),
        ("verify", "torch_version"),
        ("lock", "torch"),
    )
    python = _pick(summary, ("python",), ("interpreter",), ("verify", "python"))
    if returncode == 0 and summary.get("ok", True) is not False:
        return Outcome(ok=True, backend=backend, torch=torch, python=python, exit_code=0)
    tail = stderr.decode("utf-8", "replace").strip()[-STDERR_TAIL:]
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else ""
        message = f"the provision was killed by signal {-returncode} {name}".rstrip()
    else:
        message = (
            _pick(summary, ("message",), ("error", "message"))
            or (tail.splitlines()[-1] if tail else None)
            or f"the provision exited with {returncode}"
        )
    return Outcome(
        ok=False,
        backend=backend,
        torch=torch,
        message=message,
        hint=_pick(summary, ("hint",), ("error", "hint")),
        kind=_pick(summary, ("error",), ("kind",)) or "provision",
        exit_code=returncode,
    )


class Provision:
    """A running child; `stop()` terminates it (the atomic switch keeps the old environment)."""

    def __init__(self, argv: list[str], env: Mapping[str, str], cwd: Path) -> None:
        self.argv = argv
        self._env = dict(env)
        self._cwd = cwd
        self._process: asyncio.subprocess.Process | None = None
        self._stopped = False

    async def run(self, timeout: float) -> Outcome:
        import asyncio

        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
                limit=MAX_OUTPUT,
            )
        except OSError as exc:
            return Outcome(
                ok=False,
                message=f"cannot start {self.argv[0]}: {exc.strerror or exc}",
                hint="check the agent's provisioner setting and that torchenv is installed",
                kind="provision",
            )
        if self._stopped:  # stop() came while the child was starting
            self._process.terminate()
        try:
            stdout, stderr = await asyncio.wait_for(self._process.communicate(), timeout)
        except asyncio.TimeoutError:
            await self.stop(grace=10.0)
            return Outcome(
                ok=False,
                message=f"the provision took longer than {timeout:g} s and was stopped",
                hint="raise provision-timeout in the agent's "
                "configuration, or check the index's reachability",
                kind="timeout",
                exit_code=self._process.returncode,
            )
        return judge(
            self._process.returncode or 0, stdout[-MAX_OUTPUT:], stderr, interrupted=self._stopped
        )

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        import asyncio

        self._stopped = True
        process = self._process
        if process is None or process.returncode is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except asyncio.TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """The child leads its own session: signal it and whatever it started (uv, pip)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
