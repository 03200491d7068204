"""The one seam through which probes read a host: live, recording, or replaying a directory.

Every probe reads files, lists directories, runs commands, reads environment
variables and computes "facts" (answers of in-process libraries such as NVML or
the interpreter itself) only through a `HostIO`. That is what makes a host
recordable (`RecordingIO`) and reproducible anywhere (`ReplayIO`).

A recorded host directory holds:

    root/<absolute path>   the files as read (e.g. root/sys/module/nvidia/version)
    manifest.json          {"listings": {dir: [names]}, "errors": {path: "ErrorName: text"},
                            "missing": [paths]}  (optional for hand-made fixtures)
    commands.json          [{"argv": [...], "returncode": 0, "stdout": "...",
                             "stderr": "", "error": null | "not-found" | "timeout"}]
    env.json               {NAME: value | null} for the variables the probes asked for
    facts.json             {name: JSON value} for in-process answers (nvml, python, ...)

A hand-made fixture needs only `root/` and whichever of the JSON files it uses.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

Json = Any

MAX_RECORDED_FILE = 16 << 20  # bytes of one recorded file read back (recordings are KiB)
RECORDING_PARTS = ("root", "manifest.json", "commands.json", "env.json", "facts.json")


@dataclass(frozen=True)
class CommandResult:
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


class LiveIO:
    """The running machine. `root` prefixes every path (tests point it at a fake tree)."""

    live = True

    def __init__(
        self,
        root: str | os.PathLike[str] = "/",
        env: Mapping[str, str] | None = None,
        path: str | None = None,
    ) -> None:
        self._root = Path(root)
        self._env = os.environ if env is None else env
        self._path = path  # PATH for commands; None means the environment's

    def _p(self, path: str) -> Path:
        return self._root / path.lstrip("/")

    def read_text(self, path: str) -> str:
        with open(self._p(path), encoding="utf-8", errors="strict") as fh:
            return fh.read()

    def list_dir(self, path: str) -> list[str]:
        return sorted(os.listdir(self._p(path)))

    def exists(self, path: str) -> bool:
        return os.path.exists(self._p(path))

    def run(self, argv: Sequence[str], timeout: float = 5.0) -> CommandResult:
        search = self._path if self._path is not None else self._env.get("PATH")
        exe = shutil.which(argv[0], path=search)
        if exe is None:
            return CommandResult(tuple(argv), error="not-found")
        try:
            proc = subprocess.run(
                [exe, *argv[1:]],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return CommandResult(tuple(argv), error="timeout")
        except PermissionError:
            return CommandResult(tuple(argv), error="permission")
        except OSError as exc:
            return CommandResult(tuple(argv), error=f"{type(exc).__name__}: {exc}")
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def getenv(self, name: str) -> str | None:
        return self._env.get(name)

    def fact(self, name: str, compute: Callable[[], Json]) -> Json:
        return compute()


class RecordingIO:
    """Answers from `inner` and writes every answer into `directory` for `ReplayIO`."""

    live = True

    def __init__(self, inner: HostIO, directory: str | os.PathLike[str]) -> None:
        self._inner = inner
        self._dir = Path(directory)
        self._lock = threading.Lock()
        self._listings: dict[str, list[str]] = {}
        self._exists: set[str] = set()
        self._errors: dict[str, str] = {}
        self._missing: set[str] = set()
        self._commands: list[dict[str, Json]] = []
        self._env: dict[str, str | None] = {}
        self._facts: dict[str, Json] = {}
        (self._dir / "root").mkdir(parents=True, exist_ok=True)

    def read_text(self, path: str) -> str:
        try:
            text = self._inner.read_text(path)
        except FileNotFoundError:
            with self._lock:
                self._missing.add(path)
            raise
        except (OSError, UnicodeDecodeError) as exc:
            with self._lock:
                self._errors[path] = f"{type(exc).__name__}: {exc}"
            raise
        target = self._dir / "root" / os.path.normpath("/" + path.lstrip("/")).lstrip("/")
        with contextlib.suppress(OSError):  # a file under a recorded file's name: keep the first
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return text

    def list_dir(self, path: str) -> list[str]:
        try:
            names = self._inner.list_dir(path)
        except FileNotFoundError:
            with self._lock:
                self._missing.add(path)
            raise
        except OSError as exc:
            with self._lock:
                self._errors[path] = f"{type(exc).__name__}: {exc}"
            raise
        with self._lock:
            self._listings[path] = names
        return names

    def exists(self, path: str) -> bool:
        found = self._inner.exists(path)
        with self._lock:
            if found:
                self._exists.add(path)
                self._missing.discard(path)
            else:
                self._missing.add(path)
        return found

    def run(self, argv: Sequence[str], timeout: float = 5.0) -> CommandResult:
        result = self._inner.run(argv, timeout)
        with self._lock:
            self._commands.append(
                {
                    "argv": list(result.argv),
                    "returncode": result.returncode,
                    "stdout": result.stdout,
                    "stderr": result.stderr,
                    "error": result.error,
                }
            )
        return result

    def getenv(self, name: str) -> str | None:
        value = self._inner.getenv(name)
        with self._lock:
            self._env[name] = value
        return value

    def fact(self, name: str, compute: Callable[[], Json]) -> Json:
        try:
            value = self._inner.fact(name, compute)
        except FactUnavailable as exc:
            with self._lock:
                self._facts[name] = {"__unavailable__": str(exc)}
            raise
        with self._lock:
            self._facts[name] = value
        return value

    def save(self) -> None:
        """Write the JSON side files; call once the probes are done."""
        manifest = {
            "listings": dict(sorted(self._listings.items())),  # an empty directory too
            "exists": sorted(self._exists - self._listings.keys()),
            "errors": dict(sorted(self._errors.items())),
            "missing": sorted(self._missing),
        }
        _write_json(self._dir / "manifest.json", manifest)
        _write_json(self._dir / "commands.json", self._commands)
        _write_json(self._dir / "env.json", dict(sorted(self._env.items())))
        _write_json(self._dir / "facts.json", dict(sorted(self._facts.items())))


class ReplayIO:
    """A recorded host directory, answering exactly as the host did."""

    live = False

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._dir = Path(directory)
        if not self._dir.is_dir():
            raise FileNotFoundError(f"no recorded host at {self._dir}")
        if not any((self._dir / part).exists() for part in RECORDING_PARTS):
            raise ValueError(
                f"{self._dir} is not a recorded host: it holds none of "
                + ", ".join(RECORDING_PARTS)
            )
        self._root = self._dir / "root"
        manifest = _load_json(self._dir / "manifest.json", {})
        where = self._dir / "manifest.json"
        self._listings: dict[str, list[str]] = _shaped(
            manifest.get("listings", {}), dict, where, "listings", _strings
        )
        self._exists: set[str] = set(_shaped(manifest.get("exists", []), list, where, "exists"))
        self._errors: dict[str, str] = _shaped(manifest.get("errors", {}), dict, where, "errors")
        self._missing: set[str] = set(_shaped(manifest.get("missing", []), list, where, "missing"))
        self._commands: list[dict[str, Json]] = _commands(
            _load_json(self._dir / "commands.json", []), self._dir / "commands.json"
        )
        env = _load_json(self._dir / "env.json", {})
        self._env: dict[str, str | None] = _shaped(env, dict, self._dir / "env.json", "the file")
        self._facts: dict[str, Json] = _load_json(self._dir / "facts.json", {})

    @property
    def directory(self) -> Path:
        return self._dir

    def _p(self, path: str) -> Path:
        """The recorded copy of a host path; never a file outside the recording."""
        inner = os.path.normpath("/" + path.lstrip("/")).lstrip("/")  # `..` stops at the root
        found = self._root / inner
        base = os.path.realpath(self._root)
        if os.path.commonpath([base, os.path.realpath(found)]) != base:
            raise PermissionError(errno.EACCES, "outside the recorded host", path)
        return found

    def _raise_recorded(self, path: str) -> None:
        error = self._errors.get(path)
        if error is None:
            return
        kind, _, text = error.partition(": ")
        if kind == "PermissionError":
            raise PermissionError(13, text or "Permission denied", path)
        if kind == "UnicodeDecodeError":
            raise UnicodeDecodeError("utf-8", b"", 0, 1, text)
        if kind == "TimeoutError":
            raise TimeoutError(text)
        raise OSError(5, text or kind, path)

    def read_text(self, path: str) -> str:
        self._raise_recorded(path)
        try:
            data = _read_recorded(self._p(path))
        except FileNotFoundError:
            raise FileNotFoundError(2, "No such file or directory", path) from None
        return data.decode("utf-8")

    def list_dir(self, path: str) -> list[str]:
        self._raise_recorded(path)
        if path in self._listings:
            return list(self._listings[path])
        try:
            return sorted(os.listdir(self._p(path)))
        except FileNotFoundError:
            raise FileNotFoundError(2, "No such file or directory", path) from None

    def exists(self, path: str) -> bool:
        if path in self._missing:
            return False
        return path in self._exists or path in self._listings or self._p(path).exists()

    def run(self, argv: Sequence[str], timeout: float = 5.0) -> CommandResult:
        for entry in self._commands:
            if list(entry["argv"]) == list(argv):
                return CommandResult(
                    tuple(argv),
                    entry.get("returncode"),
                    entry.get("stdout", ""),
                    entry.get("stderr", ""),
                    entry.get("error"),
                )
        return CommandResult(tuple(argv), error="not-found")

    def getenv(self, name: str) -> str | None:
        return self._env.get(name)

    def fact(self, name: str, compute: Callable[[], Json]) -> Json:
        if name not in self._facts:
            raise FactUnavailable(f"{name} was not recorded")
        value = self._facts[name]
        if isinstance(value, dict) and "__unavailable__" in value:
            raise FactUnavailable(str(value["__unavailable__"]))
        return value


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


def _write_json(path: Path, value: Json) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(value, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written side file
        raise


def _read_recorded(path: Path) -> bytes:
    """A regular file's bytes, at most MAX_RECORDED_FILE (a FIFO or device is refused)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        data = fh.read(MAX_RECORDED_FILE + 1)
    if len(data) > MAX_RECORDED_FILE:
        raise OSError(errno.EFBIG, f"larger than {MAX_RECORDED_FILE >> 20} MiB", str(path))
    return data


