"""Installing fetched wheels into a new environment: the installer's command, link modes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from torchenv.agent.base.errors import (
    EnvironmentBuildError,
)
from torchenv.agent.env import venv

if TYPE_CHECKING:
    from torchenv.agent.lock.pylock import LockedPackage


def requirements_text(packages: Sequence[LockedPackage], files: Mapping[str, Path]) -> str:
    """A hash-pinned requirements file naming each checked local wheel (pure)."""
    return "".join(
        f"{p.name} @ {files[p.name].resolve().as_uri()} --hash=sha256:{p.wheel.sha256}\n"
        for p in packages
    )


LINK_MODES = ("auto", "copy", "clone", "hardlink")


FICLONE = 0x40049409  # Linux ioctl: make dst share src's blocks copy-on-write (a reflink)


def link_mode(setting: str, envs: Path) -> str:
    """The installer's link mode for a setting (see the `link-mode` setting).

    `auto` keeps environments from sharing files with each other and with the installer's
    cache, so the previous environment stays a way back whatever happens to the active one:
    `clone` (copy-on-write) where the file system of the environments makes reflinks (btrfs,
    XFS, APFS), else `copy`. `hardlink` shares the files: fastest, and damage to one is
    damage to all.
    """
    if setting != "auto":
        return setting
    if sys.platform == "darwin":
        return "clone"
    return "clone" if reflinks(envs) else "copy"


def reflinks(directory: Path) -> bool:
    """Can the file system of `directory` share blocks between files (FICLONE)?"""
    import fcntl
    import tempfile

    try:
        with (
            tempfile.NamedTemporaryFile(dir=directory, prefix=".reflink-") as src,
            tempfile.NamedTemporaryFile(dir=directory, prefix=".reflink-") as dst,
        ):
            src.write(b"torchenv")
            src.flush()
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
    except OSError:
        return False
    return True


def install_command(
    python: Path, requirements: Path, uv: str | None, link: str = "copy"
) -> list[str]:
    if uv:
        return [
            uv,
            "pip",
            "install",
            "--quiet",
            "--no-config",
            "--python",
            str(python),
            "--no-deps",
            "--no-index",
            "--require-hashes",
            f"--link-mode={link}",
            "-r",
            str(requirements),
        ]
    return [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-index",
        "--require-hashes",
        "-r",
        str(requirements),
    ]


def _start(argv: Sequence[str]) -> subprocess.Popen[str]:
    try:
        return subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    except OSError as exc:
        raise EnvironmentBuildError(
            f"cannot run {argv[0]}: {exc.strerror or exc}", hint="install uv or pip, or check PATH"
        ) from exc


def _finish(process: subprocess.Popen[str], action: str) -> None:
    """Wait for a started command; EnvironmentBuildError (full disk named) when it failed."""
    out, err = process.communicate()
    _check(process, out, err, action)


def _check(process: subprocess.Popen[str], out: str, err: str, action: str) -> None:
    """EnvironmentBuildError (full disk named) when a finished command failed."""
    if process.returncode != 0:
        from torchenv.agent.lock.resolvers.base import disk_full, tool_output

        text = tool_output(err or out)
        full = disk_full(text)
        cause = "no space left on the device of the environment or the cache: " if full else ""
        raise EnvironmentBuildError(
            f"{action} failed (exit {process.returncode}): {cause}\n{text}".rstrip(),
            hint="free disk space and run again; the active environment is untouched"
            if full
            else "the output above says why; the active environment is untouched",
            details={"argv": [str(a) for a in process.args], "stderr": text},  # type: ignore[union-attr]
        )


def _run(argv: Sequence[str], action: str) -> None:
    _finish(_start(argv), action)


def _install(
    packages: Sequence[LockedPackage],
    files: Mapping[str, Path],
    env_dir: Path,
    uv: str | None,
    link: str,
) -> None:
    requirements = env_dir / "torchenv-requirements.txt"
    requirements.write_text(requirements_text(packages, files), encoding="utf-8")
    _run(install_command(venv.python_in(env_dir), requirements, uv, link), "installing the wheels")
