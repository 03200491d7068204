"""The stamp `agent/cli/fastpath.py` checks, written after a full `auto` whose no-op check passes.

`begin` (before the settings are read) deletes the old stamp, notes the settings files' stat
and watches the live probe (`Watched`: every file, listing, existence test, command and fact it
asks for). `Pending.finish` writes the new stamp only when all of this holds: the probe was
live and asked only for facts the stamp can stand for (the interpreter, uname, glibc, NVML
through its driver files; memory, disk and CPU details decide no build), the settings files
and probe inputs are still what the run saw, no lock source is set, and the full no-op check
(`pipeline.unchanged`, the stat manifest) passes now; the environment's part of the stamp is
`integrity.tree_facts`, taken just before that check, none of its mtimes under 2 s old
(`stamps.racy`). Any doubt: no stamp.
"""

from __future__ import annotations

import dataclasses
import marshal
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from torchenv.agent.cli import fastpath, stamps
from torchenv.agent.cli.outcome import json_text

if TYPE_CHECKING:
    from torchenv.agent.base.settings import Settings
    from torchenv.agent.env.integrity import Dirs, Sentinels
    from torchenv.agent.pipeline.core import AutoResult
    from torchenv.probes.hostio import CommandResult, HostIO, Json

# Facts the stamp stands for: (re)computed cheaply (interpreter, uname, libc) or proxied by
# the NVIDIA driver's files; the rest feed no target fact (HostReport.target_facts).
FACTS = frozenset({"python", "platform", "libc", "nvml", "memory", "disk", "boot_time",
                   "cpu_count", "cpuinfo"})  # fmt: skip
COMMANDS = frozenset({"nvidia-smi", "modinfo"})  # answers the NVIDIA proxies stand for
# Read by the probe, deciding no target fact. The boot id keys py-cpuinfo's cache (CPU details
# decide no build), and what a reboot may change is an input itself (uname, the driver's
# version files, the PCI devices, /dev): no read of it (at times milliseconds) on the fast path.
VOLATILE_FILES = frozenset({"/proc/cpuinfo", "/proc/meminfo", "/proc/uptime", "/proc/stat",
                            "/proc/sys/kernel/random/boot_id"})  # fmt: skip
NVIDIA_FILES = (("text", "/proc/driver/nvidia/version"), ("list", "/proc/driver/nvidia/gpus"),
                ("text", "/sys/module/nvidia/version"), ("stat", "/etc/ld.so.cache"),
                ("list", "/dev"), ("list", "/sys/bus/pci/devices"))  # fmt: skip
PCI = "/sys/bus/pci/devices"
# cli modules on select's two ways in (plain and typer's); a kept answer rests on their stat
SELECT_CLI = ("entry", "plainargs", "select_plain", "select_run", "select", "hostflags",
              "outcome")  # fmt: skip
# and on lock's and auto's (their stamps name lock_run and env_run, which `begin` them)
LOCK_CLI = ("entry", "plainargs", "lock_plain", "lock", "hostflags", "outcome", "reqfiles")
AUTO_CLI = ("entry", "plainargs", "auto_plain", "env", "hostflags", "outcome", "lock_run")
Inputs = Sequence[tuple[str, str]]  # (observe's kind, path) for each input a stamp names
Stamp = dict[str, Any]


