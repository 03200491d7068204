"""Helpers for tests that derive a broken or varied host from a recorded one."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

HOSTS = Path(__file__).resolve().parent / "hosts"


def copy_host(name: str, into: Path) -> Path:
    """A writable copy of tests/hosts/<name>."""
    target = into / name
    shutil.copytree(HOSTS / name, target)
    return target


def empty_host(into: Path, name: str = "host") -> Path:
    target = into / name
    (target / "root").mkdir(parents=True)
    return target


def write_root(host: Path, path: str, text: str) -> None:
    """Put a file at the absolute host path `path`."""
    target = host / "root" / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def remove_root(host: Path, path: str) -> None:
    target = host / "root" / path.lstrip("/")
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()


def edit_json(host: Path, name: str, change: Callable[[Any], Any], default: Any) -> None:
    """Read-modify-write one of a host's JSON side files (facts.json, commands.json...)."""
    path = host / name
    value = json.loads(path.read_text(encoding="utf-8")) if path.exists() else default
    result = change(value)
    path.write_text(json.dumps(value if result is None else result, indent=2), encoding="utf-8")


def set_fact(host: Path, name: str, value: Any) -> None:
    edit_json(host, "facts.json", lambda facts: facts.__setitem__(name, value), {})


def set_env(host: Path, name: str, value: str | None) -> None:
    edit_json(host, "env.json", lambda env: env.__setitem__(name, value), {})


def set_command(
    host: Path,
    argv: list[str],
    *,
    returncode: int | None = 0,
    stdout: str = "",
    stderr: str = "",
    error: str | None = None,
) -> None:
    entry = {
        "argv": argv,
        "returncode": returncode,
        "stdout": stdout,
        "stderr": stderr,
        "error": error,
    }
    edit_json(
        host, "commands.json", lambda cmds: [c for c in cmds if c["argv"] != argv] + [entry], []
    )


def set_read_error(host: Path, path: str, error: str) -> None:
    """Make the manifest say that reading `path` failed ("PermissionError: ...")."""

    def change(manifest: dict[str, Any]) -> None:
        manifest.setdefault("errors", {})[path] = error

    edit_json(host, "manifest.json", change, {})


def sibling_host(name: str, into: Path, number: int) -> Path:
    """Another node of the same hardware class as tests/hosts/<name>: a copy whose only changes
    are facts outside the target (memory, free disk, CPU count, GPU serials and bus ids)."""
    target = into / f"{name}-node{number}"
    shutil.copytree(HOSTS / name, target, symlinks=True)

    def change(facts: dict[str, Any]) -> None:
        facts["memory"] = {"total": (64 + number) << 30, "available": (60 + number) << 30}
        facts["disk"] = {"path": f"/srv/node{number}", "free": (500 + number) << 30}
        facts["cpu_count"] = 16 * (number + 1)
        for device in (facts.get("nvml") or {}).get("devices", []):
            device["uuid"] = f"GPU-{number:08d}-0000-0000-0000-{device['index']:012d}"
            device["pci_bus_id"] = f"00000000:{0x10 + number:02X}:{device['index']:02X}.0"

    edit_json(target, "facts.json", change, {})
    return target
