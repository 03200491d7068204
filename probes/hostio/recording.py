"""RecordingIO: another HostIO's answers, written into a recorded host directory."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from torchenv.probes.hostio.base import CommandResult, FactUnavailable, HostIO, Json

# A recorded host directory holds:
#
#     root/<absolute path>   the files as read (e.g. root/sys/module/nvidia/version)
#     manifest.json          {"listings": {dir: [names]}, "errors": {path: "ErrorName: text"},
#                             "missing": [paths]}  (optional for hand-made fixtures)
#     commands.json          [{"argv": [...], "returncode": 0, "stdout": "...",
#                              "stderr": "", "error": null | "not-found" | "timeout"}]
#     env.json               {NAME: value | null} for the variables the probes asked for
#     facts.json             {name: JSON value} for in-process answers (nvml, python, ...)
#
# A hand-made fixture needs only `root/` and whichever of the JSON files it uses.


class RecordingIO:
    """Answers from `inner` and writes every answer into `directory` for `ReplayIO`."""

    live = True

    def __init__(self, inner: HostIO, directory: str | os.PathLike[str]) -> None:
        import threading  # here: only a recording run needs it (probes/hostio is imported by all)

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


def _write_json(path: Path, value: Json) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(value, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written side file
        raise
