"""The status socket's permissions: mode 0660, owned by the configured group, enforced."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchenv.agent.base.errors import ConfigError
from torchenv.agent.daemon.server import bind_socket

NOBODY = 65534
CONNECT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "try:\n"
    "    s.connect(sys.argv[1])\n"
    "except PermissionError:\n"
    "    sys.exit(13)\n"
    "sys.exit(0)\n"
)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may traverse (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="torchenv-sock-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _interpreter_for_nobody() -> str | None:
    """An interpreter another user can run (the dev venv's may live under /root)."""
    for candidate in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin")):
        if candidate is None:
            continue
        try:
            done = subprocess.run(
                [candidate, "-c", "pass"],
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                check=False,
                timeout=60,
                capture_output=True,
            )
        except PermissionError:
            continue
        if done.returncode == 0:
            return candidate
    return None


def _connect_as(path: Path, *, groups: list[int]) -> int:
    python = _interpreter_for_nobody()
    if python is None:
        pytest.skip("no Python interpreter that uid 65534 may run")
    return subprocess.run(
        [python, "-c", CONNECT, str(path)],
        user=NOBODY,
        group=NOBODY,
        extra_groups=groups,
        check=False,
        timeout=60,
    ).returncode


def _free_gid() -> int:
    import grp

    used = {g.gr_gid for g in grp.getgrall()}
    return next(gid for gid in range(40000, 50000) if gid not in used)


def test_socket_is_0660_and_owned_by_its_group(open_dir: Path) -> None:
    gid = _free_gid() if os.geteuid() == 0 else os.getegid()
    sock = bind_socket(open_dir / "agent.sock", str(gid))
    try:
        info = (open_dir / "agent.sock").stat()
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert info.st_gid == gid
    finally:
        sock.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
def test_a_user_outside_the_group_is_refused_and_a_member_is_not(open_dir: Path) -> None:
    gid = _free_gid()
    path = open_dir / "agent.sock"
    sock = bind_socket(path, str(gid))
    try:
        assert _connect_as(path, groups=[]) == 13
        assert _connect_as(path, groups=[gid]) == 0
    finally:
        sock.close()


def test_unknown_group_and_non_socket_paths_are_config_errors(open_dir: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        bind_socket(open_dir / "a.sock", "no-such-group-torchenv")
    (open_dir / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a socket"):
        bind_socket(open_dir / "file", None)


def test_a_stale_socket_is_replaced(open_dir: Path) -> None:
    path = open_dir / "agent.sock"
    old = bind_socket(path, None)
    old.close()  # the file stays, nobody listens: what a crashed agent leaves
    new = bind_socket(path, None)
    try:
        assert stat.S_ISSOCK(path.lstat().st_mode)
    finally:
        new.close()