class Watched:
    """A HostIO that notes what the probe asked for (see the module docstring)."""

    live = True

    def __init__(self, inner: HostIO, root: str = "/") -> None:
        self._inner = inner
        import threading  # here: a select with no live probe does without it

        self._root = root  # LiveIO's root (a test's fake tree): the paths noted are real ones
        self._lock = threading.Lock()
        self.inputs: dict[tuple[str, str], Any] = {}
        self.commands: set[str] = set()
        self.facts: set[str] = set()

    def _p(self, path: str) -> str:
        return os.path.join(self._root, path.lstrip("/"))

    def _note(self, kind: str, path: str) -> None:
        if path not in VOLATILE_FILES:
            real = path if kind == "which" else self._p(path)
            value = fastpath.observe(kind, real)
            with self._lock:
                self.inputs.setdefault((kind, real), value)

    def read_text(self, path: str) -> str:
        try:
            return self._inner.read_text(path)
        finally:
            self._note("text", path)

    def list_dir(self, path: str) -> list[str]:
        try:
            return self._inner.list_dir(path)
        finally:
            self._note("list", path)

    def exists(self, path: str) -> bool:
        try:
            return self._inner.exists(path)
        finally:
            self._note("exists", path)

    def run(self, argv: Sequence[str], timeout: float = 5.0) -> CommandResult:
        with self._lock:
            self.commands.add(argv[0])
        self._note("which", argv[0])
        return self._inner.run(argv, timeout)

    def getenv(self, name: str) -> str | None:
        return self._inner.getenv(name)  # the whole environment is in the stamp

    def fact(self, name: str, compute: Callable[[], Json]) -> Json:
        with self._lock:
            self.facts.add(name)
        return self._inner.fact(name, compute)

    def stands_for_probe(self) -> bool:
        return (
            self.facts <= FACTS
            and {os.path.basename(c) for c in self.commands} <= COMMANDS
            and (fastpath.libc() is not None or "libc" not in self.facts)
        )

    def probe_inputs(self) -> dict[tuple[str, str], Any]:
        """What the probe read, with the NVIDIA driver's files when NVML or its tools answered."""
        inputs = dict(self.inputs)
        if "nvml" in self.facts or self.commands:
            for kind, path in NVIDIA_FILES:
                inputs.setdefault((kind, self._p(path)), fastpath.observe(kind, self._p(path)))
            for name in _names(inputs.get(("list", self._p(PCI)))):
                for leaf in ("vendor", "device", "class"):
                    key = ("text", self._p(f"{PCI}/{name}/{leaf}"))
                    inputs.setdefault(key, fastpath.observe(*key))
            for name in _names(inputs.get(("list", self._p("/dev")))):
                if name.startswith(("nvidia", "dxg")):
                    key = ("stat", self._p(f"/dev/{name}"))
                    inputs.setdefault(key, fastpath.observe(*key))
        return inputs


def _names(listing: object) -> list[str]:
    return [n for n in listing if isinstance(n, str)] if isinstance(listing, list) else []


def _settings_files(cwd: Path) -> list[tuple[str, str]]:
    from torchenv.agent.base.indexconfig import pip_config_files
    from torchenv.agent.base.settings import SYSTEM_CONFIG, _user_config_path

    env = os.environ
    files = [str(d / "pyproject.toml") for d in (cwd, *cwd.parents)]
    files.append(env.get("TORCHENV_USER_CONFIG") or str(_user_config_path()))
    files.append(env.get("TORCHENV_SYSTEM_CONFIG", SYSTEM_CONFIG))
    files += [str(p) for p in pip_config_files(env)]
    return [("stat", f) for f in files]


