"""The agent's desired state and settings, read from one TOML file into frozen data."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchenv.agent.base.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/torchenv/config.toml")
DEFAULT_STATE_DIR = "/var/lib/torchenv"
DEFAULT_RUNTIME_DIR = "/run/torchenv"
DRIVER_VERSION_FILE = "/sys/module/nvidia/version"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

AGENT_KEYS = {
    "socket",
    "socket-group",
    "interval",
    "watch-interval",
    "state-dir",
    "host-replay",
    "textfile",
    "nfd-feature-file",
    "nfd-expiry",
    "provisioner",
    "provision-timeout",
    "backoff-initial",
    "backoff-max",
    "stop-timeout",
    "driver-version-file",
    "auto-args",
    "integrity-interval",
}
ENV_KEYS = {
    "name",
    "requirements",
    "prefix",
    "channel",
    "backend",
    "lock-source",
    "lock-source-missing",
}


@dataclass(frozen=True)
class EnvironmentSpec:
    """One named environment the agent keeps right."""

    name: str
    prefix: Path
    requirements: tuple[str, ...] = ("torch",)
    channel: str = "stable"
    backend: str = "auto"
    lock_source: str | None = None  # this environment's lock-source (docs/fleet.md)
    lock_source_missing: str | None = None  # "resolve" or "fail"

    def digest(self) -> str:
        """A short hash of what was asked for: a change means the environment must be rebuilt."""
        asked: list[Any] = [
            self.name, str(self.prefix), list(self.requirements), self.channel, self.backend
        ]  # fmt: skip
        if self.lock_source is not None or self.lock_source_missing is not None:
            asked += [self.lock_source, self.lock_source_missing]  # (older digests unchanged)
        return hashlib.sha256(json.dumps(asked).encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prefix": str(self.prefix),
            "requirements": list(self.requirements),
            "channel": self.channel,
            "backend": self.backend,
            "lock_source": self.lock_source,
            "lock_source_missing": self.lock_source_missing,
        }


@dataclass(frozen=True)
class AgentConfig:
    """The agent's whole configuration: the environments it keeps and its own settings."""

    environments: tuple[EnvironmentSpec, ...]
    socket: Path
    state_dir: Path
    socket_group: str | None = None
    interval: float = 300.0
    watch_interval: float = 2.0
    host_replay: Path | None = None
    textfile: Path | None = None
    nfd_feature_file: Path | None = None
    nfd_expiry: float = 600.0  # NFD drops the labels this long after the agent's last write
    provisioner: tuple[str, ...] = ()  # empty: this interpreter's `python -m torchenv.agent`
    auto_args: tuple[str, ...] = ()  # added to every `auto` (e.g. --python X.Y with a replay)
    provision_timeout: float = 3600.0
    backoff_initial: float = 30.0
    backoff_max: float = 3600.0
    stop_timeout: float = 20.0
    integrity_interval: float = 21600.0  # seconds between hashing each environment's files
    driver_version_file: str = DRIVER_VERSION_FILE
    source: Path | None = None  # the file this came from
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def host_root(self) -> Path:
        """Where the host's files are read: `/`, or the recorded host's `root/`."""
        return self.host_replay / "root" if self.host_replay is not None else Path("/")


def _first_dir(variable: str, env: Mapping[str, str], fallback: str) -> Path:
    value = env.get(variable, "")
    return Path(value.split(":")[0] if value else fallback)


def default_socket(env: Mapping[str, str]) -> Path:
    """$RUNTIME_DIRECTORY/agent.sock (systemd's RuntimeDirectory=), else /run/torchenv's."""
    return _first_dir("RUNTIME_DIRECTORY", env, DEFAULT_RUNTIME_DIR) / "agent.sock"


def _number(table: Mapping[str, Any], key: str, default: float, where: str) -> float:
    raw = table.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0:
        raise ConfigError(
            f"{key} = {raw!r} in {where} is not a positive number of seconds",
            hint=f"set {key} to a number such as {default:g}",
        )
    return float(raw)


def _path(table: Mapping[str, Any], key: str, where: str) -> Path | None:
    raw = table.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{key} in {where} must be a path", hint=f'write {key} = "/some/path"')
    return Path(raw)


