"""What every resolver backend takes and gives: requirements for one target in, pins out."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from torchenv.agent.base.errors import (
    EnvironmentBuildError,
    IndexError_,
    ResolutionError,
    TorchenvError,
)
from torchenv.agent.lock.resolvers.target import Target

if TYPE_CHECKING:
    from torchenv.agent.index.client import IndexClient

# Variables that would add indexes, find-links or config files behind torchenv's back.
_TOOL_PREFIXES = ("UV_", "PIP_")
_KEEP = frozenset({"UV_CACHE_DIR", "PIP_CACHE_DIR"})
_LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class ResolveRequest:
    """Requirements (PEP 508) to resolve for exactly `target` against exactly `index_url`.

    The torch family arrives as direct references (`torch @ file:///…/torch-….whl`) to
    metadata-only stand-in wheels, so the resolver can take it from nowhere else.
    """

    requirements: tuple[str, ...]
    target: Target
    index_url: str
    workdir: Path
    cache_dir: Path | None = None
    timeout: float = 600.0
    # torchenv's index client: pip reads every wheel's metadata through it (metaproxy)
    client: IndexClient | None = None


@dataclass(frozen=True)
class WheelRef:
    """The wheel a resolver chose for a pin, as the index listed it (when it says)."""

    filename: str
    url: str
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class Pin:
    """One resolved package: name, version, direct URL (stand-ins), dependencies, wheel."""

    name: str  # normalised
    version: str
    direct_url: str | None = None  # set for direct references (the stand-ins)
    dependencies: tuple[str, ...] = ()
    wheel: WheelRef | None = None


@dataclass(frozen=True)
class Resolution:
    """What a resolver gave: its name and the pins."""

    resolver: str
    pins: tuple[Pin, ...]

    def versions(self) -> dict[str, str]:
        return {p.name: p.version for p in self.pins}


@dataclass(frozen=True)
class Completed:
    """A finished resolver process (what a Runner returns): its argv, exit code and output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], Mapping[str, str], Path, float], Completed]


class Resolver(Protocol):
    name: str

    def unavailable(self) -> str | None:
        """Why this backend cannot run here, or None when it can."""

    def prepare(self, cache_dir: Path | None) -> None:
        """Start, in the background, what `resolve` will wait on anyway (called while the
        lock still reads the index); nothing to do is fine."""

    def start(self, request: ResolveRequest) -> None:
        """Start the lock's first resolve for this target and index now, its requirements
        (not those of `request`) to come when resolve() is called; nothing to do is fine."""

    def resolve(self, request: ResolveRequest) -> Resolution: ...

    def close(self) -> None:
        """End what start() began and no resolve() used."""


def run_process(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float
) -> Completed:
    """The default Runner: a subprocess with captured text output."""
    try:
        done = subprocess.run(
            list(argv),
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise _too_slow(argv, timeout) from exc
    except OSError as exc:
        raise ResolutionError(
            f"cannot run {argv[0]}: {exc.strerror or exc}",
            hint="reinstall torchenv with its `uv` extra, or pass --resolver pip",
        ) from exc
    return Completed(tuple(argv), done.returncode, done.stdout, done.stderr)


def feed_process(
    process: subprocess.Popen[str], argv: Sequence[str], text: str, timeout: float
) -> Completed:
    """Run a process already started (stdin, stdout and stderr piped) to its end: `text` on its
    stdin, its output captured, as run_process does."""
    try:
        out, err = process.communicate(text, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        process.kill()
        process.communicate()
        raise _too_slow(argv, timeout) from exc
    return Completed(tuple(argv), process.returncode, out, err)


def _too_slow(argv: Sequence[str], timeout: float) -> ResolutionError:
    return ResolutionError(
        f"{Path(argv[0]).name} did not finish within {timeout:.0f} s",
        hint="check that the indexes answer (`torchenv config` shows them), then retry",
    )


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without uv/pip settings that could change the indexes;
    loopback (torchenv's own proxy) is never sent through an HTTP proxy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_TOOL_PREFIXES) or k in _KEEP}
    for name in ("NO_PROXY", "no_proxy"):
        given = [h for h in env.get(name, "").split(",") if h]
        env[name] = ",".join([*given, *(h for h in _LOOPBACK if h not in given)])
    env.update(extra or {})
    return env


DISK_FULL = ("no space left on device", "disk quota exceeded", "os error 28", "os error 122")
UNREACHABLE = ("failed to fetch", "error sending request", "request failed after")


def tool_output(text: str) -> str:
    """A tool's error output as a message keeps it: whole, but at most MAX_TOOL_OUTPUT (pure)."""
    from torchenv.agent.base.limits import MAX_TOOL_OUTPUT

    lines = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()]
    kept = "\n".join(lines)
    if len(kept) <= MAX_TOOL_OUTPUT:
        return kept
    half = MAX_TOOL_OUTPUT // 2
    return kept[:half] + "\n[… output cut …]\n" + kept[-half:]


def disk_full(text: str) -> bool:
    lowered = text.lower()
    return any(sign in lowered for sign in DISK_FULL)


def failed(tool: str, done: Completed, index_url: str | None = None) -> TorchenvError:
    """A resolver's failure, named by its real cause, with the tool's own output (pure)."""
    output = tool_output(done.stderr or done.stdout)
    details = {"argv": list(done.argv), "returncode": done.returncode, "output": output}
    if disk_full(output):
        return EnvironmentBuildError(
            f"{tool} failed: no space left on the device of its cache or work directory:\n{output}",
            hint="free disk space (or point cache-dir at a larger disk) and run again",
            details=details,
        )
    if any(sign in output.lower() for sign in UNREACHABLE):
        where = f" {index_url}" if index_url else ""
        return IndexError_(
            f"{tool} could not read the index{where}:\n{output}",
            hint="check the index URL (`torchenv config` shows index-url; set it with "
            "--index-url or TORCHENV_INDEX_URL) and this host's network",
            details={**details, "index": index_url},
        )
    return ResolutionError(
        f"{tool} could not resolve the requirements for this target:\n{output}",
        hint="relax the conflicting requirement, or choose another torch with --backend "
        "or --channel; `torchenv select --explain` shows the choices",
        details=details,
    )
