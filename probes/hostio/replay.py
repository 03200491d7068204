"""ReplayIO: a recorded host directory answering exactly as the host did."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torchenv.probes.hostio.base import CommandResult, FactUnavailable, Json

MAX_RECORDED_FILE = 16 << 20  # bytes of one recorded file read back (recordings are KiB)
RECORDING_PARTS = ("root", "manifest.json", "commands.json", "env.json", "facts.json")


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