def _environment(raw: Any, index: int, where: str) -> EnvironmentSpec:
    if not isinstance(raw, dict):
        raise ConfigError(
            f"[[environment]] #{index + 1} in {where} is not a table",
            hint="write each environment as an [[environment]] table",
        )
    unknown = sorted(set(raw) - ENV_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in [[environment]] #{index + 1} of {where}",
            hint=f"known keys: {', '.join(sorted(ENV_KEYS))}",
        )
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"[[environment]] #{index + 1} in {where} has no valid name",
            hint='give it name = "default" (letters, digits, - _ .)',
        )
    prefix = raw.get("prefix")
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise ConfigError(
            f"environment {name!r} in {where} needs an absolute prefix",
            hint='set prefix = "/opt/torchenv/NAME"',
        )
    requirements = raw.get("requirements", ["torch"])
    if isinstance(requirements, str):
        requirements = [requirements]
    if not isinstance(requirements, list) or not all(
        isinstance(r, str) and r.strip() for r in requirements
    ):
        raise ConfigError(
            f"requirements of environment {name!r} in {where} must be strings",
            hint='write requirements = ["torch", "torchvision"]',
        )
    from torchenv.backends.vocabulary import CHANNELS

    channel = raw.get("channel", "stable")
    if channel not in CHANNELS:
        raise ConfigError(
            f"channel {channel!r} of environment {name!r} in {where} is unknown",
            hint=f"use one of {', '.join(CHANNELS)}",
        )
    backend = raw.get("backend", "auto")
    if not isinstance(backend, str) or not backend:
        raise ConfigError(
            f"backend of environment {name!r} in {where} must be a string",
            hint='write backend = "auto" or e.g. "cu130"',
        )
    source, missing = _lock_source(raw, name, where)
    return EnvironmentSpec(
        name=name,
        prefix=Path(prefix),
        requirements=tuple(requirements),
        channel=channel,
        backend=backend,
        lock_source=source,
        lock_source_missing=missing,
    )


def _lock_source(raw: Mapping[str, Any], name: str, where: str) -> tuple[str | None, str | None]:
    """An environment's own lock-source and lock-source-missing (None: the global settings)."""
    from torchenv.agent.base.locksetting import parse_source

    source, missing = raw.get("lock-source"), raw.get("lock-source-missing")
    problem = None
    if source is not None and not isinstance(source, str):
        problem = f"lock-source of environment {name!r} in {where} must be a string"
    elif source is not None:
        try:
            parse_source(source)
        except ValueError as exc:
            problem = f"lock-source {source!r} of environment {name!r} in {where}: {exc}"
    if problem is None and missing not in (None, "resolve", "fail"):
        problem = f"lock-source-missing {missing!r} of environment {name!r} in {where} is unknown"
    if problem is not None:
        raise ConfigError(
            problem,
            hint='write lock-source = "https://host/locks/" (or a directory) and '
            'lock-source-missing = "resolve" or "fail" (docs/fleet.md)',
        )
    return (source.strip() if isinstance(source, str) else None), missing


def _check_label_names(environments: tuple[EnvironmentSpec, ...], where: str) -> None:
    """Every environment gets NFD label names of its own (long names are shortened)."""
    from torchenv.agent.daemon.metrics import env_segment

    seen: dict[str, str] = {}
    for spec in environments:
        segment = env_segment(spec.name)
        if segment in seen:
            raise ConfigError(
                f"environments {seen[segment]!r} and {spec.name!r} in {where} would share the "
                f"node labels torchenv.io/{segment}.*",
                hint="rename one of them (names longer than 55 characters are shortened)",
            )
        seen[segment] = spec.name