def _strings(value: Json) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _shaped(
    value: Json,
    kind: type,
    path: Path,
    key: str,
    item: Callable[[Json], bool] = lambda v: isinstance(v, str) or v is None,
) -> Any:
    """`value` when it is a `kind` (list or dict) whose items (values) pass `item`."""
    items = value.values() if isinstance(value, dict) else value
    if not isinstance(value, kind) or not all(item(v) for v in items):
        shape = "an object" if kind is dict else "an array"
        raise ValueError(f"{path}: {key} is not {shape} of the recorded form")
    return value


def _commands(value: list[Json], path: Path) -> list[dict[str, Json]]:
    for entry in value:
        if not (
            isinstance(entry, dict)
            and _strings(entry.get("argv"))
            and isinstance(entry.get("returncode"), (int, type(None)))
            and all(isinstance(entry.get(k, ""), str) for k in ("stdout", "stderr"))
            and isinstance(entry.get("error"), (str, type(None)))
        ):
            raise ValueError(f"{path}: an entry is not an argv with its returncode and output")
    return value


def _load_json(path: Path, default: Json) -> Json:
    try:
        value = json.loads(_read_recorded(path))
    except FileNotFoundError:
        return default
    except (OSError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path} is not a readable recorded-host file: {exc}") from exc
    if not isinstance(value, type(default)):
        kind = "object" if isinstance(default, dict) else "array"
        raise ValueError(f"{path} is not a recorded-host file: not a JSON {kind}")
    return value
