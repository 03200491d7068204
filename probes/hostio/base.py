"""What a probe may ask of a host (HostIO), the answers' types, and the everyday helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Json = Any


@dataclass(frozen=True)
class CommandResult:
    """A command's run: its exit code and output, or why it could not run."""

    argv: tuple[str, ...]
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None  # "not-found", "timeout", "permission", or another OSError text

    @property
    def ok(self) -> bool:
        return self.error is None and self.returncode == 0


class FactUnavailable(Exception):
    """A fact could not be computed (live) or was not recorded (replay)."""


# Every probe reads files, lists directories, runs commands, reads environment
# variables and computes "facts" (answers of in-process libraries such as NVML or
# the interpreter itself) only through a `HostIO`. That is what makes a host
# recordable (`RecordingIO`) and reproducible anywhere (`ReplayIO`).
class HostIO(Protocol):
    """What a probe may ask of a host. Paths are absolute host paths ("/proc/...")."""

    def read_text(self, path: str) -> str:
        """The file's text; raises OSError (FileNotFoundError, PermissionError, ...)."""
        ...

    def list_dir(self, path: str) -> list[str]:
        """Sorted entry names; raises OSError."""
        ...

    def exists(self, path: str) -> bool: ...

    def run(self, argv: Sequence[str], timeout: float = 5.0) -> CommandResult: ...

    def getenv(self, name: str) -> str | None: ...

    def fact(self, name: str, compute: Callable[[], Json]) -> Json:
        """`compute()` live; the recorded value on replay. Raises FactUnavailable."""
        ...

    @property
    def live(self) -> bool:
        """True when the answers come from the running machine."""
        ...


def read_optional(io: HostIO, path: str) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason): the everyday way for a probe to read a file."""
    try:
        return io.read_text(path), None
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"{path}: {type(exc).__name__}: {exc.strerror or exc}"
    except UnicodeDecodeError:
        return None, f"{path}: not text"


def list_optional(io: HostIO, path: str) -> tuple[list[str], str | None]:
    """(names, None), ([], None) when missing, or ([], reason): `read_optional` for a directory."""
    try:
        return io.list_dir(path), None
    except FileNotFoundError:
        return [], None
    except OSError as exc:
        return [], f"{path}: {type(exc).__name__}: {exc.strerror or exc}"


class OverlayEnvIO:
    """Another HostIO with some environment variables replaced (e.g. overrides on a replay)."""

    def __init__(self, inner: HostIO, env: Mapping[str, str | None]) -> None:
        self._inner = inner
        self._env = dict(env)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def live(self) -> bool:
        return self._inner.live

    def read_text(self, path: str) -> str:
        return self._inner.read_text(path)

    def list_dir(self, path: str) -> list[str]:
        return self._inner.list_dir(path)

    def exists(self, path: str) -> bool:
        return self._inner.exists(path)

    def run(self, argv: Sequence[str], timeout: float = 5.0) -> CommandResult:
        return self._inner.run(argv, timeout)

    def getenv(self, name: str) -> str | None:
        if name in self._env:
            return self._env[name]
        return self._inner.getenv(name)

    def fact(self, name: str, compute: Callable[[], Json]) -> Json:
        return self._inner.fact(name, compute)
