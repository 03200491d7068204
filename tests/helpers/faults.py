"""Shared pieces of the fault suite: run torchenv as a user would, and check how it failed.

Each fault test is a row of a table: a name, how to make the bad input (or fault), the command,
and the words the one-paragraph message must hold. `expect_clean_failure` checks what every
row promises: exit 1, a paragraph starting `torchenv: `, no traceback.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from helpers.locks import build_lock, cpu_host, plain_spec, torch_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

TORCHENV = [sys.executable, "-m", "torchenv.agent"]
HOST = cpu_host()


def run(
    args: Sequence[str],
    cwd: Path,
    *,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    preexec: Callable[[], None] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`torchenv ARGS` in `cwd` with its own cache and no user or system configuration."""
    full = {
        **os.environ,
        "TORCHENV_CACHE_DIR": str(cwd / "cache"),
        "TORCHENV_USER_CONFIG": str(cwd / "no-user-config.toml"),
        "TORCHENV_SYSTEM_CONFIG": str(cwd / "no-system-config.toml"),
        **(env or {}),
    }
    for name in ("TORCHENV_FAULT", "TORCHENV_DEBUG"):
        if name not in (env or {}):
            full.pop(name, None)
    return subprocess.run(
        [*TORCHENV, *args], cwd=cwd, env=full, input=stdin, capture_output=True, text=True,
        check=False, timeout=timeout, preexec_fn=preexec,
    )  # fmt: skip


def expect_clean_failure(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 1 with one paragraph that holds `words` (case-insensitive), and no traceback."""
    text = done.stderr + done.stdout
    assert done.returncode == 1, (done.returncode, text)
    assert "Traceback" not in text, text
    assert done.stderr.startswith("torchenv: "), text
    for word in words:
        assert word.lower() in text.lower(), (word, text)


@dataclass(frozen=True)
class Tree:
    """Every path under a directory, to show that nothing was written outside torchenv's own."""

    root: Path
    paths: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, root: Path) -> Tree:
        return cls(root, frozenset(str(p.relative_to(root)) for p in root.rglob("*")))

    def added(self, ignore: Sequence[str] = ()) -> list[str]:
        now = Tree.of(self.root).paths - self.paths
        return sorted(p for p in now if not any(p.startswith(i) for i in ignore))


def real_lock(directory: Path, *, torch: str = "2.13.0+cpu") -> Path:
    """A lock of two real (test-built) wheels on file:// URLs, made for HOST."""
    return build_lock(directory, [torch_spec(torch), plain_spec("filelock")], host=HOST)


def edit_lock(source: Path, target: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Write `target`: the lock at `source` as a TOML document, changed by `edit`."""
    doc = tomllib.loads(source.read_text(encoding="utf-8"))
    edit(doc)
    target.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return target


def wheel_entry(doc: dict[str, Any], package: str) -> dict[str, Any]:
    """The (only) wheel table of `package` in a lock document."""
    for entry in doc["packages"]:
        if entry["name"] == package:
            wheel: dict[str, Any] = entry["wheels"][0]
            return wheel
    raise KeyError(package)


def memory_limit(limit: int = 1 << 30) -> Callable[[], None]:
    """A preexec_fn capping the child's address space: unbounded reads fail, not the machine."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn making the kernel refuse writes past `limit` bytes (a disk that is full)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