@dataclasses.dataclass
class Pending:
    """One armed `auto` run: what it saw before its work, and its probe's watcher."""

    argv: list[str]
    cwd: str
    path: str
    before: dict[tuple[str, str], Any]
    watched: list[Watched]
    code: list[str]  # the calling command's module: its stat is an input too

    def finish(
        self,
        result: AutoResult,
        *,
        settings: Settings,
        requirements: Sequence[str],
        lock: Path | None,
        live: bool,
        as_json: bool,
        render: Callable[[AutoResult], str],
    ) -> bool:
        """Write the stamp when the next identical run may answer without the full path;
        `render` is the command's text answer (JSON is rendered here)."""
        return self._write(
            lambda: self._stamp(result, settings, requirements, lock, live, as_json, render)
        )

    def _stamp(  # noqa: PLR0917 - finish's arguments, passed on
        self,
        result: AutoResult,
        settings: Settings,
        requirements: Sequence[str],
        lock: Path | None,
        live: bool,
        as_json: bool,
        render: Callable[[AutoResult], str],
    ) -> dict[str, Any] | None:
        if not live or len(self.watched) != 1 or settings.get_value("lock-source"):
            return None
        inputs = self._held_inputs()
        if inputs is None:
            return None
        noop = _noop_answer(result, settings, requirements, lock, Path(self.cwd))
        if noop is None:
            return None
        answer, env_dir, (dirs, sentinels), extra = noop
        if stamps.racy(dirs, sentinels):
            return None  # the next run takes the full path and stamps then
        spelled, spec = ("987654.3125", ".4f") if as_json else ("987654.31", ".2f")
        return {
            **self._common(inputs, extra), "env_dir": env_dir, "dirs": dirs, "sentinels": sentinels,
            "answer": json_text(answer.to_json()) if as_json else render(answer),
            "spelled": spelled, "format_spec": spec,
        }  # fmt: skip

    def _held_inputs(self) -> dict[tuple[str, str], Any] | None:
        """What the run saw before its work and the live probe read, when the probe stands
        for its inputs and none of them changed while the run worked; else None."""
        if len(self.watched) > 1 or not all(w.stands_for_probe() for w in self.watched):
            return None
        inputs = dict(self.before)
        for watched in self.watched:  # none when the flags describe the whole target
            inputs.update(watched.probe_inputs())
        if os.getcwd() != self.cwd or any(
            fastpath.observe(k, p) != v for (k, p), v in inputs.items()
        ):
            return None
        return inputs

    def _common(self, inputs: dict[tuple[str, str], Any], extra: Inputs) -> dict[str, Any]:
        """The stamp's fields every command shares, `extra` and the calling module observed
        now beside `inputs`."""
        for kind, path in [*extra, *(("stat", f) for f in self.code)]:
            inputs[(kind, path)] = fastpath.observe(kind, path)
        if any(isinstance(v, tuple) and v[:1] == (fastpath.UNKEPT,) for v in inputs.values()):
            raise ValueError("an input no stamp may rest on")  # finish*: keep nothing
        return {
            "format": fastpath.FORMAT, "argv": self.argv, "cwd": self.cwd,
            "python": fastpath.interpreter(), "uname": fastpath.uname(), "libc": fastpath.libc(),
            "env": fastpath.ENV,
            "inputs": [(k, p, v) for (k, p), v in sorted(inputs.items())],
        }  # fmt: skip

    def finish_select(
        self, answer: str, *, settings: Settings, host_given: bool, offline: bool
    ) -> bool:
        """Keep select's answer while every input holds and its index pages are young."""
        import time

        from torchenv.agent.base.options import IndexConfig
        from torchenv.agent.pipeline import select_with_index as selection

        max_age = IndexConfig.from_settings(settings).page_max_age
        reads = list(selection.reads)
        if host_given or offline or max_age <= 0 or any(at is None for _, at in reads):
            return self.finish_kept(None)  # a recorded host, or pages unread or old
        extra = [*selection.catalog_inputs(settings.get_value("cache-dir")),
                 *(("stat", f) for f in _own_files(select=True))]  # fmt: skip
        expires = min((at for _, at in reads if at is not None), default=time.time()) + max_age
        return self.finish_kept(answer, extra=extra, expires=expires)

    def hold(self, inputs: Inputs) -> None:
        """Note `inputs` as they are now: a stamp is written only while they still are."""
        for key in inputs:
            self.before.setdefault(key, fastpath.observe(*key))

    def finish_kept(
        self, answer: str | None, *, extra: Inputs = (), expires: float | None = None
    ) -> bool:
        """Keep a command's answer (None: keep nothing) until `expires` while the settings
        files, the live probe's inputs, `extra` and the calling module hold."""

        def stamp() -> Stamp | None:
            inputs = None if answer is None else self._held_inputs()
            if inputs is None:
                return None
            return {**self._common(inputs, extra), "expires": expires, "answer": answer}

        return self._write(stamp)

    def _write(self, make: Callable[[], Stamp | None]) -> bool:
        """Stop watching the probe, then write the stamp `make` gives (None, or any doubt
        while making or writing it: keep nothing)."""
        from torchenv.agent.host import source as hostmod

        hostmod.live_io_watch = None
        try:
            stamp = make()
            if stamp is None:
                return False
            stamps.write(self.path, marshal.dumps(stamp))
        except (OSError, ValueError, TypeError):
            return False
        return True