def parse_config(
    data: Mapping[str, Any], *, where: str, env: Mapping[str, str] | None = None
) -> AgentConfig:
    """The agent's configuration from a parsed TOML document (pure apart from `env`)."""
    env = os.environ if env is None else env
    table = data.get("agent", {})
    if not isinstance(table, dict):
        raise ConfigError(f"[agent] in {where} is not a table", hint="write it as [agent]")
    unknown = sorted(set(table) - AGENT_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in [agent] of {where}",
            hint=f"known keys: {', '.join(sorted(AGENT_KEYS))}",
        )
    raw_envs = data.get("environment", [])
    if not isinstance(raw_envs, list) or not raw_envs:
        raise ConfigError(
            f"{where} names no [[environment]]",
            hint='add one: [[environment]] name = "default" prefix = "/opt/'
            'torchenv/default" requirements = ["torch"]',
        )
    environments = tuple(_environment(raw, i, where) for i, raw in enumerate(raw_envs))
    names = [e.name for e in environments]
    prefixes = [e.prefix for e in environments]
    if len(set(names)) != len(names) or len(set(prefixes)) != len(prefixes):
        raise ConfigError(
            f"two environments in {where} share a name or a prefix",
            hint="give each [[environment]] its own name and prefix",
        )
    _check_label_names(environments, where)
    state_dir = _path(table, "state-dir", where) or _first_dir(
        "STATE_DIRECTORY", env, DEFAULT_STATE_DIR
    )
    socket = _path(table, "socket", where) or default_socket(env)
    group = table.get("socket-group")
    if group is not None and not (isinstance(group, (str, int)) and str(group)):
        raise ConfigError(
            f"socket-group in {where} must be a group name or id",
            hint='write socket-group = "torchenv"',
        )
    provisioner = table.get("provisioner", [])
    if isinstance(provisioner, str):
        provisioner = [provisioner]
    if not isinstance(provisioner, list) or not all(isinstance(p, str) for p in provisioner):
        raise ConfigError(
            f"provisioner in {where} must be a command (a list of strings)",
            hint="remove it to use torchenv itself",
        )
    auto_args = table.get("auto-args", [])
    if not isinstance(auto_args, list) or not all(isinstance(a, str) for a in auto_args):
        raise ConfigError(
            f"auto-args in {where} must be a list of strings",
            hint='write auto-args = ["--python", "3.12"]',
        )
    driver_file = table.get("driver-version-file", DRIVER_VERSION_FILE)
    if not isinstance(driver_file, str):
        raise ConfigError(
            f"driver-version-file in {where} must be a path",
            hint=f"remove it to watch {DRIVER_VERSION_FILE}",
        )
    backoff_initial = _number(table, "backoff-initial", 30.0, where)
    return AgentConfig(
        environments=environments,
        socket=socket,
        state_dir=state_dir,
        socket_group=None if group is None else str(group),
        interval=_number(table, "interval", 300.0, where),
        watch_interval=_number(table, "watch-interval", 2.0, where),
        host_replay=_path(table, "host-replay", where),
        textfile=_path(table, "textfile", where),
        nfd_feature_file=_path(table, "nfd-feature-file", where),
        nfd_expiry=_number(table, "nfd-expiry", 600.0, where),
        provisioner=tuple(provisioner),
        auto_args=tuple(auto_args),
        provision_timeout=_number(table, "provision-timeout", 3600.0, where),
        backoff_initial=backoff_initial,
        backoff_max=max(backoff_initial, _number(table, "backoff-max", 3600.0, where)),
        stop_timeout=_number(table, "stop-timeout", 20.0, where),
        integrity_interval=_number(table, "integrity-interval", 21600.0, where),
        driver_version_file=driver_file,
    )


def load_config(path: Path | None, *, env: Mapping[str, str] | None = None) -> AgentConfig:
    """Read `path` (default /etc/torchenv/config.toml). Raises ConfigError."""
    from dataclasses import replace

    from torchenv.agent.base.settings import read_toml

    env = os.environ if env is None else env
    path = path or Path(env.get("TORCHENV_SYSTEM_CONFIG", str(SYSTEM_CONFIG)))
    if not path.is_file():
        raise ConfigError(
            f"no agent configuration at {path}",
            hint="write one with an [[environment]] table (see docs/docker.md), "
            "or pass --config FILE",
        )
    config = parse_config(read_toml(path), where=str(path), env=env)
    # The child `torchenv auto` reads its index settings from the same file.
    return replace(
        config, source=path.resolve(), extra_env={"TORCHENV_SYSTEM_CONFIG": str(path.resolve())}
    )
