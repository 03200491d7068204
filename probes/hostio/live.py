"""The running machine as a HostIO (optionally under a root directory, for tests)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from torchenv.probes.hostio.base import CommandResult, Json


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
        import shutil  # here, not at the top: a command that runs none does without both
        import subprocess

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