def begin(caller: str) -> Pending | None:
    """Arm this run (console-script `auto` or `select` only): drop the old stamp, note the
    settings files, watch the live probe."""
    if not fastpath.ARMED:
        return None
    from torchenv.agent.host import source as hostmod

    cwd = os.getcwd()
    path = fastpath.stamp_path(os.environ, fastpath.ARGV, cwd)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        return None  # a stamp that cannot be removed must not be trusted later
    before = {key: fastpath.observe(*key) for key in _settings_files(Path(cwd))}
    watched: list[Watched] = []

    def watch(io: HostIO) -> HostIO:
        watched.append(Watched(io))
        return watched[-1]

    hostmod.live_io_watch = watch
    return Pending(list(fastpath.ARGV), cwd, path, before, watched, [caller])


def _noop_answer(
    result: AutoResult,
    settings: Settings,
    requirements: Sequence[str],
    lock: Path | None,
    cwd: Path,
) -> tuple[AutoResult, str, tuple[Dirs, Sentinels], list[tuple[str, str]]] | None:
    """The answer the full no-op path would give now, or None when it would not be a no-op."""
    from torchenv.agent.base.options import Place
    from torchenv.agent.env import integrity, venv
    from torchenv.agent.pipeline import core as pipeline
    from torchenv.agent.pipeline import decisions
    from torchenv.agent.pipeline.stages import locate

    where = locate(requirements, Place.from_settings(settings), cwd=cwd, lock_path=lock)
    layout = venv.Layout.for_prefix(where.prefix)
    raw = where.lock_path.read_bytes()
    active = venv.active_env(layout)
    if active is None or active != result.env_id:
        return None
    env_dir = layout.env_dir(active)
    values = {k: settings.get_value(k) for k in decisions.REQUEST_KEYS}
    if not decisions.unchanged(
        venv.read_state(layout),
        active=active,
        fingerprint=result.fingerprint,
        request=decisions.request_key(where.requirements, values),
        lock_sha256=fastpath.sha256_hex(raw),
        site=integrity.site_stamp(env_dir),
    ):
        return None
    manifest = env_dir / integrity.MANIFEST
    tree = integrity.tree_facts(env_dir)  # before the check: a later change shows in a directory
    if integrity.quick_check(env_dir) != []:
        return None
    site = integrity.site_packages(env_dir)
    extra = [("stat", str(where.lock_path)), ("lstat", str(layout.prefix)),
             ("link", str(layout.prefix)), ("stat", str(layout.home)), ("stat", str(layout.envs)),
             ("stat", str(layout.state_file)), ("stat", str(manifest)),
             ("stat", str(site) if site else str(env_dir)), ("stat", sys.executable),
             *(("stat", f) for f in _own_files())]  # fmt: skip
    host = _Facts(result.fingerprint, dict(result.host))
    answer = pipeline._noop(
        where=where, host=cast("Any", host), raw=raw, active=active,
        timings={"check": fastpath.SENTINEL}, started=0.0,
    )  # fmt: skip
    answer = dataclasses.replace(answer, seconds=fastpath.SENTINEL)
    return answer, str(env_dir), tree, extra


@dataclasses.dataclass(frozen=True)
class _Facts:
    """The two things `pipeline._noop` asks of a host."""

    print_: str
    facts: dict[str, Any]

    def fingerprint(self) -> str:
        return self.print_

    def target_facts(self) -> dict[str, Any]:
        return self.facts


def _own_files(select: bool = False) -> list[str]:
    """torchenv's files whose code decides the answer: a reinstall changes their stat."""
    from torchenv.agent.base import settings

    mods: list[Any] = [fastpath, sys.modules[__name__], settings]
    if not select:
        from torchenv.agent.env import integrity, venv
        from torchenv.agent.pipeline import core, decisions, stages

        return [*(m.__file__ or "" for m in (*mods, integrity, core, decisions, stages, venv)),
                *cli_files(AUTO_CLI)]  # fmt: skip
    from torchenv.agent.pipeline import select_with_index as selection
    from torchenv.backends.select import core as select_core

    return [*(m.__file__ or "" for m in (*mods, selection, select_core)), *cli_files(SELECT_CLI)]


def cli_files(names: Sequence[str]) -> list[str]:
    """The files of the cli modules NAMES, imported or not (both ways in: plain and typer's)."""
    return [os.path.join(os.path.dirname(__file__), f"{name}.py") for name in names]
